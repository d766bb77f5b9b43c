# NWPU-Crowd in the gst_mm crowd layout (docs/datasets.md), written by
# tools/dataset_converters/nwpu_crowd.py: images pre-resized so the short side is in [512, 2048].
# 384 px crops (method.md 6); everything else in crowd_counting.py.
_base_ = ['./crowd_counting.py']
data_root = 'data/nwpu_crowd/'
crop_size = 384
_crop = dict(type='CrowdRandomCrop', crop_size=crop_size, min_inside=0.3)
train_pipeline, heuristic_train_pipeline, point_train_pipeline = (
    [_crop if step['type'] == 'CrowdRandomCrop' else step for step in pipeline]
    for pipeline in (_base_.train_pipeline, _base_.heuristic_train_pipeline,
                     _base_.point_train_pipeline))
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
del _crop
