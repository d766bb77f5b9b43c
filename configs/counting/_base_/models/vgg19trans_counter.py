# VGG-19 + graph-modulated transformer counter (VGG19TransformerRegressor): the counter of
# the GST paper's best numbers (the official repository's `vgg19_trans`, the Gramformer of
# Lin et al., AAAI 2024, on a VGG-19 trunk), trained with the GST loss; method.md 6.
# Official settings: 2 encoder layers, 8 heads, FFN 2048, dropout 0.1, k-NN graph of 30 %
# of the tokens, 18 centrality levels, attention-variance term 0.1; Adam lr 5e-6 (set by the data set configs).
#
# ImageNet weights (trunk only, torchvision's VGG-19 file; nothing is downloaded at run time):
#   --cfg-options model.backbone.init_cfg.type=Pretrained \
#                 model.backbone.init_cfg.checkpoint=checkpoints/vgg19-dcbb9e9d.pth
# By default the whole network starts from random initialisation.
model = dict(
    type='DensityCounter',
    backbone=dict(
        type='VGG19TransformerRegressor',
        num_layers=2,
        num_heads=8,
        ffn_dim=2048,
        dropout=0.1,
        knn_ratio=0.3,
        num_degrees=18,
        attn_var_weight=0.1,
        init_cfg=None),
    loss=dict(type='GSTLoss'),
    data_preprocessor=dict(
        type='ImgDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    # images with a side > 512 px are predicted in tiles, counts summed (ref)
    test_cfg=dict(tile_size=512))
