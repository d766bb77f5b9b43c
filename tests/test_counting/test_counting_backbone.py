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
