"""VGG19Regressor: torchvision layout (so ImageNet weights load), stride and shapes."""
import pytest
import torch

pytest.importorskip('mmpose')
torchvision = pytest.importorskip('torchvision')

from gst_mm.models.backbones import VGG19Regressor  # noqa: E402

NARROW = (4, 8, 8, 16, 16)


def _torchvision_features(widths, batch_norm=False):
    """torchvision's VGG-19 ``features`` (configuration 'E') with the given stage widths."""
    cfg = []
    for width, n in zip(widths, (2, 2, 4, 4, 4)):
        cfg += [width] * n + ['M']
    return torchvision.models.vgg.make_layers(cfg, batch_norm=batch_norm)


def test_feature_names_and_shapes_match_torchvision_vgg19():
    ours = VGG19Regressor().state_dict()
    theirs = _torchvision_features((64, 128, 256, 512, 512)).state_dict()
    feats = {k: v.shape for k, v in ours.items() if k.startswith('features.')}
    assert feats == {f'features.{k}': v.shape for k, v in theirs.items()}


def test_batch_norm_trunk_matches_torchvision_vgg19_bn():
    ours = VGG19Regressor(widths=NARROW, batch_norm=True)
    ours.init_weights()
    tv = _torchvision_features(NARROW, batch_norm=True).eval()
    ours.load_state_dict({f'features.{k}': v for k, v in tv.state_dict().items()}, strict=False)
    ours.eval()
    x = torch.randn(1, 3, 48, 64)
    assert len(ours.features) == len(tv) - 1  # without the last max-pool
    assert torch.allclose(ours.features(x), tv[:-1](x), atol=1e-6)


def test_pretrained_init_cfg_loads_torchvision_checkpoint(tmp_path):
    tv = _torchvision_features(NARROW)
    state = {f'features.{k}': v for k, v in tv.state_dict().items()}
    state['classifier.0.weight'] = torch.zeros(3, 3)  # torchvision files carry a classifier
    ckpt = tmp_path / 'vgg19_narrow.pth'
    torch.save(state, ckpt)
    model = VGG19Regressor(widths=NARROW, init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    model.init_weights()
    x = torch.randn(1, 3, 64, 48)
    # our trunk is torchvision's features without the last max-pool (index 36)
    assert torch.allclose(model.features(x), tv[:36](x), atol=1e-6)
    assert model.density_layer[0].weight.abs().sum() > 0  # head keeps its random init


@pytest.mark.parametrize('hw', [(64, 96), (100, 104), (16, 24)])
def test_stride_8_output_is_nonnegative_on_cell_grid(hw):
    model = VGG19Regressor(widths=NARROW)
    model.init_weights()
    out = model(torch.randn(2, 3, *hw))
    assert out.shape == (2, 1, hw[0] // 8, hw[1] // 8)
    assert (out >= 0).all()


def test_multiple_of_16_upsamples_exactly_twice():
    model = VGG19Regressor(widths=NARROW)
    model.init_weights()
    x = torch.randn(1, 3, 64, 96)
    trunk = model.features(x)
    assert trunk.shape[-2:] == (4, 6)  # stride 16
    up = torch.nn.functional.interpolate(trunk, scale_factor=2, mode='bilinear',
                                         align_corners=False)
    expected = torch.abs(model.density_layer(model.reg_layer(up)))
    assert torch.allclose(model(x), expected, atol=1e-6)


def test_too_small_input_is_a_clear_error():
    model = VGG19Regressor(widths=NARROW)
    with pytest.raises(ValueError, match='smaller than the trunk stride'):
        model(torch.randn(1, 3, 8, 64))


def _density_of_ramp(backbone, height=64, width=48):
    """The backbone's density when its last convolution outputs a vertical ramp from +1
    (top row) to -1 (bottom row): the pre-activation changes sign inside the map."""
    h, w = height // 8, width // 8
    ramp = torch.linspace(1.0, -1.0, h).view(1, 1, h, 1).expand(1, 1, h, w)
    conv = backbone.density_layer[0]
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = 1.0
        conv.bias.zero_()
    hook = backbone.reg_layer.register_forward_hook(
        lambda mod, inp, out: torch.cat([ramp, torch.zeros_like(out[:, 1:])], 1))
    try:
        return backbone(torch.randn(1, 3, height, width))[0, 0]
    finally:
        hook.remove()


def test_abs_output_draws_a_seam_where_the_pre_activation_changes_sign():
    # the mechanism of the demo's top-edge band: |x| of a sign change is a dark row
    # between two bright ones
    model = VGG19Regressor(widths=NARROW, output_act='abs')
    model.init_weights()
    rows = _density_of_ramp(model).mean(1)
    inner = rows[1:-1]
    assert inner.min() < 0.2 * rows[0] and inner.min() < 0.2 * rows[-1]


@pytest.mark.parametrize('name', ['gst_vgg19_synthetic.py', 'gst_vgg19trans_synthetic.py'])
def test_demo_and_benchmark_counters_have_no_zero_crossing_seam(name):
    """The synthetic configs' density is monotone in the pre-activation: a sign change
    cannot leave a dark row between two bright ones (the top-edge band of issue 15)."""
    import os.path as osp

    from mmengine.config import Config

    from gst_mm.registry import MODELS
    from gst_mm.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    cfg = Config.fromfile(osp.join(root, 'configs', 'counting', name))
    backbone = MODELS.build(dict(cfg.model.backbone, type='gst_mm.' + cfg.model.backbone.type))
    backbone.init_weights()
    rows = _density_of_ramp(backbone).mean(1)
    assert (rows[1:] <= rows[:-1] + 1e-6).all(), rows  # never rises again below a dip
    assert rows[0] > 0 and rows[-1] == 0


def test_unknown_output_act_is_a_one_line_error():
    with pytest.raises(ValueError, match="output_act must be one of \\('abs', 'relu'\\)"):
        VGG19Regressor(widths=NARROW, output_act='softplus')
