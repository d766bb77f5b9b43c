"""GST version of td-hm_res18-half_1xb32-1000it_synthetic-64x64.py.

The same model, data and schedule, with GST's per-joint transport loss
(gst_mm.GSTHeatmapHead), the kernel transform in the train pipeline and the
Gaussian precompute hook (method.md 5).
"""
_base_ = ['./td-hm_res18-half_1xb32-1000it_synthetic-64x64.py']

custom_imports = dict(
    imports=['gst_mm.datasets', 'gst_mm.models.heads',
             'gst_mm.datasets.transforms.pose_transforms', 'gst_mm.engine.hooks'],
    allow_failed_imports=False)

data_root = 'data/synthetic_pose/'
gaussian_cache_dir = data_root + 'gst_cache'
gaussian_data_root = data_root

# the default GST recipe (gst_mm.models.heads.recipe.PRESETS['default'], docs/pose.md
# "Which setting"): density softmax(8 * raw), -log discrepancy, the plan's transport cost
# and entropy, mass-centroid decoding (r = 2 cells); random init: 100 MSE warm-up steps,
# then pure GST (the synthetic protocol of tools/benchmark/pose.py)
model = dict(head=dict(type='gst_mm.GSTHeatmapHead',
                       loss=dict(_delete_=True, type='gst_mm.JointTransportLoss',
                                 discrepancy='log', cost_weight=0.2, entropy_weight=0.4),
                       beta=8.0, mse_weight=0.0, nonneg='softmax', mse_warmup_iters=100,
                       decode_mode='centroid', decode_radius=2))

codec = dict(type='MSRAHeatmap', input_size=(64, 64), heatmap_size=(32, 32), sigma=1)
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.0),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomBBoxTransform', shift_prob=0, rotate_factor=20, scale_factor=(0.8, 1.2)),
    dict(type='TopdownAffine', input_size=(64, 64)),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='gst_mm.LoadPoseTransportKernel', cache_dir=gaussian_cache_dir,
         data_root=gaussian_data_root, stride=2, cost='sqdist'),
    dict(type='PackPoseInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

custom_hooks = [
    dict(type='gst_mm.GSTPrecomputeHook', cache_dir=gaussian_cache_dir,
         data_root=gaussian_data_root, fit_cfg=dict(iterations=300), splits=('train', )),
]
