"""GST's per-joint transport loss (method.md 5, docs/pose.md): the registered loss
module against a direct loop over cells, its cost term against a dense evaluation of
the plan and finite differences, the cost maps against their formulas, and the
density decoders on cases whose answer is known."""
import math

import pytest
import torch

from gst_mm.models.heads.density_maps import (
    centroid_refine,
    dark_refine,
    decode_cells,
    nonnegative,
)
from gst_mm.models.losses import JointTransportLoss
from gst_mm.transport import (
    background_costs,
    joint_transport_losses,
    plan_costs,
    point_costs,
    point_kernels,
)


def _density(heat, mode, beta=1.0):
    h, w = heat.shape[-2:]
    d = heat * beta
    return {'relu': d.clamp_min(0), 'abs': d.abs(), 'softmax': d.exp() / d.exp().sum(),
            'softplus': torch.log1p(torch.exp(d + math.log(math.expm1(1 / (h * w)))))}[mode]


def _direct(heat, kern, weights, mode, discrepancy='l1', costs=None, lam=0.0, beta=1.0):
    """Loop-by-loop reference: D(sum K d, sum (1 - K) d) + lam sum_x d C per joint (C:
    the plan's cost per cell), weighted mean over the joint slots."""
    b, j, h, w = heat.shape
    total = heat.new_zeros(())
    for bi in range(b):
        for ji in range(j):
            d = _density(heat[bi, ji], mode, beta)
            k = kern[bi, ji]
            fg = sum(k[y, x] * d[y, x] for y in range(h) for x in range(w))
            bg = sum((1 - k[y, x]) * d[y, x] for y in range(h) for x in range(w))
            lj = (fg - 1).abs() if discrepancy == 'l1' else -torch.log(fg)
            lj = lj + bg.abs()
            if lam:
                c = costs[bi, ji]
                lj = lj + lam * sum(d[y, x] * c[y, x] for y in range(h) for x in range(w))
            total = total + weights[bi, ji] * lj
    return total / (b * j)


def _case(seed=0):
    g = torch.Generator().manual_seed(seed)
    heat = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64) * 0.2
    kern = torch.rand(2, 3, 5, 6, generator=g, dtype=torch.float64)
    costs = torch.rand(2, 3, 5, 6, generator=g, dtype=torch.float64) * 9
    weights = torch.tensor([[1., 0., 1.], [0.5, 1., 1.]], dtype=torch.float64)
    return heat, kern, costs, weights


def _module_loss(heat, kern, weights, mode, discrepancy='l1', costs=None, lam=0.0, beta=1.0):
    terms = JointTransportLoss(discrepancy, cost_weight=lam)(
        nonnegative(heat, mode, beta=beta), kern, weights, costs)
    return sum(terms.values())


@pytest.mark.parametrize('mode', ['softmax', 'relu', 'abs', 'softplus'])
@pytest.mark.parametrize('discrepancy,lam', [('l1', 0.0), ('log', 0.0), ('l1', 0.1),
                                             ('log', 0.2)])
def test_loss_and_gradient_match_direct_computation(mode, discrepancy, lam):
    heat, kern, costs, weights = _case()
    if discrepancy == 'log' and mode != 'softmax':
        heat = heat.abs() + 0.5  # positive transported mass for -log
    h1 = heat.clone().requires_grad_(True)
    h2 = heat.clone().requires_grad_(True)
    loss = _module_loss(h1, kern, weights, mode, discrepancy, costs, lam, beta=1.5)
    ref = _direct(h2, kern, weights, mode, discrepancy, costs, lam, beta=1.5)
    assert torch.allclose(loss, ref, rtol=1e-12, atol=1e-12)
    loss.backward()
    ref.backward()
    assert torch.allclose(h1.grad, h2.grad, rtol=1e-10, atol=1e-12)
    assert h1.grad[0, 1].abs().max() == 0  # a joint with weight 0 gets no gradient


def test_cost_term_is_the_plans_transport_cost_and_its_gradient_is_right():
    # W = sum_{x, n in {joint, bg}} P(x, n) c(x, n) with P = diag(d) [K, 1 - K], the joint
    # column's cost c and the background column's c_0: a dense evaluation of the plan
    heat, kern, point_cost, weights = _case(1)
    c0 = torch.tensor([[9.0, 4.5, 12.0], [6.0, 9.0, 3.0]], dtype=torch.float64)
    d = nonnegative(heat)
    plan = torch.stack([d * kern, d * (1 - kern)], -1)         # (B, J, h, w, 2)
    cost = torch.stack([point_cost, c0[..., None, None].expand_as(point_cost)], -1)
    dense = (plan * cost).flatten(2).sum(-1)
    from gst_mm.transport import joint_transport_costs
    costs = plan_costs(kern, point_cost, c0)
    assert torch.allclose(joint_transport_costs(d, costs), dense, rtol=1e-12)
    # the plan's marginals: rows sum to d, the joint column to the transported mass
    assert torch.allclose(plan.sum(-1), d)
    # finite differences of the whole loss (l1 + cost) in float64
    loss_fn = JointTransportLoss('l1', cost_weight=0.15)
    f = lambda h: sum(loss_fn(nonnegative(h), kern, weights, costs).values())  # noqa: E731
    h = heat.clone().requires_grad_(True)
    (grad, ) = torch.autograd.grad(f(h), h)
    v = torch.randn(heat.shape, generator=torch.Generator().manual_seed(3), dtype=heat.dtype)
    eps = 1e-6
    fd = (f(heat + eps * v) - f(heat - eps * v)) / (2 * eps)
    assert fd.item() == pytest.approx((grad * v).sum().item(), rel=1e-6)


