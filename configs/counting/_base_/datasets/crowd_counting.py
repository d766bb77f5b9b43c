# Crowd-counting data in the gst_mm layout (docs/datasets.md): what every data set's
# base shares. A data set's base sets `data_root` on the three loaders and, when its
# crops are not 512 px, swaps the crop step (see shha.py).
# Paper augmentation (method.md 6): random scale 0.75-1.25, 512 px crops (30 % rule),
# horizontal flip, 12 % greyscale. Batch 1. The fitted Gaussians are cached in
# <data_root>/gst_cache/ (GSTPrecomputeHook writes there, LoadCrowdGaussians reads).
dataset_type = 'CrowdCountingDataset'
data_root = 'data/crowd/'  # each data set's base replaces it
crop_size = 512
stride = 8  # density-map stride of VGG19Regressor; the kernel is built on its grid

_load = [dict(type='LoadImageFromFile')]
_augment = [
    dict(type='CrowdRandomResize', scale_range=(0.75, 1.25)),
    dict(type='CrowdRandomCrop', crop_size=crop_size, min_inside=0.3),
    dict(type='CrowdRandomFlip', prob=0.5),
    dict(type='RandomGrayscale', prob=0.12),
]
_kernel = [dict(type='LoadTransportKernel', stride=stride, cutoff=3.0, bg_ratio=0.015)]
_pack = [dict(type='PackCountingInputs')]

# GST: the plan from the cached (fitted) Gaussians
train_pipeline = _load + [dict(type='LoadCrowdGaussians', source='fit')] + _augment + _kernel + _pack
# ablation: isotropic sigma = 8 px Gaussians ("heuristic plan", no fitting)
heuristic_train_pipeline = _load + [dict(type='LoadCrowdGaussians', source='heuristic')
                                    ] + _augment + _kernel + _pack
# baselines that only need the points (L2, BL, DM-Count, UOT)
point_train_pipeline = _load + _augment + _pack
# evaluation also packs the original annotations (`ori_points`): CountingMetric's
# localisation compares at the original resolution whatever a test resize did
test_pipeline = _load + [
    dict(type='PackCountingInputs',
         meta_keys=('img_path', 'img_id', 'ori_shape', 'img_shape', 'scale_factor',
                    'gst_affine', 'flip', 'ori_points'))
]

train_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='train.txt',
        data_prefix=dict(img='images/', ann='annotations/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
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
    val_dataloader,
    sampler=dict(val_dataloader['sampler']),
    dataset=dict(val_dataloader['dataset'], ann_file='test.txt'))
val_evaluator = dict(type='CountingMetric')
test_evaluator = val_evaluator

# fit the Gaussians of training images that have no valid cache before training
# (default fit settings of gst_mm.splatting.fit_gaussians)
custom_hooks = [dict(type='GSTPrecomputeHook', splits=('train', ))]

# helper lists above are only building blocks
del _load, _augment, _kernel, _pack
