"""Per-joint transport loss (method.md 5) vs a direct computation."""
import math

import pytest
import torch

from gst_mm.models.heads.joint_transport import (
    joint_transport_loss,
    joint_transport_losses,
    nonnegative,
)


def _direct(heat, kern, weights, mode):
    """Loop-by-loop reference: l_j = |sum K d - 1| + |sum (1 - K) d|, mean over slots."""
    b, j, h, w = heat.shape
    total = heat.new_zeros(())
    for bi in range(b):
        for ji in range(j):
            d = heat[bi, ji]
            # softplus: unit channel mass at raw 0 (offset log(expm1(1 / cells)))
            d = {'relu': d.clamp_min(0), 'abs': d.abs(), 'softmax': d.exp() / d.exp().sum(),
                 'softplus': torch.log1p(torch.exp(d + math.log(math.expm1(1 / (h * w)))))
                 }[mode]
            k = kern[bi, ji]
            fg = sum(k[y, x] * d[y, x] for y in range(h) for x in range(w))
            bg = sum((1 - k[y, x]) * d[y, x] for y in range(h) for x in range(w))
            total = total + weights[bi, ji] * ((fg - 1).abs() + bg.abs())
    return total / (b * j)


@pytest.mark.parametrize('mode', ['softmax', 'relu', 'abs', 'softplus'])
def test_loss_and_gradient_match_direct_computation(mode):
    g = torch.Generator().manual_seed(0)
    heat = (torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64) * 0.2)
    kern = torch.rand(2, 3, 5, 6, generator=g, dtype=torch.float64)
    weights = torch.tensor([[1., 0., 1.], [0.5, 1., 1.]], dtype=torch.float64)
    h1 = heat.clone().requires_grad_(True)
    h2 = heat.clone().requires_grad_(True)
    loss = joint_transport_loss(h1, kern, weights, nonneg=mode)
    ref = _direct(h2, kern, weights, mode)
    assert torch.allclose(loss, ref, rtol=1e-12, atol=1e-12)
    loss.backward()
    ref.backward()
    assert torch.allclose(h1.grad, h2.grad, rtol=1e-10, atol=1e-12)
    # a joint with weight 0 receives no gradient
    assert h1.grad[0, 1].abs().max() == 0


def test_gradient_is_the_analytic_one():
    """dl/dh = [sign(sum K d - 1) K + sign(sum (1-K) d) (1-K)] * 1[h > 0] (relu)."""
    g = torch.Generator().manual_seed(1)
    heat = torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64)
    kern = torch.rand(1, 2, 4, 4, generator=g, dtype=torch.float64)
    w = torch.ones(1, 2, dtype=torch.float64)
    h = heat.clone().requires_grad_(True)
    joint_transport_loss(h, kern, w, nonneg='relu').backward()
    d = heat.clamp_min(0)
    fg = (kern * d).sum((-1, -2), keepdim=True)
    bg = ((1 - kern) * d).sum((-1, -2), keepdim=True)
    analytic = (torch.sign(fg - 1) * kern + torch.sign(bg) * (1 - kern)) * (heat > 0) / 2
    assert torch.allclose(h.grad, analytic)


def test_perfect_prediction_has_zero_loss():
    """A heatmap equal to K_fg / sum(K_fg^2)-normalised so sum K d = 1 and that lives
    only where K = 1 gives zero loss; moving its mass off the joint costs 2x the mass."""
    kern = torch.zeros(1, 1, 5, 5)
    kern[0, 0, 2, 2] = 1.0
    d = torch.zeros(1, 1, 5, 5)
    d[0, 0, 2, 2] = 1.0
    assert joint_transport_losses(d, kern).item() == 0.0
    d2 = torch.zeros(1, 1, 5, 5)
    d2[0, 0, 0, 0] = 1.0  # all mass on background
    assert joint_transport_losses(d2, kern).item() == pytest.approx(2.0)


def test_bad_inputs():
    with pytest.raises(ValueError, match='shape'):
        joint_transport_losses(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))
    with pytest.raises(ValueError, match='non-negativity'):
        nonnegative(torch.zeros(1), 'square')