def test_log_discrepancy_gradient_is_the_l1_one_scaled_by_the_inverse_mass():
    # softmax density (background mass 1 - m): d(2 (1 - m))/dz = -2 q (K - m) and
    # d(-log m + 1 - m)/dz = -(1 / m + 1) q (K - m)
    heat, kern, _, _ = _case(2)
    w = torch.ones(2, 3, dtype=torch.float64)
    grads = {}
    for disc in ('l1', 'log'):
        h = heat.clone().requires_grad_(True)
        (grads[disc], ) = torch.autograd.grad(_module_loss(h, kern, w, 'softmax', disc), h)
    m = (nonnegative(heat) * kern).flatten(2).sum(-1)[..., None, None]
    assert torch.allclose(grads['log'], grads['l1'] * (1 / m + 1) / 2, rtol=1e-9)


def test_cost_prefers_the_joint_inside_the_kernel_plateau():
    """Unit mass on one cell: the paper's loss is the same (~0) anywhere on the
    plateau; with the cost it grows with the squared distance to the joint, and mass
    sent far to background costs the cut-off's cost (not 0: no incentive to drain)."""
    stride, grid = 2, (16, 16)
    joint = torch.tensor([[15.0, 15.0]])            # centre of cell (7, 7)
    cov = torch.eye(2)[None] * 4.0                  # 2 px = 1 cell
    kern = point_kernels(joint, cov, grid, stride)[None].double()
    c0 = background_costs(cov, stride, 'sqdist')
    assert c0.tolist() == pytest.approx([9.0])      # (cut-off 3 x 1 cell)^2
    costs = plan_costs(kern, point_costs(joint, cov, grid, stride, 'sqdist')[None].double(),
                       c0[None].double())
    w = torch.ones(1, 1, dtype=torch.float64)
    paper, with_cost = [], []
    for dx in range(3):   # 0-2 cells: inside the plateau (K >= 0.99)
        d = torch.zeros(1, 1, *grid, dtype=torch.float64)
        d[0, 0, 7, 7 + dx] = 1.0
        paper.append(JointTransportLoss()(d, kern, w)['loss_transport'].item())
        with_cost.append(sum(JointTransportLoss(cost_weight=0.1)(d, kern, w, costs).values()
                             ).item())
    assert max(paper) - min(paper) < 0.01          # the plateau: ~no preference
    assert all(b > a + 0.05 for a, b in zip(with_cost, with_cost[1:]))
    assert costs[0, 0, 7, 7:10].tolist() == pytest.approx([0.0, 1.0, 4.0], abs=0.05)
    assert costs[0, 0, 0, 0].item() == pytest.approx(9.0, abs=1e-3)  # far: background
    assert background_costs(cov * 4, stride, 'sqdist').item() == pytest.approx(36.0, rel=1e-5)
    assert background_costs(cov, stride, 'mahalanobis').item() == pytest.approx(4.5)


def test_point_costs_match_their_formulas():
    g = torch.Generator().manual_seed(4)
    means = torch.rand(3, 2, generator=g) * 30 + 1
    a = torch.rand(3, 2, 2, generator=g)
    cov = a @ a.transpose(1, 2) * 20 + torch.eye(2) * 0.5
    grid, stride = (9, 8), 4
    sq = point_costs(means, cov, grid, stride, 'sqdist')
    ma = point_costs(means, cov, grid, stride, 'mahalanobis', max_std=50.0)
    from gst_mm.transport import clamp_covariances
    clamped = clamp_covariances(cov, float(stride), 50.0)[0]
    for n in range(3):
        inv = torch.linalg.inv(clamped[n].double())
        for r, c in ((0, 0), (4, 5), (8, 7)):
            x = torch.tensor([stride * c + stride / 2, stride * r + stride / 2]).double()
            dv = x - means[n].double()
            assert sq[n, r, c].item() == pytest.approx((dv @ dv).item() / stride ** 2, rel=1e-5)
            assert ma[n, r, c].item() == pytest.approx(0.5 * (dv @ inv @ dv).item(), rel=1e-4)
    with pytest.raises(ValueError, match='cost kind'):
        point_costs(means, cov, grid, stride, 'l1')


