# ShanghaiTech part A: GST loss with the soft-assignment plan (free Gaussians reduced onto the
# points, docs/soft_kernel.md). Identical to gst_vgg19_shha.py except for this one switch:
# LoadCrowdGaussians(plan='soft'); GSTPrecomputeHook sees it and fits the soft plan into
# <data_root>/gst_cache_soft (settings: fit_cfg=dict(plan='soft', soft=dict(...))).
_base_ = ['./gst_vgg19_shha.py']
train_dataloader = dict(dataset=dict(pipeline=[
    dict(step, plan='soft') if step['type'] == 'LoadCrowdGaussians' else step
    for step in _base_.train_pipeline
]))
