"""HRNet-W32 on MPII with GST's soft-assignment plan (docs/soft_kernel.md): identical to
gst_hrnet-w32_8xb64-210e_mpii-256x256.py except for the switch
``LoadPoseTransportKernel(plan='soft')`` (the precompute hook sees it and fits the
soft plan, meant for joints at an object's periphery such as MPII's head top) and the
cache folder, so the two plans never refit each other's entries.
"""
_base_ = ['./gst_hrnet-w32_8xb64-210e_mpii-256x256.py']

gaussian_cache_dir = 'data/mpii/gst_cache_soft'
train_dataloader = dict(dataset=dict(pipeline=[
    dict(step, plan='soft', cache_dir=gaussian_cache_dir)
    if step['type'] == 'gst_mm.LoadPoseTransportKernel' else step
    for step in _base_.train_pipeline
]))
custom_hooks = [dict(hook, cache_dir=gaussian_cache_dir)
                if hook['type'] == 'gst_mm.GSTPrecomputeHook' else hook
                for hook in _base_.custom_hooks]