def test_loss_module_checks_its_inputs():
    d = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match='shape'):
        joint_transport_losses(d, torch.zeros(1, 2, 4, 5))
    with pytest.raises(ValueError, match='cost maps'):
        JointTransportLoss(cost_weight=0.1)(d, torch.ones_like(d), None, None)
    with pytest.raises(ValueError, match='discrepancy'):
        JointTransportLoss('l2')
    with pytest.raises(ValueError, match='non-negativity'):
        nonnegative(torch.zeros(1), 'square')


# ---------------------------------------------------------------------- decoders
def test_centroid_is_the_window_mass_centroid():
    d = torch.zeros(1, 2, 8, 10)
    d[0, 0, 3, 5], d[0, 0, 3, 6], d[0, 0, 6, 1] = 0.6, 0.2, 0.2  # far cell outside r=1
    d[0, 1, 0, 0], d[0, 1, 1, 0] = 0.5, 0.5                         # window clipped
    c = centroid_refine(d, radius=1)
    assert c[0, 0].tolist() == pytest.approx([5.25, 3.0])
    assert c[0, 1].tolist() == pytest.approx([0.0, 0.5])


def test_dark_step_recovers_the_maximum_of_a_log_quadratic():
    ys, xs = torch.meshgrid(torch.arange(12.), torch.arange(14.), indexing='ij')
    cx, cy = 6.3, 4.8
    logd = -0.5 * ((xs - cx) ** 2 / 1.5 + (ys - cy) ** 2 / 0.8 + 0.4 * (xs - cx) * (ys - cy))
    out = dark_refine(logd[None, None].double())
    assert out[0, 0].tolist() == pytest.approx([cx, cy], abs=1e-6)
    flat = torch.zeros(1, 1, 12, 14, dtype=torch.float64)
    flat[0, 0, 0, 3] = 1.0                     # on the border: the argmax itself
    assert dark_refine(flat)[0, 0].tolist() == [3.0, 0.0]
    # through the head's decode path: beta * raw is the softmax's log density
    raw = logd[None, None].double() / 2.0
    dens = nonnegative(raw, beta=2.0)
    assert decode_cells(raw, dens, 'dark', beta=2.0)[0, 0].tolist() == pytest.approx(
        [cx, cy], abs=1e-6)


def test_entropy_of_the_plan_and_the_gaussian_it_makes():
    """H(P) of P = diag(d) [K, 1 - K] against a dense evaluation; and the minimiser of
    -log m + lambda W - eps H over the simplex (convex in d: any optimiser reaches it)
    is ~ exp(-lambda C / eps) on the plateau: a Gaussian of variance eps / (2 lambda)
    cells^2 centred on the joint, not a delta somewhere on the plateau."""
    from gst_mm.transport import plan_entropies
    heat, kern, _, _ = _case(4)
    d = nonnegative(heat)
    plan = torch.stack([d * kern, d * (1 - kern)], -1)
    dense = -(plan * plan.log()).flatten(2).sum(-1)
    assert torch.allclose(plan_entropies(d, kern), dense, rtol=1e-9)

    stride, grid = 2, (17, 17)
    joint = torch.tensor([[17.0, 17.0]])            # centre of cell (8, 8)
    cov = torch.eye(2)[None] * 4.0
    kern = point_kernels(joint, cov, grid, stride)[None].double()
    costs = plan_costs(kern, point_costs(joint, cov, grid, stride)[None].double(),
                       background_costs(cov, stride)[None].double())
    lam, ent = 0.1, 0.2
    loss_fn = JointTransportLoss('log', cost_weight=lam, entropy_weight=ent)
    logits = torch.zeros(1, 1, *grid, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([logits], max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=1e-14, line_search_fn='strong_wolfe')
    w = torch.ones(1, 1, dtype=torch.float64)

    def closure():
        opt.zero_grad()
        loss = sum(loss_fn(nonnegative(logits), kern, w, costs).values())
        loss.backward()
        return loss

    opt.step(closure)
    q = nonnegative(logits.detach())[0, 0]
    ys, xs = torch.meshgrid(torch.arange(17.), torch.arange(17.), indexing='ij')
    cx, cy = (q * xs).sum(), (q * ys).sum()
    var = (q * ((xs - cx) ** 2 + (ys - cy) ** 2)).sum() / 2  # per axis
    assert abs(cx - 8) < 1e-3 and abs(cy - 8) < 1e-3
    # 0.90: the discrete lattice and the kernel's slight fall-off inside the plateau
    assert var.item() == pytest.approx(ent / (2 * lam), rel=0.15)  # 1 cell^2
    assert q.max().item() < 0.25  # a Gaussian over several cells, not a delta
