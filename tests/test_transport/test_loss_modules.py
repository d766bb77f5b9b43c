"""Registered loss modules (need the full OpenMMLab venv)."""
import numpy as np
import pytest
import torch

pytest.importorskip('mmpose')

from gst_mm.models.losses import BayesianLoss, DMCountLoss, GSTLoss, PseudoDensityL2Loss, UOTLoss  # noqa: E402
from gst_mm.registry import MODELS  # noqa: E402
from gst_mm.transport import (  # noqa: E402
    bayesian_loss,
    build_kernel,
    dm_count_loss,
    pseudo_density_l2_loss,
    transport_loss,
    uot_loss,
)

STRIDE = 8
F64 = torch.float64


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    points = [torch.as_tensor(rng.uniform(0, 80, (n, 2)), dtype=torch.float32) for n in (3, 0, 5)]
    covs = [np.repeat(np.eye(2)[None] * 60.0, len(p), axis=0) for p in points]
    kernels = [build_kernel(p, c, (10, 10), STRIDE) for p, c in zip(points, covs)]
    targets = [torch.full((len(p),), 0.8) for p in points]
    density = (torch.rand(3, 1, 10, 10, generator=torch.Generator().manual_seed(0)) * 0.1)
    return density.requires_grad_(True), points, kernels, targets


def _mean(values):
    return torch.stack(values).mean()


@pytest.mark.parametrize('name', ['GSTLoss', 'PseudoDensityL2Loss', 'BayesianLoss',
                                  'DMCountLoss', 'UOTLoss'])
def test_registered_and_buildable(name):
    from mmengine.registry import DefaultScope

    # bare names resolve in the gst_mm scope; prefixed names from any scope
    for scope, type_name in (('gst_mm', name), ('mmpose', f'gst_mm.{name}')):
        with DefaultScope.overwrite_default_scope(scope):
            module = MODELS.build(dict(type=type_name, loss_weight=2.0))
        assert type(module).__name__ == name and module.loss_weight == 2.0


def test_gst_loss_matches_transport_loss(batch):
    density, points, kernels, targets = batch
    loss = GSTLoss(loss_weight=0.5)(density, points, kernels=kernels, targets=targets,
                                    stride=STRIDE)
    expected = 0.5 * _mean([transport_loss(density[b, 0], kernels[b], targets[b])
                            for b in range(3)])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert density.grad is not None and torch.isfinite(density.grad).all()
    no_bg = GSTLoss(background=False)(density, points, kernels=kernels, stride=STRIDE)
    expected = _mean([transport_loss(density[b, 0], kernels[b], use_background=False)
                      for b in range(3)])
    torch.testing.assert_close(no_bg, expected)


def test_gst_loss_errors(batch):
    density, points, kernels, _ = batch
    with pytest.raises(ValueError, match='kernels'):
        GSTLoss()(density, points)
    with pytest.raises(ValueError, match='image 0'):
        GSTLoss()(density, [points[2], points[1], points[2]], kernels=kernels)


def test_baseline_modules_match_functions(batch):
    """Each module reduces the per-image functions as docs/counting.md states: mean
    over images, UOT's sum; DM-Count's value is the mean count and TV (its OT
    surrogate is 0; test_batch_reduction.py checks its summed gradient)."""
    density, points, _, targets = batch
    d = density[:, 0]

    def _sum(values):
        return torch.stack(values).sum()

    cases = [
        (PseudoDensityL2Loss(sigma=6.0), _mean,
         [pseudo_density_l2_loss(d[b], points[b], STRIDE, sigma=6.0, target=targets[b])
          for b in range(3)]),
        (BayesianLoss(), _mean,
         [bayesian_loss(d[b], points[b], STRIDE, target=targets[b]) for b in range(3)]),
        (DMCountLoss(num_iters=50), _mean,
         [dm_count_loss(d[b], points[b], STRIDE, num_iters=50)[0] for b in range(3)]),
        (UOTLoss(max_iter=10), _sum,
         [uot_loss(d[b], points[b], STRIDE, target=targets[b], max_iter=10) for b in range(3)]),
    ]
    for module, reduce, per_image in cases:
        loss = module(density, points, targets=targets, stride=STRIDE)
        torch.testing.assert_close(loss, reduce(per_image), msg=type(module).__name__)
        (grad,) = torch.autograd.grad(loss, density)
        assert torch.isfinite(grad).all(), type(module).__name__


