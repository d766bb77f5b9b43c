# Synthetic crowd: pseudo-density L2 baseline.
# Identical to gst_vgg19_synthetic.py except for this one switch.
_base_ = ['./gst_vgg19_synthetic.py']
model = dict(loss=dict(_delete_=True, type='PseudoDensityL2Loss'))
train_dataloader = dict(dataset=dict(pipeline=_base_.point_train_pipeline))
custom_hooks = []  # nothing to fit
