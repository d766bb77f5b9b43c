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
    density, points, _, targets = batch
    d = density[:, 0]
    cases = [
        (PseudoDensityL2Loss(sigma=6.0),
         [pseudo_density_l2_loss(d[b], points[b], STRIDE, sigma=6.0, target=targets[b])
          for b in range(3)]),
        (BayesianLoss(),
         [bayesian_loss(d[b], points[b], STRIDE, target=targets[b]) for b in range(3)]),
        (DMCountLoss(num_iters=50),
         [dm_count_loss(d[b], points[b], STRIDE, num_iters=50)[0] for b in range(3)]),
        (UOTLoss(max_iter=10),
         [uot_loss(d[b], points[b], STRIDE, target=targets[b], max_iter=10) for b in range(3)]),
    ]
    for module, per_image in cases:
        loss = module(density, points, targets=targets, stride=STRIDE)
        torch.testing.assert_close(loss, _mean(per_image), msg=type(module).__name__)
        (grad,) = torch.autograd.grad(loss, density)
        assert torch.isfinite(grad).all(), type(module).__name__


def test_batch_size_mismatch_raises(batch):
    density, points, _, _ = batch
    with pytest.raises(ValueError, match='point sets'):
        BayesianLoss()(density, points[:2])
