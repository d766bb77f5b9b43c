# UCF-QNRF in the gst_mm crowd layout (docs/datasets.md), written by
# tools/dataset_converters/ucf_qnrf.py: images pre-resized so the short side is in [512, 2048].
# 512 px crops (method.md 6); everything else in crowd_counting.py.
_base_ = ['./crowd_counting.py']
data_root = 'data/ucf_qnrf/'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
