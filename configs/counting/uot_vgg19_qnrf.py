# UCF-QNRF: UOT baseline (Ma et al. 2021: unbalanced OT, semi-dual).
# Identical to gst_vgg19_qnrf.py except for this one switch.
_base_ = ['./gst_vgg19_qnrf.py']
model = dict(loss=dict(_delete_=True, type='UOTLoss'))
train_dataloader = dict(dataset=dict(pipeline=_base_.point_train_pipeline))
custom_hooks = []  # nothing to fit
