"""Losses and OT baselines vs brute-force computations."""
import math

import numpy as np
import pytest
import torch
from scipy import ndimage, optimize

from gst_mm.transport import (
    batch_transport_loss,
    bayesian_loss,
    bayesian_posteriors,
    build_kernel,
    cell_centres,
    dm_count_loss,
    pairwise_cost,
    pseudo_density,
    pseudo_density_l2_loss,
    sinkhorn,
    solve_uot_potential,
    transport_loss,
    uot_loss,
    uot_plan,
    uot_primal_value,
    uot_semi_dual,
)

F64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------- GST batches
def test_batch_transport_loss_averages_every_image():
    rng = np.random.default_rng(0)
    kernels, targets = [], []
    for b in range(3):
        pts = rng.uniform(0, 64, (b + 1, 2)).astype(np.float32)
        kernels.append(build_kernel(pts, np.stack([np.eye(2) * 50] * (b + 1)), (8, 8), 8))
        targets.append(torch.full((b + 1,), 0.9))
    dens = torch.rand(3, 1, 8, 8, generator=_gen(0))
    per = [transport_loss(dens[b, 0], kernels[b], targets[b]) for b in range(3)]
    torch.testing.assert_close(batch_transport_loss(dens, kernels, targets),
                               torch.stack(per).mean())
    torch.testing.assert_close(batch_transport_loss(dens[:, 0], kernels, None),
                               torch.stack([transport_loss(dens[b, 0], kernels[b])
                                            for b in range(3)]).mean())
    # the first image counts (the (ref) last-image-only bug is not reproduced)
    dens2 = dens.clone()
    dens2[0] += 1
    before = batch_transport_loss(dens, kernels, targets)
    assert batch_transport_loss(dens2, kernels, targets) > before


def test_transport_loss_without_background_term():
    pts = np.array([[20.0, 20.0]], np.float32)
    k = build_kernel(pts, np.eye(2)[None] * 64, (6, 6), 8)
    d = torch.rand(6, 6, generator=_gen(1))
    full = transport_loss(d, k)
    fg = transport_loss(d, k, use_background=False)
    torch.testing.assert_close(full - fg, k.transport(d)[-1])


# ----------------------------------------------------------------- Bayesian posterior
def test_bayesian_posterior_vs_direct_formula():
    pts = torch.tensor([[10.0, 12.0], [40.0, 33.0], [41.0, 35.0]], dtype=F64)
    grid, stride, sigma, ratio, st = (6, 7), 8, 8.0, 0.15, 48.0
    post = bayesian_posteriors(pts, grid, stride, sigma=sigma, bg_ratio=ratio, st_size=st)
    for r in range(grid[0]):
        for c in range(grid[1]):
            x, y = stride * c + stride / 2, stride * r + stride / 2
            dist = [(x - px) ** 2 + (y - py) ** 2 for px, py in pts.tolist()]
            dist.append((st * ratio - math.sqrt(min(dist))) ** 2)  # BL's background point
            e = np.exp(-np.array(dist) / (2 * sigma ** 2))
            np.testing.assert_allclose(post[r * grid[1] + c].numpy(), e / e.sum(), rtol=1e-10)
    # the loss is L_BT with this posterior
    d = torch.rand(grid, dtype=F64, generator=_gen(2))
    expected = (post.T @ d.reshape(-1) - torch.tensor([1, 1, 1, 0], dtype=F64)).abs().sum()
    ours = bayesian_loss(d, pts, stride, sigma=sigma, bg_ratio=ratio, st_size=st)
    torch.testing.assert_close(ours, expected)
    # no points: everything is background
    torch.testing.assert_close(bayesian_loss(d, pts[:0], stride), d.sum())


