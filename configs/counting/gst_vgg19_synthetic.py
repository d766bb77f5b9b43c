# GST counter on the embedded synthetic crowd data set (tools/make_synthetic_crowd.py),
# sized for a CPU run of a few minutes (what `make demo` trains): a narrow VGG-19
# (same layout, 1/8 of the widths, BatchNorm so that a from-scratch run converges in a
# few thousand steps), 128 px crops, batch 4, Adam 1e-3 with cosine decay, 2000 steps.
# Paper augmentation otherwise (scale 0.75-1.25, flip, 12 % greyscale, 30 % rule) and
# the paper's test protocol (images larger than 512 px in 512 tiles: the synthetic
# images are predicted whole).
_base_ = [
    './_base_/default_runtime.py',
    './_base_/models/vgg19_counter.py',
]

dataset_type = 'CrowdCountingDataset'
data_root = 'data/synthetic_crowd/'
gaussian_cache_dir = 'data/gst_cache/synthetic_crowd'
crop_size = 128
stride = 8
max_iters = 2000
randomness = dict(seed=0)
# generator settings (gst_mm.datasets.synthetic_crowd.SyntheticCrowdConfig) of the data
# set this config expects; tools/demo.py and tools/benchmark/counting.py generate it.
# 100 images of 256-384 px: 45 train, 10 val, 45 test (a test set large enough for
# method comparisons). Objects range from ~5 to ~16 px std (perspective), so many are
# larger than the stride-8 clamp of the kernel and the transport plan matters; point
# annotations are displaced from the object centres by noise of half the object's std,
# as human clicks on heads are.
synthetic_data = dict(
    num_images=100,
    split_fractions=(0.45, 0.1, 0.45),
    near_std=16.0,
    far_scale=0.3,
    annotation_jitter=0.5)

model = dict(backbone=dict(widths=(8, 16, 32, 64, 64), batch_norm=True))

_load = [dict(type='LoadImageFromFile')]
_augment = [
    dict(type='CrowdRandomResize', scale_range=(0.75, 1.25)),
    dict(type='CrowdRandomCrop', crop_size=crop_size, min_inside=0.3),
    dict(type='CrowdRandomFlip', prob=0.5),
    dict(type='RandomGrayscale', prob=0.12),
]
_kernel = [dict(type='LoadTransportKernel', stride=stride, cutoff=3.0, bg_ratio=0.015)]
_pack = [dict(type='PackCountingInputs')]

train_pipeline = _load + [
    dict(type='LoadCrowdGaussians', cache_dir=gaussian_cache_dir, data_root=data_root, plan='gst')
] + _augment + _kernel + _pack
heuristic_train_pipeline = _load + [
    dict(type='LoadCrowdGaussians', cache_dir=gaussian_cache_dir, data_root=data_root,
         plan='heuristic')
] + _augment + _kernel + _pack
# the synthetic set stores the true object covariances: a ground-truth-scale plan
gt_train_pipeline = _load + [
    dict(type='LoadCrowdGaussians', cache_dir=gaussian_cache_dir, data_root=data_root, plan='gt')
] + _augment + _kernel + _pack
point_train_pipeline = _load + _augment + _pack
test_pipeline = _load + _pack

train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='train.txt',
        data_prefix=dict(img='images/', ann='annotations/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='val.txt',
        data_prefix=dict(img='images/', ann='annotations/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='test.txt',
        data_prefix=dict(img='images/', ann='annotations/'),
        test_mode=True,
        pipeline=test_pipeline))
val_evaluator = dict(type='CountingMetric')
test_evaluator = dict(type='CountingMetric', localization=True)

# a short random-init run needs a larger step than the paper's fine-tuning of ImageNet VGG,
# and a cosine decay so that the last iterate is a stable one
optim_wrapper = dict(optimizer=dict(type='Adam', lr=1e-3, weight_decay=1e-5))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_iters, eta_min=1e-5, by_epoch=False, begin=0,
         end=max_iters)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    save_best='score', rule='less', max_keep_ckpts=1))
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=False)

custom_hooks = [
    dict(type='GSTPrecomputeHook', cache_dir=gaussian_cache_dir, data_root=data_root,
         splits=('train', ))
]

del _load, _augment, _kernel, _pack
