"""Batch reduction of every counting loss against hand computations from per-image terms.

Each test builds a batch of three images whose per-image losses differ, computes the
per-image terms by hand (dense matrices, closed forms) and checks the module's value,
and where the value cannot tell (DM-Count's OT surrogate is ~0 by construction) its
gradient, against the reduction of docs/counting.md: a sum-vs-mean slip is off by a
factor 3 and fails.
"""
import numpy as np
import pytest
import torch

pytest.importorskip('mmpose')

from gst_mm.models.losses import (  # noqa: E402
    BayesianLoss,
    DMCountLoss,
    GSTLoss,
    PseudoDensityL2Loss,
    UOTLoss,
)
from gst_mm.transport import (  # noqa: E402
    build_kernel,
    cell_centres,
    pairwise_cost,
    sinkhorn,
    uot_loss,
)

F64 = torch.float64
STRIDE = 8
GRID = (6, 7)


@pytest.fixture
def batch():
    """Three images with 2, 4 and 1 points and different densities, float64."""
    rng = np.random.default_rng(11)
    points = [torch.as_tensor(rng.uniform(2, 50, (n, 2)), dtype=F64) for n in (2, 4, 1)]
    gen = torch.Generator().manual_seed(11)
    density = torch.rand(3, 1, *GRID, generator=gen, dtype=F64) * torch.tensor(
        [0.05, 0.2, 0.01], dtype=F64).reshape(3, 1, 1, 1)
    return density.requires_grad_(True), points


def _centres():
    return cell_centres(GRID, STRIDE, dtype=F64).numpy()


# ------------------------------------------------------------------------------- GST
def test_gst_loss_is_the_mean_of_per_image_l1(batch):
    density, points = batch
    covs = [np.repeat(np.eye(2)[None] * 40.0, len(p), axis=0) for p in points]
    kernels = [build_kernel(p.float(), c, GRID, STRIDE) for p, c in zip(points, covs)]
    targets = [torch.full((len(p),), 0.9, dtype=F64) for p in points]
    per_image = []
    for b in range(3):
        dense = kernels[b].dense().double().numpy()  # (h*w, N + 1)
        mass = dense.T @ density[b, 0].detach().numpy().reshape(-1)
        per_image.append(np.abs(mass[:-1] - 0.9).sum() + abs(mass[-1]))
    assert min(per_image) > 0.05 and np.ptp(per_image) > 0.05  # a sum would be 3x off
    loss = GSTLoss(loss_weight=2.0)(density, points, kernels=kernels, targets=targets,
                                    stride=STRIDE)
    assert float(loss) == pytest.approx(2.0 * np.mean(per_image), rel=1e-5)
    summed = GSTLoss(batch_reduction='sum')(density, points, kernels=kernels,
                                            targets=targets, stride=STRIDE)
    assert float(summed) == pytest.approx(np.sum(per_image), rel=1e-5)


# -------------------------------------------------------------------------------- L2
def test_l2_loss_is_the_mean_of_per_image_sums_of_squares(batch):
    density, points = batch
    sigma = 6.0
    from scipy.special import erf

    per_image = []
    for b in range(3):
        gt = np.zeros(GRID)
        edges_y = np.arange(GRID[0] + 1) * STRIDE
        edges_x = np.arange(GRID[1] + 1) * STRIDE
        for x, y in points[b].numpy():  # exact cell integrals of each Gaussian
            my = np.diff(0.5 * erf((edges_y - y) / (sigma * np.sqrt(2))))
            mx = np.diff(0.5 * erf((edges_x - x) / (sigma * np.sqrt(2))))
            gt += np.outer(my, mx)
        per_image.append(((density[b, 0].detach().numpy() - gt) ** 2).sum())
    loss = PseudoDensityL2Loss(sigma=sigma)(density, points, stride=STRIDE)
    assert float(loss) == pytest.approx(np.mean(per_image), rel=1e-8)
    assert np.ptp(per_image) > 0.05


# ---------------------------------------------------------------------------------- BL
def test_bayesian_loss_is_the_mean_of_per_image_l1(batch):
    density, points = batch
    sigma, ratio, st = 8.0, 0.15, 300.0
    centres = _centres()
    per_image = []
    for b in range(3):
        pts = points[b].numpy()
        dist = ((centres[:, None, :] - pts[None]) ** 2).sum(-1)  # (cells, N) px^2
        near = np.sqrt(dist.min(1, keepdims=True))
        bg = (st * ratio - near) ** 2  # BL: distance to the background point
        logits = -np.concatenate([dist, bg], 1) / (2 * sigma ** 2)
        post = np.exp(logits - logits.max(1, keepdims=True))
        post /= post.sum(1, keepdims=True)
        mass = post.T @ density[b, 0].detach().numpy().reshape(-1)
        target = np.r_[np.ones(len(pts)), 0.0]
        per_image.append(np.abs(mass - target).sum())
    loss = BayesianLoss(st_size=st)(density, points, stride=STRIDE)
    assert float(loss) == pytest.approx(np.mean(per_image), rel=1e-8)
    assert np.ptp(per_image) > 0.5


