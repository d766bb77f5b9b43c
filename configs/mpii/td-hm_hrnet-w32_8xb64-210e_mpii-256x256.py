"""Plain HRNet-W32 on MPII: MMPose's own recipe, unchanged (the baseline of
gst_hrnet-w32_8xb64-210e_mpii-256x256.py; method.md 5 / paper Table 3).

The backbone's ImageNet weights are named by URL in MMPose's recipe; on a machine
without network access point them at a downloaded file (docs/pose.md):
    --cfg-options model.backbone.init_cfg.checkpoint=/path/to/hrnet_w32-*.pth
"""
_base_ = ['mmpose::body_2d_keypoint/topdown_heatmap/mpii/td-hm_hrnet-w32_8xb64-210e_mpii-256x256.py']
