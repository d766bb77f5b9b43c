"""Soft-assignment kernel and the reduction onto pens, against references:
the hard kernel (one component per point), a dense evaluation of the formula, and a
brute-force reduction over every pen."""
import math

import numpy as np
import pytest
import torch

from gst_mm.splatting.reduction import reduce_onto_pens
from gst_mm.transport import build_kernel, point_kernels
from gst_mm.transport.kernel import cell_centres, clamp_covariances
from gst_mm.transport.soft_kernel import build_soft_kernel, soft_point_kernels


def _random(n, seed, side=96.0):
    rng = np.random.default_rng(seed)
    means = rng.uniform(0, side, (n, 2)).astype(np.float32)
    a = rng.normal(size=(n, 2, 2))
    cov = (a @ a.transpose(0, 2, 1) * 12 + np.eye(2) * 6).astype(np.float32)
    return means, cov


@pytest.mark.parametrize('seed', [0, 1])
def test_one_component_per_point_is_the_hard_kernel(seed):
    means, cov = _random(25, seed)
    ar = np.arange(25)
    hard = build_kernel(means, cov, (12, 12), 8).dense()
    soft = build_soft_kernel(means, cov, ar, ar, np.ones(25), 25, (12, 12), 8).dense()
    torch.testing.assert_close(soft, hard, atol=1e-6, rtol=0)
    ph = point_kernels(means, cov, (12, 12), 8)
    ps = soft_point_kernels(means, cov, ar, ar, np.ones(25), 25, (12, 12), 8)
    torch.testing.assert_close(ps, ph, atol=1e-6, rtol=0)


def _dense_soft(means, cov, comp, pen, weight, n, grid, stride, cutoff=3.0, b=0.015):
    """The module formula evaluated on every (cell, component), float64."""
    m = torch.as_tensor(means, dtype=torch.float64)
    c, conic, logdet = clamp_covariances(torch.as_tensor(cov, dtype=torch.float64),
                                         float(stride), 20.0)
    x = cell_centres(grid, stride, dtype=torch.float64)
    dx = x[:, None, 0] - m[None, :, 0]
    dy = x[:, None, 1] - m[None, :, 1]
    d2 = conic[None, :, 0] * dx * dx + 2 * conic[None, :, 1] * dx * dy + conic[None, :, 2] * dy * dy
    l_comp = -0.5 * d2 - 0.5 * logdet[None]
    fg = np.unique(comp)
    l_fg = torch.full((x.shape[0], n), -math.inf, dtype=torch.float64)
    for k in range(n):
        e = np.flatnonzero(pen == k)
        if len(e):
            l_fg[:, k] = torch.logsumexp(l_comp[:, comp[e]] + torch.log(
                torch.as_tensor(weight[e], dtype=torch.float64))[None], 1)
    star = d2[:, fg].argmin(1)
    d2s = d2[:, fg].gather(1, star[:, None])[:, 0]
    lds = logdet[fg][star]
    l_bg = -0.5 * (cutoff ** 2 - d2s) - lds + math.log(b)
    return torch.softmax(torch.cat([l_fg, l_bg[:, None]], 1), 1)


def test_sparse_soft_kernel_matches_the_dense_formula():
    means, cov = _random(30, 3)
    rng = np.random.default_rng(4)
    n = 10  # 10 annotations share 30 components (2-4 each, some shared)
    comp, pen, weight = [], [], []
    for k in range(n):
        own = rng.choice(30, size=rng.integers(2, 5), replace=False)
        w = rng.uniform(0.2, 1.0, len(own))
        comp += list(own)
        pen += [k] * len(own)
        weight += list(w / w.sum())
    comp, pen, weight = np.array(comp), np.array(pen), np.array(weight)
    grid = (12, 12)
    sparse = build_soft_kernel(means, cov, comp, pen, weight, n, grid, 8).dense().double()
    dense = _dense_soft(means, cov, comp, pen, weight, n, grid, 8)
    # the sparse kernel's bound: row L1 error <= 2 N eps (eps = 1e-5)
    err = (sparse - dense).abs().sum(1).max()
    assert err <= 2 * n * 1e-5, err
    np.testing.assert_allclose(sparse.sum(1).numpy(), 1.0, atol=1e-5)


