"""The OT baselines on extreme but valid inputs: finite loss and finite gradients.

Inputs: a 1024 x 1024 px input at stride 8 (128 x 128 cells) with 300 points, a
256 x 256 px input with 3000 points, points on the image border and corners, and
densities all zero, ~1e-8 and ~1e4 per cell, a checkerboard of both, one saturated
cell; float32 (the training dtype), float16 / bfloat16 (AMP). The bounds that keep
these finite are documented in gst_mm/transport/ot.py (``SINKHORN_GUARD``,
``UOT_MAX_LOG_RATIO``) and gst_mm/transport/losses.py (``_work``).
"""
import math

import pytest
import torch

from gst_mm.transport import (
    UOT_MAX_LOG_RATIO,
    bayesian_loss,
    cell_centres,
    dm_count_loss,
    pairwise_cost,
    pseudo_density_l2_loss,
    solve_uot_potential,
    uot_alpha,
    uot_loss,
)

STRIDE = 8


def _points(size, n, seed):
    g = torch.Generator().manual_seed(seed)
    inner = torch.rand(n, 2, generator=g) * size
    border = torch.tensor([[0.0, 0.0], [size, size], [0.0, size], [size, 0.0],
                           [size / 2, 0.0], [size, size / 2]])
    return torch.cat([inner, border])


