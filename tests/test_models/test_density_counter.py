"""DensityCounter: loss / predict / tensor modes, GST-loss wiring, tiled inference."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

pytest.importorskip('mmpose')

from gst_mm.models.counters import DensityCounter, tile_bounds  # noqa: E402
from gst_mm.registry import MODELS  # noqa: E402

NARROW = dict(type='VGG19Regressor', widths=(4, 8, 8, 16, 16))


@MODELS.register_module(name='_CellLocalDensityStub', force=True)
class CellLocalDensityStub(nn.Module):
    """A density whose cell (r, c) depends only on the 8 x 8 pixels of that cell, so
    tiling on an 8-px-aligned grid must reproduce the untiled map exactly."""

    stride = 8

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, kernel_size=1)

    def forward(self, x):
        h, w = x.shape[-2:]
        y = self.conv(x[..., :h // 8 * 8, :w // 8 * 8]).abs()
        return F.avg_pool2d(y, 8) * 64


def _sample(points, h, w, kernel=None, targets=None):
    from gst_mm.structures import CountingDataSample

    s = CountingDataSample(metainfo=dict(img_shape=(h, w), img_path=f'img_{h}x{w}.jpg'))
    s.gt_points = torch.as_tensor(points, dtype=torch.float32)
    if targets is not None:
        s.point_targets = torch.as_tensor(targets, dtype=torch.float32)
    if kernel is not None:
        s.transport_kernel = kernel
    return s


def _model(loss=dict(type='GSTLoss'), backbone=NARROW, tile_size=512):
    torch.manual_seed(0)
    model = DensityCounter(backbone=backbone, loss=loss, test_cfg=dict(tile_size=tile_size))
    model.init_weights()
    return model


def _batch(model, sizes, samples):
    g = torch.Generator().manual_seed(1)
    inputs = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for h, w in sizes]
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), training=False)


def test_loss_mode_is_the_gst_transport_loss_of_the_tensor_output():
    from gst_mm.transport import build_kernel

    model = _model()
    pts = [torch.tensor([[10.5, 12.5], [40.0, 30.0], [50.0, 55.0]]), torch.tensor([[20.0, 20.0]])]
    targets = [torch.tensor([1.0, 0.5, 1.0]), torch.tensor([1.0])]
    kernels = [build_kernel(p, torch.eye(2).expand(len(p), 2, 2) * 36.0, (8, 8), 8) for p in pts]
    samples = [_sample(p, 64, 64, k, t) for p, k, t in zip(pts, kernels, targets)]
    data = _batch(model, [(64, 64), (64, 64)], samples)
    losses = model(**data, mode='loss')
    density = model(data['inputs'], mode='tensor')
    assert density.shape == (2, 1, 8, 8)
    expected = torch.stack([
        (k.transport(d[0]) - torch.cat([t, t.new_zeros(1)])).abs().sum()
        for d, k, t in zip(density, kernels, targets)
    ]).mean()
    assert torch.allclose(losses['loss'], expected, rtol=1e-5)
    assert losses['count_error'] == pytest.approx(
        float(((density.detach().flatten(1).sum(1) - torch.tensor([2.5, 1.0])).abs()).mean()),
        rel=1e-5)
    losses['loss'].backward()
    assert model.backbone.features[0].weight.grad.abs().sum() > 0


def test_loss_mode_with_a_point_only_baseline():
    model = _model(loss=dict(type='PseudoDensityL2Loss'))
    samples = [_sample([[10.0, 10.0], [30.0, 40.0]], 48, 48)]
    data = _batch(model, [(48, 48)], samples)
    loss = model(**data, mode='loss')['loss']
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.requires_grad


def test_predict_sets_density_and_count_and_matches_tensor_mode():
    model = _model()
    samples = [_sample(torch.zeros(0, 2), 80, 56)]
    data = _batch(model, [(80, 56)], samples)
    out = model(**data, mode='predict')[0]
    dense = model(data['inputs'], mode='tensor')[0]
    assert out.pred_density.shape == (1, 10, 7)
    assert torch.equal(out.pred_density, dense)  # fits in one tile: no tiling
    assert out.pred_count == pytest.approx(float(dense.sum()))


def test_predict_crops_batch_padding_to_each_image():
    model = _model()
    samples = [_sample(torch.zeros(0, 2), 64, 48), _sample(torch.zeros(0, 2), 40, 72)]
    data = _batch(model, [(64, 48), (40, 72)], samples)
    assert data['inputs'].shape[-2:] == (64, 72)  # padded batch
    outs = model(**data, mode='predict')
    assert outs[0].pred_density.shape == (1, 8, 6)
    assert outs[1].pred_density.shape == (1, 5, 9)
    alone = model(data['inputs'][1:, :, :40, :72], mode='tensor')[0]
    assert torch.allclose(outs[1].pred_density, alone, atol=1e-6)


@pytest.mark.parametrize('length,tile', [(1000, 512), (520, 512), (1030, 512), (100, 32),
                                         (512, 512), (97, 48)])
def test_tile_bounds_cover_aligned_and_bounded(length, tile):
    bounds = tile_bounds(length, tile, 16)
    assert bounds[0][0] == 0 and bounds[-1][1] == length
    assert all(b0 == a1 for (_, a1), (b0, _) in zip(bounds[:-1], bounds[1:]))
    assert all(a % 16 == 0 and b - a <= tile for a, b in bounds)
    assert all(b - a >= 16 for a, b in bounds)


def test_tiled_prediction_equals_untiled_for_a_cell_local_density():
    backbone = dict(type='_CellLocalDensityStub')
    tiled = _model(backbone=backbone, tile_size=32)
    whole = _model(backbone=backbone, tile_size=None)
    whole.load_state_dict(tiled.state_dict())
    samples = [_sample(torch.zeros(0, 2), 100, 75)]
    data = _batch(tiled, [(100, 75)], samples)
    a = tiled(**data, mode='predict')[0]
    data = _batch(whole, [(100, 75)], [_sample(torch.zeros(0, 2), 100, 75)])
    b = whole(**data, mode='predict')[0]
    assert a.pred_density.shape == b.pred_density.shape == (1, 12, 9)
    assert torch.allclose(a.pred_density, b.pred_density, atol=1e-5)
    assert a.pred_count == pytest.approx(b.pred_count, rel=1e-5)


def test_tiled_vgg_prediction_covers_the_grid_and_sums_tile_counts():
    model = _model(tile_size=32)
    data = _batch(model, [(70, 50)], [_sample(torch.zeros(0, 2), 70, 50)])
    out = model(**data, mode='predict')[0]
    assert out.pred_density.shape == (1, 8, 6)
    img = data['inputs']
    total = 0.0
    for y0, y1 in tile_bounds(70, 32, 16):
        for x0, x1 in tile_bounds(50, 32, 16):
            total += float(model(img[..., y0:y1, x0:x1], mode='tensor').sum())
    assert out.pred_count == pytest.approx(total, rel=1e-5)


def test_invalid_mode_and_missing_points_are_clear_errors():
    model = _model()
    with pytest.raises(RuntimeError, match='invalid mode'):
        model(torch.zeros(1, 3, 32, 32), mode='nope')
    from gst_mm.structures import CountingDataSample

    s = CountingDataSample(metainfo=dict(img_path='a.jpg'))
    with pytest.raises(KeyError, match='a.jpg'):
        model(torch.zeros(1, 3, 32, 32), [s], mode='loss')