def test_splitting_a_component_into_identical_halves_changes_nothing():
    means, cov = _random(12, 5)
    ar = np.arange(12)
    one = build_soft_kernel(means, cov, ar, ar, np.ones(12), 12, (12, 12), 8).dense()
    two = build_soft_kernel(np.concatenate([means, means]), np.concatenate([cov, cov]),
                            np.concatenate([ar, ar + 12]), np.concatenate([ar, ar]),
                            np.full(24, 0.5), 12, (12, 12), 8).dense()
    torch.testing.assert_close(two, one, atol=1e-6, rtol=0)


def test_a_mixture_reaches_where_its_components_are():
    """Annotation 0 owns a component on its click and one 40 px below (a 'body'):
    the cells around the body go to it, which the hard kernel cannot do."""
    means = np.array([[40.0, 20.0], [40.0, 60.0]], np.float32)
    cov = np.stack([np.eye(2) * 16, np.eye(2) * 64]).astype(np.float32)
    k = build_soft_kernel(means, cov, [0, 1], [0, 0], [0.3, 0.7], 1, (10, 10), 8).dense()
    hard = build_kernel(means[:1], cov[:1], (10, 10), 8).dense()
    body = 7 * 10 + 5  # cell centred at (44, 60)
    assert k[body, 0] > 0.9 and hard[body, 0] < 0.01


def test_reduction_is_a_valid_soft_assignment_and_matches_brute_force():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 200, (40, 2))
    comps = np.concatenate([pts + rng.normal(0, 3, (40, 2)), rng.uniform(0, 200, (60, 2))])
    scales = rng.uniform(2, 10, (100, 1, 1))
    ccov = np.eye(2)[None] * scales ** 2
    acov = np.broadcast_to(np.eye(2) * 4.0, (40, 2, 2))
    red = reduce_onto_pens(comps, ccov, pts, acov, temperature=0.5, candidates=40,
                           min_resp=0.0)
    # each Gaussian's mass is shared out completely over the pens (+ background)
    per_comp = np.bincount(red.comp, weights=red.resp, minlength=100) + red.background
    np.testing.assert_allclose(per_comp, 1.0, atol=1e-12)
    # weights are P(G | y): a distribution over components for each annotation
    has = red.pen_mass > 0
    np.testing.assert_allclose(np.bincount(red.pen, weights=red.weight, minlength=40)[has], 1.0,
                               atol=1e-12)
    # brute force: costs of every (component, pen), softmax with the background cost
    s = ccov[:, None] + acov[None]
    diff = pts[None] - comps[:, None]
    inv = np.linalg.inv(s)
    q = np.einsum('mni,mnij,mnj->mn', diff, inv, diff)
    cost = 0.5 * q + 0.5 * np.log(np.linalg.det(s))
    best = cost.argmin(1)
    bg = 0.5 * 9.0 + 0.5 * np.log(np.linalg.det(s[np.arange(100), best]))
    p = np.exp(-np.concatenate([cost, bg[:, None]], 1) / 0.5)
    p /= p.sum(1, keepdims=True)
    dense = np.zeros((100, 40))
    dense[red.comp, red.pen] = red.resp
    np.testing.assert_allclose(dense, p[:, :40], atol=1e-12)
    np.testing.assert_allclose(red.background, p[:, 40], atol=1e-12)
    # a component jittered off a click is owned mostly by that click
    assert (dense[:40].argmax(1) == np.arange(40)).mean() >= 0.9


def test_reduction_without_annotations_sends_everything_to_background():
    red = reduce_onto_pens(np.zeros((3, 2)), np.tile(np.eye(2), (3, 1, 1)), np.zeros((0, 2)),
                           np.zeros((0, 2, 2)))
    assert len(red.comp) == 0 and np.all(red.background == 1.0)
