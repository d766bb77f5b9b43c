"""GST transport kernel vs an independent dense implementation of method.md 4."""
import math
import pickle

import numpy as np
import pytest
import torch

from gst_mm.transport import (
    TransportKernel,
    build_kernel,
    cell_centres,
    clamp_covariances,
    heuristic_kernel,
    point_kernels,
    transport_loss,
)


# ------------------------------------------------------------------ dense reference
def reference_loglik(means, covs, grid_shape, stride, cutoff=3.0, bg_ratio=0.015,
                     min_std=None, max_std=20.0):
    """Float64 log-likelihoods (h*w, N+1) written directly from method.md 4 with
    numpy (eigh clamp, explicit inverse, argmin for G*)."""
    min_std = stride if min_std is None else min_std
    means = np.asarray(means, np.float64).reshape(-1, 2)
    covs = np.asarray(covs, np.float64).reshape(-1, 2, 2)
    h, w = grid_shape
    xs = stride * np.arange(w) + stride / 2
    ys = stride * np.arange(h) + stride / 2
    yy, xx = np.meshgrid(ys, xs, indexing='ij')
    cells = np.stack([xx.ravel(), yy.ravel()], 1)
    n = len(means)
    d2 = np.zeros((h * w, n))
    logdet = np.zeros(n)
    for k in range(n):
        lam, vec = np.linalg.eigh(0.5 * (covs[k] + covs[k].T))
        std = np.clip(np.sqrt(np.maximum(lam, 0)), min_std, max_std)
        cov = vec @ np.diag(std ** 2) @ vec.T
        diff = cells - means[k]
        d2[:, k] = np.einsum('ij,jk,ik->i', diff, np.linalg.inv(cov), diff)
        logdet[k] = np.log(np.linalg.det(cov))
    l_fg = -d2 / 2 - logdet / 2
    if n == 0:
        return np.zeros((h * w, 1))
    star = np.argmin(d2, axis=1)
    d_star = d2[np.arange(h * w), star]
    l_bg = -(cutoff ** 2 - d_star) / 2 - logdet[star] + np.log(bg_ratio)
    return np.concatenate([l_fg, l_bg[:, None]], 1)


def reference_kernel(*args, **kwargs):
    ll = reference_loglik(*args, **kwargs)
    ll = ll - ll.max(1, keepdims=True)
    e = np.exp(ll)
    return e / e.sum(1, keepdims=True)


def random_gaussians(n, extent, seed, std_range=(2.0, 24.0)):
    rng = np.random.default_rng(seed)
    means = rng.uniform(0, 1, (n, 2)) * np.asarray(extent)
    std = rng.uniform(*std_range, (n, 2))
    th = rng.uniform(0, np.pi, n)
    rot = np.stack([np.stack([np.cos(th), -np.sin(th)], 1),
                    np.stack([np.sin(th), np.cos(th)], 1)], 1)
    covs = rot @ (std[:, :, None] ** 2 * np.eye(2)) @ rot.transpose(0, 2, 1)
    return means.astype(np.float32), covs.astype(np.float32)


def assert_within_bound(kernel, ref, slack=2e-5):
    """Stated bound: dropped entries < eps, ||row error||_1 <= 2 |D_i| eps."""
    dense = kernel.dense().double().numpy()
    n = kernel.num_points
    stored = np.zeros((kernel.num_cells, n), bool)
    stored[kernel.rows.numpy(), kernel.cols.long().numpy()] = True
    assert np.all(ref[:, :n][~stored] < kernel.eps + 1e-7)
    dropped = (~stored).sum(1)
    row_err = np.abs(dense - ref).sum(1)
    bound = 2 * dropped * kernel.eps + slack
    assert np.all(row_err <= bound), (row_err - bound).max()