def test_batch_size_mismatch_raises(batch):
    density, points, _, _ = batch
    with pytest.raises(ValueError, match='point sets'):
        BayesianLoss()(density, points[:2])


def test_bayesian_st_size_from_source_image(batch):
    """BL's image-size term: the source image's short side (``image_shapes``, as BL's
    data set passes it), the input's without shapes or with ``'input'``, or fixed."""
    density, points, _, targets = batch
    d = density[:, 0]
    shapes = [(600, 900), (480, 1024), (2048, 700)]
    loss = BayesianLoss()(density, points, targets=targets, stride=STRIDE, image_shapes=shapes)
    expected = _mean([bayesian_loss(d[b], points[b], STRIDE, target=targets[b],
                                    st_size=float(min(shapes[b]))) for b in range(3)])
    torch.testing.assert_close(loss, expected)
    as_input = _mean([bayesian_loss(d[b], points[b], STRIDE, target=targets[b])
                      for b in range(3)])
    torch.testing.assert_close(
        BayesianLoss(st_size='input')(density, points, targets=targets, stride=STRIDE,
                                      image_shapes=shapes), as_input)
    torch.testing.assert_close(BayesianLoss()(density, points, targets=targets, stride=STRIDE),
                               as_input)
    fixed = _mean([bayesian_loss(d[b], points[b], STRIDE, target=targets[b], st_size=300.0)
                   for b in range(3)])
    torch.testing.assert_close(
        BayesianLoss(st_size=300)(density, points, targets=targets, stride=STRIDE,
                                  image_shapes=shapes), fixed)
    with pytest.raises(ValueError, match='image shapes'):
        BayesianLoss()(density, points, stride=STRIDE, image_shapes=shapes[:2])
    with pytest.raises(ValueError, match='st_size'):
        BayesianLoss(st_size='crop')


@pytest.mark.parametrize('st_size', [128.0, 512.0, 2048.0])
def test_bayesian_background_crossover(st_size):
    """One point: a cell's posterior goes to background once it lies farther than
    ``st_size * bg_ratio / 2`` px from the point (BL's background point sits at
    ``d = st_size * bg_ratio`` px from the point: ``D_bg = (d - r)^2 < r^2`` iff ``r > d / 2``)."""
    from gst_mm.transport.ot import bayesian_posteriors
    stride, grid = 1.0, (1, 256)
    pts = torch.tensor([[0.5, 0.5]], dtype=torch.float64)  # on the first cell centre
    post = bayesian_posteriors(pts, grid, stride, st_size=st_size, bg_ratio=0.15)
    dist = torch.arange(256, dtype=torch.float64)  # cell centres at 0.5 + k
    crossover = st_size * 0.15 / 2
    fg = post[:, 0] > post[:, 1]
    assert fg[dist < crossover - 0.5].all() and not fg[dist > crossover + 0.5].any()
    # the posterior at the crossover cell is 1/2 each (equal squared distances)
    if float(crossover) == int(crossover):
        torch.testing.assert_close(post[int(crossover)], torch.tensor([0.5, 0.5], dtype=F64))


def test_bayesian_loss_without_points_is_the_total_mass(batch):
    """BL's Bay_Loss: an image without annotations targets a count of 0, with or
    without the background term."""
    density, _, _, _ = batch
    for use_background in (True, False):
        loss = BayesianLoss(use_background=use_background)(
            density[1:2], [torch.zeros(0, 2)], stride=STRIDE)
        torch.testing.assert_close(loss, density[1].sum())
