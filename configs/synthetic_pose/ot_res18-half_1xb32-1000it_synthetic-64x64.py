"""OT-baseline version of td-hm_res18-half_1xb32-1000it_synthetic-64x64.py.

The head keeps HeatmapHead's layers as gst_mm.DensityHeatmapHead (decoding and
keypoint scores read the softmax density the loss sees) and is trained with
gst_mm.HeatmapOTLoss (entropic OT between the spatial-softmax prediction and the
normalised target heatmap, as in HDM-HPE, Qu et al. 2022) instead of the MSE;
everything else is the plain config's (tools/gstify_config.py --loss ot).
"""
_base_ = ['./td-hm_res18-half_1xb32-1000it_synthetic-64x64.py']

custom_imports = dict(imports=['gst_mm.datasets', 'gst_mm.models.heads', 'gst_mm.models.losses'],
                      allow_failed_imports=False)

model = dict(head=dict(type='gst_mm.DensityHeatmapHead', nonneg='softmax',
                       loss=dict(_delete_=True, type='gst_mm.HeatmapOTLoss', num_iters=50)))