def _densities(cells):
    checker = (torch.arange(cells)[:, None] + torch.arange(cells)[None, :]) % 2 == 0
    one_hot = torch.zeros(cells, cells)
    one_hot[cells // 3, cells // 2] = 1e4
    return {
        'zero': torch.zeros(cells, cells),
        'tiny': torch.full((cells, cells), 1e-8),
        'saturated': torch.full((cells, cells), 1e4),
        'checker': torch.where(checker, torch.tensor(1e4), torch.tensor(1e-8)),
        'one-hot': one_hot,
    }


GEOMETRIES = {'1024px-300pts': (1024, 300), '256px-3000pts': (256, 3000)}
LOSSES = {
    'bl': lambda d, p: bayesian_loss(d, p, STRIDE, st_size=2048.0),
    'dmcount': lambda d, p: dm_count_loss(d, p, STRIDE)[0],
    'uot': lambda d, p: uot_loss(d, p, STRIDE),
}


def _loss_and_grad(fn, density, points):
    d = density.clone().requires_grad_(True)
    loss = fn(d, points)
    (grad,) = torch.autograd.grad(loss, d)
    return loss.detach(), grad


@pytest.mark.parametrize('geometry', list(GEOMETRIES))
@pytest.mark.parametrize('name', list(LOSSES))
def test_finite_on_extreme_densities(name, geometry):
    size, n = GEOMETRIES[geometry]
    points = _points(size, n, seed=n)
    for kind, density in _densities(size // STRIDE).items():
        loss, grad = _loss_and_grad(LOSSES[name], density, points)
        assert torch.isfinite(loss), f'{name} {geometry} {kind}: loss {loss}'
        assert torch.isfinite(grad).all(), f'{name} {geometry} {kind}: non-finite gradient'
        if kind == 'saturated':  # every loss at least pays the count excess
            assert float(loss) > 0.5 * (1e4 * (size // STRIDE) ** 2 - len(points))


def test_dm_count_log_domain_sinkhorn_is_finite_on_many_points():
    """``sinkhorn_method='log'`` (zero masses enter as log(1e-38)); 30 iterations keep
    the test short (each costs two log-sum-exps over the 32^2 x 3006 cost matrix)."""
    points = _points(256, 3000, seed=1)
    densities = _densities(32)
    for kind in ('zero', 'checker', 'one-hot'):
        loss, grad = _loss_and_grad(
            lambda d, p: dm_count_loss(d, p, STRIDE, method='log', num_iters=30)[0],
            densities[kind], points)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), kind


def test_uot_all_zero_density_gradient_is_bounded():
    """An all-zero density has no maximising potential (beta -> +inf): without the bound
    the gradient grows with the L-BFGS iterations; with it, |dL/du| <= tau * 1e6 *
    M ** (eps / tau) (ot.py, UOT_MAX_LOG_RATIO), at any iteration count, and the
    value approaches its supremum tau * M."""
    points = _points(512, 40, seed=2)
    m = len(points)
    eps, tau = 0.01, 1.0
    bound = tau * math.exp(UOT_MAX_LOG_RATIO) * m ** (eps / tau)
    for dtype in (torch.float32, torch.float64):
        zero = torch.zeros(64, 64, dtype=dtype)
        for max_iter in (20, 200):
            loss, grad = _loss_and_grad(lambda d, p: uot_loss(d, p, STRIDE, max_iter=max_iter),
                                        zero, points.to(dtype))
            assert torch.isfinite(grad).all()
            assert float(grad.abs().max()) <= bound * 1.0001
            assert float(loss) == pytest.approx(tau * m, rel=1e-5)
    # unbounded, the same solve drifts past the bound (the failure the bound prevents)
    zero = torch.zeros(64, 64, dtype=torch.float64)
    cost = pairwise_cost(cell_centres((64, 64), STRIDE, dtype=torch.float64),
                         points.double(), power=1.0, scale=512.0)
    free = solve_uot_potential(zero.reshape(-1), torch.ones(m, dtype=torch.float64), cost,
                               max_iter=200, max_log_ratio=None)
    assert float(free.max()) > tau * UOT_MAX_LOG_RATIO
    alpha = uot_alpha(cost, free, eps)
    assert float(tau * torch.expm1(-alpha / tau).abs().max()) > bound


def test_uot_bound_is_inactive_for_ordinary_densities():
    """The bound leaves a realistic solve untouched (same potential, same loss)."""
    points = _points(256, 50, seed=3)
    density = torch.rand(32, 32, generator=torch.Generator().manual_seed(3),
                         dtype=torch.float64) * 0.1
    cost = pairwise_cost(cell_centres((32, 32), STRIDE, dtype=torch.float64),
                         points.double(), power=1.0, scale=256.0)
    ones = torch.ones(len(points), dtype=torch.float64)
    bounded = solve_uot_potential(density.reshape(-1), ones, cost, max_iter=50)
    free = solve_uot_potential(density.reshape(-1), ones, cost, max_iter=50,
                               max_log_ratio=None)
    torch.testing.assert_close(bounded, free)
    assert float(bounded.abs().max()) < 0.5 * UOT_MAX_LOG_RATIO


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_densities_are_computed_in_float32(dtype):
    """AMP hands the losses float16 / bfloat16 densities: at 512 px float16 overflows
    squared px distances (> 65504) and DM-Count's 1e-16 guard underflows to 0, which
    gave NaN; the losses now compute in float32 and agree with the float32 result."""
    points = _points(512, 100, seed=4)
    density = torch.rand(64, 64, generator=torch.Generator().manual_seed(4)) * 0.05
    fns = dict(LOSSES, l2=lambda d, p: pseudo_density_l2_loss(d, p, STRIDE))
    for name, fn in fns.items():
        half = density.to(dtype)
        loss, grad = _loss_and_grad(fn, half, points.to(dtype))
        assert loss.dtype == torch.float32 and grad.dtype == dtype, name
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), name
        ref, _ = _loss_and_grad(fn, half.float(), points.to(dtype).float())
        assert float(loss) == pytest.approx(float(ref), rel=1e-5), name
    big = torch.full((64, 64), 1e4).to(dtype)  # sums to 4e7: inf in float16
    for name, fn in fns.items():
        loss, grad = _loss_and_grad(fn, big, points)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), name


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_registered_modules_on_an_extreme_batch(dtype):
    """Every registered counting loss on one batch holding an all-zero, a ~1e-8 and a
    ~1e4-per-cell density (512 px, 200 points with border points each): finite, in
    float32 and in bfloat16 (CPU autocast). Not float16: DM-Count's normalised maps
    ``z / (sum z + 1e-6)`` (its own guard) give an all-zero density a TV gradient of
    ~``tv_weight * N / 1e-6`` (2e6 here), finite in float32 but beyond float16's 65504
    when cast back to a float16 density; AMP's dynamic loss scaling skips such steps."""
    pytest.importorskip('mmpose')
    import numpy as np

    from gst_mm.models.losses import (
        BayesianLoss,
        DMCountLoss,
        GSTLoss,
        PseudoDensityL2Loss,
        UOTLoss,
    )
    from gst_mm.transport import build_kernel

    cells = 64
    points = [_points(512, 200, seed=s) for s in (5, 6, 7)]
    density = torch.stack([torch.zeros(cells, cells), torch.full((cells, cells), 1e-8),
                           torch.full((cells, cells), 1e4)])[:, None].to(dtype)
    kernels = [build_kernel(p, np.repeat(np.eye(2)[None] * 64.0, len(p), axis=0),
                            (cells, cells), STRIDE) for p in points]
    for module in (GSTLoss(), PseudoDensityL2Loss(), BayesianLoss(), DMCountLoss(),
                   UOTLoss()):
        d = density.clone().requires_grad_(True)
        loss = module(d, points, kernels=kernels, stride=STRIDE)
        (grad,) = torch.autograd.grad(loss, d)
        name = type(module).__name__
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), name
