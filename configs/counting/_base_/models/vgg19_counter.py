# VGG-19 stride-8 density counter (method.md 6) trained with the GST loss.
#
# ImageNet weights: download torchvision's VGG-19 file once, e.g.
#   https://download.pytorch.org/models/vgg19-dcbb9e9d.pth  -> checkpoints/vgg19-dcbb9e9d.pth
# and set   model.backbone.init_cfg=dict(type='Pretrained', checkpoint='checkpoints/vgg19-dcbb9e9d.pth')
# (or pass  --cfg-options model.backbone.init_cfg.type=Pretrained
#           model.backbone.init_cfg.checkpoint=checkpoints/vgg19-dcbb9e9d.pth ).
# Nothing is downloaded at run time: by default the network starts from random init.
model = dict(
    type='DensityCounter',
    backbone=dict(type='VGG19Regressor', init_cfg=None),
    loss=dict(type='GSTLoss'),
    data_preprocessor=dict(
        type='ImgDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    # images with a side > 512 px are predicted in tiles, counts summed (ref)
    test_cfg=dict(tile_size=512))
