# ShanghaiTech part B: pseudo-density L2 baseline (points blurred with a fixed Gaussian, method.md 7).
# Identical to gst_vgg19_shhb.py except for this one switch.
_base_ = ['./gst_vgg19_shhb.py']
model = dict(loss=dict(_delete_=True, type='PseudoDensityL2Loss'))
train_dataloader = dict(dataset=dict(pipeline=_base_.point_train_pipeline))
custom_hooks = []  # nothing to fit
