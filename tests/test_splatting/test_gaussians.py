"""Gaussians2D geometry: scales/angles, affine transforms, flips."""
import math

import numpy as np
import pytest
import torch

from gst_mm.splatting import Gaussians2D, render


def test_scales_angles_round_trip():
    scales = torch.tensor([[5.0, 2.0], [3.0, 1.0], [2.0, 2.0]])
    angles = torch.tensor([0.3, 2.5, 0.0])
    g = Gaussians2D.from_scales_angles(torch.zeros(3, 2), scales, angles)
    torch.testing.assert_close(g.scales, scales, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g.angles[:2], angles[:2], atol=1e-5, rtol=1e-5)
    # the first std lies along the angle direction
    v = torch.tensor([math.cos(0.3), math.sin(0.3)])
    assert float(v @ g.covariances[0] @ v) == pytest.approx(25.0, rel=1e-5)


def test_transform_matches_transformed_samples():
    rng = np.random.default_rng(0)
    g = Gaussians2D.from_scales_angles([[10.0, 20.0]], [[4.0, 1.5]], [0.7])
    A = np.array([[1.3, 0.4], [-0.2, 0.8]])
    t = np.array([5.0, -3.0])
    samples = rng.multivariate_normal(g.means[0].numpy(), g.covariances[0].numpy(), 200000)
    moved = samples @ A.T + t
    gt = g.transform(A, t)
    np.testing.assert_allclose(gt.means[0].numpy(), moved.mean(0), atol=0.03)
    np.testing.assert_allclose(gt.covariances[0].numpy(), np.cov(moved.T), rtol=0.02, atol=0.05)
    # exact: the Mahalanobis distance is invariant under the map
    x = rng.normal(size=(10, 2)) * 3 + g.means[0].numpy()
    d0 = x - g.means[0].numpy()
    d1 = (x @ A.T + t) - gt.means[0].numpy()
    m0 = np.einsum('ni,ij,nj->n', d0, np.linalg.inv(g.covariances[0].numpy()), d0)
    m1 = np.einsum('ni,ij,nj->n', d1, np.linalg.inv(gt.covariances[0].numpy()), d1)
    np.testing.assert_allclose(m0, m1, rtol=1e-4)


def test_flip_x_mirrors_the_rendered_image():
    gen = torch.Generator().manual_seed(0)
    n, h, w = 12, 20, 27
    means = torch.rand(n, 2, generator=gen) * torch.tensor([w, h])
    g = Gaussians2D.from_scales_angles(means, torch.rand(n, 2, generator=gen) * 3 + 1,
                                       torch.rand(n, generator=gen) * 3,
                                       torch.rand(n, 3, generator=gen))
    a = render(g, h, w, 'torch', compositing='sum')
    b = render(g.flip_x(w), h, w, 'torch', compositing='sum')
    torch.testing.assert_close(b, a.flip(1), atol=1e-5, rtol=1e-5)
    twice = g.flip_x(w).flip_x(w)
    torch.testing.assert_close(twice.means, g.means)
    torch.testing.assert_close(twice.covariances, g.covariances)
    torch.testing.assert_close(g.flip_x(w).angles, (math.pi - g.angles) % math.pi, atol=1e-4,
                               rtol=1e-4)


def test_subset_len_numpy_and_finite():
    g = Gaussians2D.from_scales_angles(np.zeros((4, 2)), np.ones((4, 2)), np.zeros(4))
    assert len(g) == 4 and len(g.subset([0, 2])) == 2 and len(g.subset(slice(1, 3))) == 2
    assert len(g.subset(np.array([True, False, True, True]))) == 3
    d = g.numpy()
    assert d['means'].dtype == np.float32 and d['covariances'].shape == (4, 2, 2)
    assert bool(g.is_finite().all())
    bad = Gaussians2D(np.zeros((1, 2)), np.full((1, 2, 2), np.nan))
    assert not bool(bad.is_finite()[0])
    assert len(Gaussians2D.empty()) == 0