# ------------------------------------------------------------------ Sinkhorn / DM-Count
@pytest.mark.parametrize('method', ['knopp', 'log'])
def test_sinkhorn_marginals_and_plan_form(method):
    g = _gen(3)
    centres = cell_centres((5, 6), 8, dtype=F64)
    pts = torch.rand(4, 2, generator=g, dtype=F64) * 48
    cost = pairwise_cost(centres, pts)
    a = torch.rand(30, generator=g, dtype=F64)
    a /= a.sum()
    b = torch.full((4,), 0.25, dtype=F64)
    plan, f, gpot = sinkhorn(a, b, cost, reg=100.0, num_iters=500, method=method)
    torch.testing.assert_close(plan.sum(0), b)
    torch.testing.assert_close(plan.sum(1), a, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(plan, torch.exp((f[:, None] + gpot[None] - cost) / 100.0))


def test_sinkhorn_methods_agree_and_potential_is_gradient():
    """f is the gradient of the entropic OT value w.r.t. the source marginal
    (finite differences along a mass-preserving direction)."""
    g = _gen(4)
    centres = cell_centres((4, 4), 8, dtype=F64)
    pts = torch.rand(3, 2, generator=g, dtype=F64) * 32
    cost = pairwise_cost(centres, pts)
    b = torch.full((3,), 1 / 3, dtype=F64)
    reg = 50.0

    def value(a):
        p, _, _ = sinkhorn(a, b, cost, reg, 2000, method='log')
        return float((p * cost).sum() + reg * (torch.xlogy(p, p) - p).sum())

    a = torch.rand(16, generator=g, dtype=F64) + 0.5
    a /= a.sum()
    p1, f, _ = sinkhorn(a, b, cost, reg, 2000, method='log')
    p2, _, _ = sinkhorn(a, b, cost, reg, 2000, method='knopp')
    torch.testing.assert_close(p1, p2)
    direction = torch.randn(16, generator=g, dtype=F64)
    direction -= direction.mean()
    h = 1e-6
    fd = (value(a + h * direction) - value(a - h * direction)) / (2 * h)
    assert fd == pytest.approx(float(f @ direction), rel=1e-4, abs=1e-6)


def test_dm_count_loss_terms_and_gradient():
    g = _gen(5)
    pts = torch.tensor([[12.0, 20.0], [30.0, 9.0]])
    d = (torch.rand(4, 5, generator=g, dtype=F64) + 0.1).requires_grad_(True)
    loss, parts = dm_count_loss(d, pts, 8, reg=10.0, num_iters=200, method='log')
    # count term
    assert float(parts['count']) == pytest.approx(abs(float(d.detach().sum()) - 2))
    # TV: points fall in cells (2, 1) and (1, 3)
    hist = torch.zeros(4, 5, dtype=F64)
    hist[2, 1] = hist[1, 3] = 0.5
    tv = 2 * (d / (d.sum() + 1e-6) - hist).abs().sum()
    assert float(parts['tv']) == pytest.approx(float(tv.detach()))
    # gradient of the OT surrogate = d/dz of W(z / |z|) (finite differences of the
    # converged entropic OT value with the potential's reg entropy)
    loss_ot, _ = dm_count_loss(d, pts, 8, reg=10.0, num_iters=3000, method='log', count_weight=0,
                               tv_weight=0, ot_weight=1)
    (grad,) = torch.autograd.grad(loss_ot, d)
    centres = cell_centres((4, 5), 8, dtype=F64)
    cost = pairwise_cost(centres, pts.double())

    def value(z):
        a = z.reshape(-1) / (z.sum() + 1e-6)
        p, _, _ = sinkhorn(a, torch.full((2,), 0.5, dtype=F64), cost, 10.0, 3000, method='log')
        return float((p * cost).sum() + 10.0 * (torch.xlogy(p, p) - p).sum())

    z = d.detach()
    direction = torch.randn(4, 5, generator=g, dtype=F64)
    h = 1e-5
    fd = (value(z + h * direction) - value(z - h * direction)) / (2 * h)
    assert fd == pytest.approx(float((grad * direction).sum()), rel=1e-3, abs=1e-5)
    # no points: count term only
    l0, _ = dm_count_loss(d, pts[:0], 8)
    torch.testing.assert_close(l0, d.sum())


# --------------------------------------------------------------------------------- UOT
def _uot_problem(seed, n_cells=8, n_pts=3):
    g = _gen(seed)
    centres = torch.rand(n_cells, 2, generator=g, dtype=F64)
    pts = torch.rand(n_pts, 2, generator=g, dtype=F64)
    cost = pairwise_cost(centres, pts, power=1.0)
    u = torch.rand(n_cells, generator=g, dtype=F64) * 0.6
    v = torch.ones(n_pts, dtype=F64)
    return u, v, cost


@pytest.mark.parametrize('eps,tau', [(0.05, 1.0), (0.01, 0.5)])
def test_uot_semi_dual_equals_primal_minimum(eps, tau):
    """max_beta semi-dual == min_P primal, the primal minimised independently over
    log P with scipy's L-BFGS-B."""
    u, v, cost = _uot_problem(6)
    beta = solve_uot_potential(u, v, cost, eps=eps, tau=tau, max_iter=500)
    dual = float(uot_semi_dual(u, v, cost, beta, eps=eps, tau=tau))
    # stationarity: the gradient w.r.t. beta vanishes
    b = beta.clone().requires_grad_(True)
    (gb,) = torch.autograd.grad(uot_semi_dual(u, v, cost, b, eps=eps, tau=tau), b)
    assert float(gb.abs().max()) < 1e-6

    shape = cost.shape

    def primal(x):
        logp = torch.tensor(x, dtype=F64, requires_grad=True)
        val = uot_primal_value(torch.exp(logp).reshape(shape), u, v, cost, eps=eps, tau=tau)
        (grad,) = torch.autograd.grad(val, logp)
        return float(val.detach()), grad.numpy()

    x0 = np.full(cost.numel(), -2.0)
    res = optimize.minimize(primal, x0, jac=True, method='L-BFGS-B',
                            options=dict(maxiter=5000, ftol=1e-15, gtol=1e-12))
    assert res.fun == pytest.approx(dual, abs=1e-6)
    # the plan recovered from beta attains the same primal value (zero duality gap)
    plan = uot_plan(u, cost, beta, eps=eps, tau=tau)
    primal_at_plan = float(uot_primal_value(plan, u, v, cost, eps=eps, tau=tau))
    assert primal_at_plan == pytest.approx(dual, abs=1e-6)


def test_uot_loss_gradient_and_empty():
    g = _gen(7)
    d = (torch.rand(6, 6, generator=g, dtype=F64) * 0.2).requires_grad_(True)
    pts = torch.tensor([[10.0, 11.0], [30.0, 40.0]], dtype=F64)
    loss = uot_loss(d, pts, 8, max_iter=100)
    (grad,) = torch.autograd.grad(loss, d)
    # envelope theorem: d/du of max_beta H(u, beta) = tau * (1 - exp(-alpha / tau)); check by
    # finite differences of the re-maximised value
    direction = torch.randn(6, 6, generator=g, dtype=F64)
    h = 1e-5
    fd = (float(uot_loss(d.detach() + h * direction, pts, 8, max_iter=100))
          - float(uot_loss(d.detach() - h * direction, pts, 8, max_iter=100))) / (2 * h)
    assert fd == pytest.approx(float((grad * direction).sum()), rel=1e-3, abs=1e-6)
    torch.testing.assert_close(uot_loss(d, pts[:0], 8), d.sum())


# ------------------------------------------------------------------ L2 pseudo density
def test_pseudo_density_vs_direct_convolution():
    """Cell integrals of blurred points == impulses on a fine grid convolved with a
    sampled Gaussian, then summed per cell."""
    stride, sigma, grid, sub = 8, 5.0, (6, 8), 8  # fine pixel = 1/8 px
    pts = torch.tensor([[20.0625, 17.9375], [3.0625, 40.4375], [61.5625, 44.0625]], dtype=F64)
    ours = pseudo_density(pts, grid, stride, sigma=sigma).numpy()
    fine = np.zeros((grid[0] * stride * sub, grid[1] * stride * sub))
    for x, y in pts.numpy():
        fine[int(y * sub), int(x * sub)] += 1.0  # fine pixel whose centre is (x, y)
    fine = ndimage.gaussian_filter(fine, sigma * sub, mode='constant', truncate=6.0)
    pooled = fine.reshape(grid[0], stride * sub, grid[1], stride * sub).sum((1, 3))
    np.testing.assert_allclose(ours, pooled, atol=2e-4)
    # mass = fraction of each Gaussian inside the grid (1-D normal CDFs per axis)

    def inside(c, length):
        k = sigma * 2 ** 0.5
        return 0.5 * (math.erf((length - c) / k) - math.erf(-c / k))

    expected = sum(inside(x, 64) * inside(y, 48) for x, y in pts.tolist())
    assert ours.sum() == pytest.approx(expected, rel=1e-10)
    assert expected < 2.5  # the border points really lose mass
    d = torch.rand(grid, dtype=F64, generator=_gen(8))
    torch.testing.assert_close(pseudo_density_l2_loss(d, pts, stride, sigma=sigma),
                               ((d - torch.as_tensor(ours)) ** 2).sum())