# ------------------------------------------------------------------------------ tests
@pytest.mark.parametrize('eps', [1e-6, 1e-3])
def test_sparse_matches_dense_reference(eps):
    grid, stride = (20, 24), 8
    means, covs = random_gaussians(40, (24 * 8, 20 * 8), seed=0)
    kernel = build_kernel(means, covs, grid, stride, eps=eps)
    ref = reference_kernel(means, covs, grid, stride)
    assert kernel.dense().shape == (20 * 24, 41)
    assert_within_bound(kernel, ref)
    # truncation really happened (the test exercises the bound, not a dense kernel)
    assert kernel.nnz < 0.8 * 20 * 24 * 40


@pytest.mark.parametrize('cutoff,bg_ratio,min_std,max_std', [(2.4, 0.015, None, 20.0),
                                                             (3.6, 0.05, 4.0, 12.0)])
def test_options_follow_reference(cutoff, bg_ratio, min_std, max_std):
    grid, stride = (16, 16), 4
    means, covs = random_gaussians(25, (64, 64), seed=1)
    kw = dict(cutoff=cutoff, bg_ratio=bg_ratio, min_std=min_std, max_std=max_std)
    kernel = build_kernel(means, covs, grid, stride, **kw)
    assert_within_bound(kernel, reference_kernel(means, covs, grid, stride, **kw))


def test_rows_sum_to_one():
    means, covs = random_gaussians(60, (256, 256), seed=2)
    for background in (True, False):
        k = build_kernel(means, covs, (32, 32), 8, background=background)
        torch.testing.assert_close(k.dense().sum(1), torch.ones(32 * 32), atol=1e-5, rtol=0)


def test_theorem1_marginals():
    """P = diag(P_X) K has marginals P_X and P_Y when P_X(x) = sum_n P(x|y_n) P_Y(y_n).

    Joint masses P(x_i | y_n) P_Y(y_n) = exp(l_n(x_i)) (background included) are known
    from the reference log-likelihoods; the column sums of diag(P_X) K must equal
    sum_i exp(l_n(x_i)) for every n, the row sums P_X.
    """
    grid, stride = (24, 24), 8
    means, covs = random_gaussians(30, (192, 192), seed=3, std_range=(6, 16))
    joint = np.exp(reference_loglik(means, covs, grid, stride))  # (I, N+1)
    p_x = joint.sum(1)
    p_x = p_x / p_x.sum()
    joint = joint / joint.sum()
    kernel = build_kernel(means, covs, grid, stride, eps=1e-9)
    plan = torch.as_tensor(p_x)[:, None] * kernel.dense().double()
    np.testing.assert_allclose(plan.sum(1).numpy(), p_x, rtol=1e-5)
    np.testing.assert_allclose(plan.sum(0).numpy(), joint.sum(0), atol=1e-6, rtol=1e-4)
    # the transport of P_X is the same product
    np.testing.assert_allclose(kernel.transport(torch.as_tensor(p_x)).numpy(), joint.sum(0),
                               atol=1e-6, rtol=1e-4)


def test_theorem1_without_background_normalised_likelihoods():
    """Foreground-only plan with P(x | y_n) = normalised Gaussians and uniform P_Y:
    diag(P_X) K sends 1/N to every point (Gaussians well inside the grid)."""
    grid, stride = (40, 40), 4
    rng = np.random.default_rng(4)
    means = rng.uniform(60, 100, (5, 2)).astype(np.float32)
    covs = np.stack([np.diag(rng.uniform(5, 9, 2) ** 2) for _ in range(5)]).astype(np.float32)
    kernel = build_kernel(means, covs, grid, stride, background=False, eps=1e-12)
    centres = cell_centres(grid, stride, dtype=torch.float64).numpy()
    like = []
    for m, c in zip(means.astype(np.float64), covs.astype(np.float64)):
        diff = centres - m
        d2 = np.einsum('ij,jk,ik->i', diff, np.linalg.inv(c), diff)
        like.append(np.exp(-0.5 * d2) / (2 * np.pi * np.sqrt(np.linalg.det(c))) * stride ** 2)
    like = np.stack(like, 1)
    np.testing.assert_allclose(like.sum(0), 1, atol=1e-6)  # P(.|y_n) normalised on the grid
    p_x = like.mean(1)
    out = kernel.transport(torch.as_tensor(p_x))
    np.testing.assert_allclose(out.numpy(), np.full(5, 0.2), atol=1e-5)
    assert kernel.dense().shape == (40 * 40, 5)


