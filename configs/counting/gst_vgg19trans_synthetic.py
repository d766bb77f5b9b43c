# The transformer counter on the synthetic set, sized like gst_vgg19_synthetic.py (the CPU
# demo / benchmark config: same data, crops, batch, schedule and relu output): the narrow
# VGG-19 trunk (token width 64), 2 encoder layers of 4 heads, FFN 128, Adam 1e-3 with
# cosine decay. tools/benchmark/counting.py times it as method `transformer`.
_base_ = ['./gst_vgg19_synthetic.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='VGG19TransformerRegressor',
        widths=(8, 16, 32, 64, 64),
        batch_norm=True,
        num_layers=2,
        num_heads=4,
        ffn_dim=128,
        dropout=0.1,
        knn_ratio=0.3,
        num_degrees=18,
        attn_var_weight=0.1,
        output_act='relu',
        init_cfg=None))
