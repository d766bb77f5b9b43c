"""OT-baseline version of td-hm_res18_1xb32-1500it_synthetic-64x64.py.

MMPose's HeatmapHead with gst_mm.HeatmapOTLoss (entropic OT between the
spatial-softmax prediction and the normalised target heatmap, as in HDM-HPE,
Qu et al. 2022) instead of the MSE; everything else is the plain config's.
"""
_base_ = ['./td-hm_res18_1xb32-1500it_synthetic-64x64.py']

custom_imports = dict(imports=['gst_mm.datasets', 'gst_mm.models.losses'],
                      allow_failed_imports=False)

model = dict(head=dict(loss=dict(type='gst_mm.HeatmapOTLoss', eps=1.0, num_iters=50)))
