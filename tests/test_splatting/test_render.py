"""Torch renderer vs the dense reference, and gsplat's rendering conventions."""
import math

import pytest
import torch

from gst_mm.splatting import Gaussians2D, render
from gst_mm.splatting.render import (
    ALPHA_MAX,
    ALPHA_THRESHOLD,
    build_pairs,
    cutoff_radius,
    gsplat_available,
)


def random_gaussians(n, h, w, seed=0, dtype=torch.float64, grad=True):
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 2, generator=gen, dtype=dtype) * torch.tensor([w, h], dtype=dtype)
    scales = torch.rand(n, 2, generator=gen, dtype=dtype) * 4 + 0.7
    angles = torch.rand(n, generator=gen, dtype=dtype) * math.pi
    colors = torch.rand(n, 3, generator=gen, dtype=dtype)
    opac = torch.rand(n, generator=gen, dtype=dtype) * 0.6 + 0.4
    params = [t.requires_grad_(grad) for t in (means, scales, angles, colors, opac)]
    return params


@pytest.mark.parametrize('compositing', ['alpha', 'sum'])
def test_torch_matches_dense_values_and_gradients(compositing):
    h, w = 23, 31
    means, scales, angles, colors, opac = random_gaussians(25, h, w)
    g = Gaussians2D.from_scales_angles(means, scales, angles, colors)
    bg = torch.rand(h, w, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    weights = torch.rand(h, w, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    outs, grads = [], []
    for backend in ('torch', 'dense'):
        img, acc = render(g, h, w, backend, compositing=compositing, opacities=opac,
                          background=bg, return_alpha=True)
        loss = (img * weights).sum() + acc.sum()
        grads.append(torch.autograd.grad(loss, [means, scales, angles, colors, opac],
                                         retain_graph=True))
        outs.append(img.detach())
    assert outs[0].abs().max() > 0.1
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-9, atol=1e-9)
    for a, b in zip(*grads):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_sum_gradients_match_finite_differences():
    h, w = 12, 14
    means, scales, angles, colors, opac = random_gaussians(4, h, w, seed=3)

    def f(s):
        g = Gaussians2D.from_scales_angles(means.detach(), s, angles.detach(), colors.detach())
        return render(g, h, w, 'torch', compositing='sum').pow(2).sum()

    s0 = scales.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(f(s0), [s0])
    eps = 1e-6
    for i in range(4):
        for j in range(2):
            sp, sm = s0.detach().clone(), s0.detach().clone()
            sp[i, j] += eps
            sm[i, j] -= eps
            fd = (f(sp) - f(sm)) / (2 * eps)
            # the 1/255 cut-off makes f piecewise smooth: compare loosely
            assert abs(fd - grad[i, j]) <= 1e-3 * max(1.0, abs(fd))


def test_pixel_centre_is_at_half():
    g = Gaussians2D.from_scales_angles([[2.5, 3.5]], [[1.0, 1.0]], [0.0], [[1.0, 1.0, 1.0]])
    img, acc = render(g, 7, 6, 'torch', return_alpha=True)
    assert acc[3, 2] == pytest.approx(ALPHA_MAX)           # exactly on the mean
    assert acc[3, 1] == pytest.approx(acc[3, 3])           # symmetric about the centre
    assert acc[2, 2] == pytest.approx(math.exp(-0.5), rel=1e-6)  # 1 px away: q = 1/2


def test_cutoff_radius_and_threshold():
    assert cutoff_radius(1.0) == pytest.approx(3.33, abs=0.005)
    sigma = 2.0
    # a pixel centre just inside / outside 3.33 sigma along x
    for dist, inside in ((3.30 * sigma, True), (3.36 * sigma, False)):
        g = Gaussians2D.from_scales_angles([[0.5 + dist, 0.5]], [[sigma, sigma]], [0.0])
        acc = render(g, 1, 20, 'torch', return_alpha=True)[1]
        assert (acc[0, 0] > 0) == inside
        if inside:
            assert acc[0, 0] >= ALPHA_THRESHOLD
    # opacity lowers the cut-off: alpha < 1/255 is skipped
    g = Gaussians2D.from_scales_angles([[0.5 + 2.0 * sigma, 0.5]], [[sigma, sigma]], [0.0])
    acc = render(g, 1, 20, 'torch', opacities=torch.tensor([0.02]), return_alpha=True)[1]
    assert acc[0, 0] == 0  # 0.02 * exp(-2) < 1/255


def test_windows_contain_every_visible_pair():
    h = w = 40
    means, scales, angles, colors, _ = random_gaussians(30, h, w, grad=False)
    g = Gaussians2D.from_scales_angles(means, scales, angles, colors)
    pairs = build_pairs(g.means, g.covariances, h, w)
    in_window = torch.zeros(30, h * w, dtype=torch.bool)
    in_window[pairs.gid, pairs.pix] = True
    for n in range(30):  # every pixel a Gaussian reaches (dense) is in its window
        acc = render(g.subset([n]), h, w, 'dense', return_alpha=True)[1].reshape(-1)
        assert bool(in_window[n][acc > 0].all())
    assert len(pairs) < 30 * h * w / 3  # and the windows are far smaller than N*H*W


def test_alpha_compositing_order_and_termination():
    # two opaque Gaussians on the same spot: the first (index 0) is in front
    g = Gaussians2D.from_scales_angles([[1.5, 1.5], [1.5, 1.5]], [[3.0, 3.0], [3.0, 3.0]],
                                       [0.0, 0.0], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    img = render(g, 3, 3, 'torch')
    assert img[1, 1, 0] == pytest.approx(ALPHA_MAX)
    # the second would bring T to 1e-6 <= 1e-4: gsplat stops before it
    assert img[1, 1, 1] == 0


def test_backend_validation():
    g = Gaussians2D.from_scales_angles([[1.0, 1.0]], [[1.0, 1.0]], [0.0])
    with pytest.raises(ValueError, match='backend'):
        render(g, 4, 4, 'opengl')
    with pytest.raises(ValueError, match='compositing'):
        render(g, 4, 4, 'torch', compositing='max')


@pytest.mark.skipif(not gsplat_available(), reason='gsplat needs CUDA')
def test_gsplat_matches_torch():  # pragma: no cover - CUDA machines only
    means, scales, angles, colors, opac = random_gaussians(50, 64, 80, dtype=torch.float32)
    g = Gaussians2D.from_scales_angles(means, scales, angles, colors)
    a = render(g, 64, 80, 'torch', opacities=opac)
    b = render(g.to('cuda'), 64, 80, 'gsplat', opacities=opac.cuda()).cpu()
    torch.testing.assert_close(a, b, rtol=1e-3, atol=2e-3)
    ga = torch.autograd.grad(a.sum(), [scales, colors], retain_graph=True)
    gb = torch.autograd.grad(b.sum(), [scales, colors])
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-2, atol=1e-2)
