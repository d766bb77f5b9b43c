# JHU-Crowd++: GST loss with the heuristic plan (isotropic sigma = 8 px Gaussians, no fitting; the paper's ablation).
# Identical to gst_vgg19_jhu.py except for this one switch.
_base_ = ['./gst_vgg19_jhu.py']
train_dataloader = dict(dataset=dict(pipeline=_base_.heuristic_train_pipeline))
custom_hooks = []  # nothing to fit
