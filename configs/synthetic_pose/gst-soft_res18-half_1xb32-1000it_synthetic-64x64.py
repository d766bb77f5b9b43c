"""GST with the soft-assignment plan (docs/soft_kernel.md): identical to
gst_res18-half_1xb32-1000it_synthetic-64x64.py except for the switch
``LoadPoseTransportKernel(plan='soft')`` (the precompute hook sees it and fits the
soft plan) and the cache folder, so the two plans never refit each other's entries.
"""
_base_ = ['./gst_res18-half_1xb32-1000it_synthetic-64x64.py']

gaussian_cache_dir = _base_.data_root + 'gst_cache_soft'
train_dataloader = dict(dataset=dict(pipeline=[
    dict(step, plan='soft', cache_dir=gaussian_cache_dir)
    if step['type'] == 'gst_mm.LoadPoseTransportKernel' else step
    for step in _base_.train_pipeline
]))
custom_hooks = [dict(hook, cache_dir=gaussian_cache_dir) for hook in _base_.custom_hooks]
