# ShanghaiTech part A: Bayesian loss baseline (Ma et al. 2019: isotropic sigma = 8 posterior + background).
# Identical to gst_vgg19_shha.py except for this one switch.
_base_ = ['./gst_vgg19_shha.py']
model = dict(loss=dict(_delete_=True, type='BayesianLoss'))
train_dataloader = dict(dataset=dict(pipeline=_base_.point_train_pipeline))
custom_hooks = []  # nothing to fit