def test_transport_loss_gradient_finite_differences():
    means, covs = random_gaussians(12, (96, 96), seed=5)
    kernel = build_kernel(means, covs, (12, 12), 8)
    density = torch.rand(12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    density = (density * 0.3).requires_grad_(True)
    target = torch.linspace(0.5, 1.5, 12, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda d: transport_loss(d, kernel, target), (density,))
    # the gradient is K times the sign of the residual
    loss = transport_loss(density, kernel, target)
    (grad,) = torch.autograd.grad(loss, density)
    full_target = torch.cat([target, torch.zeros(1, dtype=torch.float64)])
    res = kernel.transport(density.detach()) - full_target
    expected = kernel.dense().double() @ torch.sign(res)
    torch.testing.assert_close(grad.reshape(-1), expected)


def test_gradient_with_pure_background_cells():
    """Cells with no stored point entry (far from the point) get the background gradient."""
    k = build_kernel(np.array([[12.0, 12.0]], np.float32), np.eye(2)[None] * 64, (20, 20), 8)
    assert (k.crow[1:] == k.crow[:-1]).any()  # some rows are empty
    density = (torch.rand(20, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
               * 0.01).requires_grad_(True)
    (grad,) = torch.autograd.grad(transport_loss(density, k), density)
    res = k.transport(density.detach()) - torch.tensor([1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(grad.reshape(-1), k.dense().double() @ torch.sign(res))
    assert torch.autograd.gradcheck(lambda d: k.transport(d), (density,))


@pytest.mark.parametrize('cutoff', [2.4, 3.0, 3.6])
def test_background_wins_beyond_cutoff(cutoff):
    """One Gaussian: background beats it exactly where
    d_M^2 > d^2/2 + log det(Sigma)/2 - log b (from l_n = l_0 with G* = G_n)."""
    sigma, stride, bg_ratio = 6.0, 1.0, 0.015
    mean = np.array([[60.3, 59.7]], np.float32)
    cov = np.array([[[sigma ** 2, 0], [0, sigma ** 2]]], np.float32)
    kernel = build_kernel(mean, cov, (120, 120), stride, cutoff=cutoff, bg_ratio=bg_ratio,
                          min_std=1.0, eps=1e-9)
    d = kernel.dense()
    centres = cell_centres((120, 120), stride, dtype=torch.float64)
    dm2 = ((centres - torch.as_tensor(mean, dtype=torch.float64)) ** 2).sum(1) / sigma ** 2
    crossover = cutoff ** 2 / 2 + math.log(sigma ** 4) / 2 - math.log(bg_ratio)
    margin = 0.05
    assert torch.all(d[dm2 > crossover + margin, 1] > 0.5)
    assert torch.all(d[dm2 < crossover - margin, 1] < 0.5)
    assert (dm2 > crossover + margin).any() and (dm2 < crossover - margin).any()
    # far away: pure background
    assert torch.all(d[dm2 > 100, 1] == 1)


def _transform(means, covs, A, t):
    A = np.asarray(A, np.float64)
    return ((means @ A.T) + t).astype(np.float32), (A @ covs @ A.T).astype(np.float32)


@pytest.mark.parametrize('name', ['flip_x', 'flip_y', 'transpose', 'rot90', 'crop'])
def test_affine_consistency(name):
    """Kernel of transformed Gaussians on the transformed grid = the original kernel
    with its cells mapped (det A = +-1 maps, which keep the clamp and log det)."""
    h, w, s = 12, 16, 8
    means, covs = random_gaussians(20, (w * s, h * s), seed=6)
    base = build_kernel(means, covs, (h, w), s, eps=1e-9).dense()
    r, c = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
    if name == 'flip_x':
        A, t, grid, (r2, c2) = [[-1, 0], [0, 1]], [w * s, 0], (h, w), (r, w - 1 - c)
    elif name == 'flip_y':
        A, t, grid, (r2, c2) = [[1, 0], [0, -1]], [0, h * s], (h, w), (h - 1 - r, c)
    elif name == 'transpose':
        A, t, grid, (r2, c2) = [[0, 1], [1, 0]], [0, 0], (w, h), (c, r)
    elif name == 'rot90':  # (x, y) -> (H - y, x): new grid is (w, h)
        A, t, grid, (r2, c2) = [[0, -1], [1, 0]], [h * s, 0], (w, h), (c, h - 1 - r)
    else:  # crop rows 3.., cols 5.. (Gaussians outside the crop are kept)
        A, t, grid = [[1, 0], [0, 1]], [-5 * s, -3 * s], (h - 3, w - 5)
        r, c = np.meshgrid(np.arange(3, h), np.arange(5, w), indexing='ij')
        r2, c2 = r - 3, c - 5
    m2, c2v = _transform(means.astype(np.float64), covs.astype(np.float64), A, np.asarray(t))
    moved = build_kernel(m2, c2v, grid, s, eps=1e-9).dense()
    src = torch.as_tensor((r * w + c).ravel())
    dst = torch.as_tensor((r2 * grid[1] + c2).ravel())
    torch.testing.assert_close(moved[dst], base[src], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize('scale', [0.5, 2.0])
def test_scaling_changes_background_ratio_as_stated(scale):
    """Resize by s: same kernel with stride, min/max std times s and bg_ratio times s^2."""
    h, w, s, min_std = 60, 80, 2, 8.0
    means, covs = random_gaussians(4, (w * s, h * s), seed=10, std_range=(6, 12))
    base = build_kernel(means, covs, (h, w), s, min_std=min_std, eps=1e-9).dense()
    m2, c2 = _transform(means.astype(np.float64), covs.astype(np.float64),
                        np.eye(2) * scale, np.zeros(2))
    kw = dict(min_std=min_std * scale, max_std=20.0 * scale, eps=1e-9)
    moved = build_kernel(m2, c2, (h, w), s * scale, bg_ratio=0.015 * scale ** 2, **kw).dense()
    torch.testing.assert_close(moved, base, atol=2e-5, rtol=1e-4)
    plain = build_kernel(m2, c2, (h, w), s * scale, **kw).dense()
    assert (plain - base).abs().max() > 0.1  # without the bg_ratio change it differs


def test_zero_points_is_pure_background():
    k = build_kernel(np.zeros((0, 2)), np.zeros((0, 2, 2)), (8, 10), 8)
    assert k.num_points == 0 and k.dense().shape == (80, 1)
    assert torch.all(k.dense() == 1)
    density = torch.rand(8, 10)
    torch.testing.assert_close(transport_loss(density, k), density.sum())


def test_one_point_and_border_points():
    grid, stride = (10, 14), 8
    # on the corners / edges of the image and slightly outside it
    means = np.array([[0, 0], [14 * 8, 10 * 8], [0, 40], [56, 0], [-3, 30], [115, 83], [50, 40]],
                     np.float32)
    covs = np.stack([np.diag([30.0, 90.0])] * len(means)).astype(np.float32)
    for m, c in [(means[-1:], covs[-1:]), (means, covs)]:
        k = build_kernel(m, c, grid, stride)
        assert_within_bound(k, reference_kernel(m, c, grid, stride))
        density = torch.rand(grid)
        torch.testing.assert_close(k.transport(density).sum(), density.sum(), rtol=1e-5, atol=1e-5)


def test_thousands_of_points():
    grid, stride = (48, 48), 8
    means, covs = random_gaussians(2000, (384, 384), seed=7, std_range=(3, 14))
    k = build_kernel(means, covs, grid, stride)
    assert k.num_points == 2000
    assert_within_bound(k, reference_kernel(means, covs, grid, stride))
    assert k.nbytes() * 10 < 2000 * 48 * 48 * 4


def test_duplicate_points():
    means = np.array([[40.0, 40.0], [40.0, 40.0], [80.0, 30.0]], np.float32)
    covs = np.stack([np.diag([64.0, 64.0])] * 3).astype(np.float32)
    k = build_kernel(means, covs, (10, 12), 8)
    assert_within_bound(k, reference_kernel(means, covs, (10, 12), 8))
    d = k.dense()
    torch.testing.assert_close(d[:, 0], d[:, 1])


def test_clamp_covariances_per_axis():
    th = 0.4
    rot = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    cov = (rot @ torch.diag(torch.tensor([40.0 ** 2, 2.0 ** 2])) @ rot.T)[None].double()
    clamped, conic, logdet = clamp_covariances(cov, 8.0, 20.0)
    lam, vec = torch.linalg.eigh(clamped[0])
    torch.testing.assert_close(lam.sqrt(), torch.tensor([8.0, 20.0], dtype=torch.float64))
    one = torch.tensor(1.0, dtype=torch.float64)
    torch.testing.assert_close(abs(vec[:, 1] @ rot[:, 0].double()), one)
    torch.testing.assert_close(torch.linalg.inv(clamped[0]),
                               torch.stack([conic[0, :2], conic[0, 1:]]))
    torch.testing.assert_close(logdet[0], math.log(64.0 * 400.0) * one)


def test_heuristic_kernel_is_isotropic_build():
    pts = np.array([[20.0, 30.0], [70.0, 50.0]], np.float32)
    k = heuristic_kernel(pts, (10, 12), 8, sigma=10.0)
    ref = build_kernel(pts, np.stack([np.eye(2) * 100.0] * 2), (10, 12), 8)
    torch.testing.assert_close(k.dense(), ref.dense())
    assert_within_bound(k, reference_kernel(pts, np.stack([np.eye(2) * 100.0] * 2), (10, 12), 8))


def test_point_kernels_two_column_plans():
    means, covs = random_gaussians(6, (256, 256), seed=8, std_range=(2, 12))
    kfg = point_kernels(means, covs, (64, 64), 4)
    assert kfg.shape == (6, 64, 64)
    for n in range(6):
        ll = reference_loglik(means[n:n + 1], covs[n:n + 1], (64, 64), 4)
        ref = 1.0 / (1.0 + np.exp(np.clip(ll[:, 1] - ll[:, 0], -700, 700)))
        np.testing.assert_allclose(kfg[n].reshape(-1).numpy(), ref, atol=1e-5)


def test_pickle_and_device_round_trip():
    means, covs = random_gaussians(15, (128, 128), seed=9)
    k = build_kernel(means, covs, (16, 16), 8)
    k2 = pickle.loads(pickle.dumps(k))
    assert isinstance(k2, TransportKernel) and k2.num_points == 15 and k2.grid_shape == (16, 16)
    torch.testing.assert_close(k2.dense(), k.dense())
    assert k.to('cpu') is k
    density = torch.rand(16, 16)
    torch.testing.assert_close(k2.transport(density), k.transport(density))


class _KernelDataset(torch.utils.data.Dataset):
    def __init__(self):
        self.gaussians = [random_gaussians(n, (64, 64), seed=n) for n in (3, 0, 7)]

    def __len__(self):
        return len(self.gaussians)

    def __getitem__(self, i):
        means, covs = self.gaussians[i]
        return build_kernel(means, covs, (8, 8), 8)


def test_kernels_cross_dataloader_workers():
    data = _KernelDataset()
    loader = torch.utils.data.DataLoader(data, batch_size=3, num_workers=1,
                                         collate_fn=lambda batch: batch)
    (kernels,) = list(loader)
    for i, k in enumerate(kernels):
        torch.testing.assert_close(k.dense(), data[i].dense())


def test_bad_input_raises():
    with pytest.raises(ValueError, match='non-finite'):
        build_kernel(np.array([[1.0, np.nan]]), np.eye(2)[None], (4, 4), 8)
    with pytest.raises(ValueError, match='covariances'):
        build_kernel(np.zeros((2, 2)), np.eye(2)[None], (4, 4), 8)
    k = build_kernel(np.zeros((1, 2)), np.eye(2)[None], (4, 4), 8)
    with pytest.raises(ValueError, match='cells'):
        k.transport(torch.zeros(5, 5))