# ---------------------------------------------------------------------------- DM-Count
def _dm_count_image_grads(z, pts, reg=10.0, num_iters=200):
    """Per-image gradients of DM-Count's count, OT and TV terms, by closed forms.

    count: ``sign(sum z - N)``; OT: DM-Count's ``im_grad``
    ``(T f - <z, f>) / (T^2 + 1e-8)`` with ``T = sum z`` and ``f`` the Sinkhorn source
    potential of ``a = z / (T + 1e-6)``; TV: the gradient of
    ``N * sum |z / (T + 1e-6) - hist / N|``.
    """
    flat = z.reshape(-1)
    n = len(pts)
    total = flat.sum()
    g_count = torch.sign(total - n) * torch.ones_like(flat)
    cost = pairwise_cost(cell_centres(GRID, STRIDE, dtype=F64), pts)
    a = flat / (total + 1e-6)
    _, f, _ = sinkhorn(a, torch.full((n,), 1.0 / n, dtype=F64), cost, reg, num_iters)
    g_ot = (total * f - (flat * f).sum()) / (total ** 2 + 1e-8)
    hist = torch.zeros_like(flat)
    for x, y in pts.tolist():
        hist[int(y // STRIDE) * GRID[1] + int(x // STRIDE)] += 1.0 / n
    s = torch.sign(a - hist)  # d/dz_k of sum_i |z_i / T - h_i|, T = sum z + 1e-6
    tt = total + 1e-6
    g_tv = n * (s / tt - (s * flat).sum() / tt ** 2)
    return g_count, g_ot, g_tv


@pytest.mark.parametrize('ot_reduction', ['sum', 'mean'])
def test_dm_count_sums_ot_and_averages_count_and_tv(batch, ot_reduction):
    density, points = batch
    module = DMCountLoss(num_iters=200, ot_reduction=ot_reduction)
    loss = module(density, points, stride=STRIDE)
    (grad,) = torch.autograd.grad(loss, density)
    w_ot = 1.0 if ot_reduction == 'sum' else 1.0 / 3
    expected_value = 0.0
    for b in range(3):
        z = density[b, 0].detach()
        gc, go, gt = _dm_count_image_grads(z, points[b])
        expected = (1.0 / 3) * gc + 0.1 * w_ot * go + 0.01 * (1.0 / 3) * gt
        torch.testing.assert_close(grad[b, 0].reshape(-1), expected, rtol=1e-6, atol=1e-9)
        assert float(go.abs().max()) > 1.0  # the OT gradient is not negligible
        expected_value += abs(float(z.sum()) - len(points[b])) / 3  # OT surrogate = 0
    # the value: mean count + 0.01 * mean TV (the OT surrogate <z, im_grad> is 0)
    tv = []
    for b in range(3):
        z = density[b, 0].detach().reshape(-1)
        hist = torch.zeros_like(z)
        for x, y in points[b].tolist():
            hist[int(y // STRIDE) * GRID[1] + int(x // STRIDE)] += 1.0 / len(points[b])
        tv.append(float(len(points[b]) * (z / (z.sum() + 1e-6) - hist).abs().sum()))
    expected_value += 0.01 * np.mean(tv)
    assert float(loss) == pytest.approx(expected_value, rel=1e-9, abs=1e-12)


def test_dm_count_rejects_unknown_reduction():
    with pytest.raises(ValueError, match="ot_reduction must be 'mean' or 'sum'"):
        DMCountLoss(ot_reduction='avg')
    with pytest.raises(ValueError, match='sinkhorn_method'):
        DMCountLoss(sinkhorn_method='greenkhorn')


# --------------------------------------------------------------------------------- UOT
def test_uot_loss_is_the_sum_of_per_image_semi_duals(batch):
    density, points = batch
    per_image = [float(uot_loss(density[b, 0].detach(), points[b], STRIDE, max_iter=50))
                 for b in range(3)]
    assert np.ptp(per_image) > 0.05 and min(abs(v) for v in per_image) > 0.05
    loss = UOTLoss(max_iter=50)(density, points, stride=STRIDE)
    assert float(loss) == pytest.approx(np.sum(per_image), rel=1e-6)
    mean = UOTLoss(max_iter=50, batch_reduction='mean')(density, points, stride=STRIDE)
    assert float(mean) == pytest.approx(np.mean(per_image), rel=1e-6)
    # the gradient is each image's own: tau * (1 - exp(-alpha / tau)) at its potential
    (grad,) = torch.autograd.grad(loss, density)
    (g1,) = torch.autograd.grad(uot_loss(density[1, 0], points[1], STRIDE, max_iter=50),
                                density)
    torch.testing.assert_close(grad[1], g1[1])


@pytest.mark.parametrize('cls', [GSTLoss, PseudoDensityL2Loss, BayesianLoss, UOTLoss])
def test_unknown_batch_reduction_is_one_clear_error(cls):
    with pytest.raises(ValueError, match="batch_reduction must be 'mean' or 'sum', got 'avg'"):
        cls(batch_reduction='avg')
