# NWPU-Crowd: DM-Count baseline (Wang et al. 2020: Sinkhorn OT + count L1 + TV).
# Identical to gst_vgg19_nwpu.py except for this one switch.
_base_ = ['./gst_vgg19_nwpu.py']
model = dict(loss=dict(_delete_=True, type='DMCountLoss'))
train_dataloader = dict(dataset=dict(pipeline=_base_.point_train_pipeline))
custom_hooks = []  # nothing to fit
