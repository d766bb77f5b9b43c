"""Top-down heatmap model (MMPose's MSE recipe) on the synthetic landmark set.

The pose learning benchmark's plain arm (tools/benchmark/pose.py): a random-init
half-width ResNet-18 (base_channels 32) with MMPose's HeatmapHead, 64x64 input,
32x32 heatmaps (stride 2), trained iteration-based on the CPU. Data:
``python tools/make_synthetic_pose.py data/synthetic_pose`` (11 landmarks per figure,
COCO format). Its GST version is ``gst_res18-half_...`` (the changes
tools/gstify_config.py makes) and its OT version ``ot_res18-half_...`` (``--loss ot``).
"""
default_scope = 'mmpose'
custom_imports = dict(imports=['gst_mm.datasets'], allow_failed_imports=False)

data_root = 'data/synthetic_pose/'
input_size = (64, 64)
heatmap_size = (32, 32)
max_iters = 1000

train_cfg = dict(by_epoch=False, max_iters=max_iters, val_interval=max_iters)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(optimizer=dict(type='Adam', lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', begin=0, end=100, start_factor=0.01, by_epoch=False),
    dict(type='MultiStepLR', begin=0, end=max_iters, milestones=[int(max_iters * 0.8)],
         gamma=0.1, by_epoch=False),
]
auto_scale_lr = dict(base_batch_size=32)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='PoseVisualizationHook', enable=False))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='gloo'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='PoseLocalVisualizer', vis_backends=vis_backends)
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False, num_digits=6)
log_level = 'INFO'
load_from = None
resume = False

codec = dict(type='MSRAHeatmap', input_size=input_size, heatmap_size=heatmap_size, sigma=1)

model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(type='PoseDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(type='ResNet', depth=18, base_channels=32, stem_channels=32),
    head=dict(
        type='HeatmapHead',
        in_channels=256,
        out_channels=11,
        deconv_out_channels=(64, 64, 64, 64),
        deconv_kernel_sizes=(4, 4, 4, 4),
        loss=dict(type='KeypointMSELoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(flip_test=True, flip_mode='heatmap', shift_heatmap=True))

dataset_type = 'gst_mm.SyntheticLandmarkDataset'
data_mode = 'topdown'
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.0),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomBBoxTransform', shift_prob=0, rotate_factor=20, scale_factor=(0.8, 1.2)),
    dict(type='TopdownAffine', input_size=input_size),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs'),
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.0),
    dict(type='TopdownAffine', input_size=input_size),
    dict(type='PackPoseInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, data_mode=data_mode,
                 ann_file='annotations/train.json', data_prefix=dict(img='images/'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(type=dataset_type, data_root=data_root, data_mode=data_mode,
                 ann_file='annotations/val.json', data_prefix=dict(img='images/'),
                 test_mode=True, pipeline=val_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='PCKAccuracy', thr=0.2, prefix='pck0.2'),
    dict(type='PCKAccuracy', thr=0.1, prefix='pck0.1'),
    dict(type='PCKAccuracy', thr=0.05, prefix='pck0.05'),
]
test_evaluator = val_evaluator
