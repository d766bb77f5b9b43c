# JHU-Crowd++ in the gst_mm crowd layout (docs/datasets.md), written by
# tools/dataset_converters/jhu_crowd.py: images pre-resized so the short side is in [512, 2048].
# 512 px crops (method.md 6); everything else in crowd_counting.py.
_base_ = ['./crowd_counting.py']
data_root = 'data/jhu_crowd/'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
