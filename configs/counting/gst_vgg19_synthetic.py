# GST counter on the embedded synthetic crowd data set (tools/make_synthetic_crowd.py),
# sized for a CPU run of minutes (what `make demo` trains and tools/benchmark/counting.py
# compares methods on): a narrow VGG-19 (same layout, 1/8 of the widths, BatchNorm so that
# a from-scratch run converges in a few thousand steps), 256 px crops, batch 4, Adam 1e-3
# with cosine decay, 2000 steps. Paper augmentation otherwise (scale 0.75-1.25, flip, 12 %
# greyscale, 30 % rule) and the paper's test protocol (images larger than 512 px in 512
# tiles: the synthetic images are predicted whole).
_base_ = [
    './_base_/default_runtime.py',
    './_base_/models/vgg19_counter.py',
    './_base_/datasets/crowd_counting.py',
]

data_root = 'data/synthetic_crowd/'
crop_size = 256
max_iters = 2000
randomness = dict(seed=0)
# generator settings (gst_mm.datasets.synthetic_crowd.SyntheticCrowdConfig) of the data
# set this config expects; tools/demo.py and tools/benchmark/counting.py generate it.
# 100 images of 384-512 px with 40-250 objects: 45 train, 10 val, 45 test (a test set
# large enough for method comparisons). Perspective takes objects from ~24 px std on the
# bottom row to ~6 px on the top one, so near objects are up to 3x the heuristic plan's
# 8 px and the shape of the transport plan matters (docs/benchmarks.md: with objects of
# at most 16 px std, plain pseudo-density L2 was as accurate as any plan).
synthetic_data = dict(
    num_images=100,
    split_fractions=(0.45, 0.1, 0.45),
    min_size=384,
    max_size=512,
    min_objects=40,
    max_objects=250,
    near_std=24.0,
    far_scale=0.25)

# relu output (DM-Count's) instead of abs: a from-scratch run at lr 1e-3 lets abs's
# pre-activation change sign, and the zero crossing drew a dark seam under a bright
# band along the top edge (docs/counting.md, "Non-negative output")
model = dict(backbone=dict(widths=(8, 16, 32, 64, 64), batch_norm=True, output_act='relu'))

_crop = dict(type='CrowdRandomCrop', crop_size=crop_size, min_inside=0.3)
train_pipeline, heuristic_train_pipeline, point_train_pipeline = (
    [_crop if step['type'] == 'CrowdRandomCrop' else step for step in pipeline]
    for pipeline in (_base_.train_pipeline, _base_.heuristic_train_pipeline,
                     _base_.point_train_pipeline))
# the synthetic set stores the true object covariances: a ground-truth-scale plan
gt_train_pipeline = [
    dict(step, source='gt') if step['type'] == 'LoadCrowdGaussians' else step
    for step in train_pipeline
]

# batches of 4 crops from an endless sampler; the small test images load in-process
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = dict(
    num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
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

del _crop
