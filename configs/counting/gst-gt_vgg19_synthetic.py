# Synthetic crowd: GST loss with the ground-truth-scale plan (the generator's true covariances).
# Identical to gst_vgg19_synthetic.py except for this one switch.
_base_ = ['./gst_vgg19_synthetic.py']
train_dataloader = dict(dataset=dict(pipeline=_base_.gt_train_pipeline))
custom_hooks = []  # nothing to fit
