"""The counting plan's transport cost W(P) with P = diag(z) K (issue 22, gst_mm's
extension; cost weight 0 is the paper): against a dense evaluation of the plan,
finite differences, the loss module and the pipeline."""
import pickle

import numpy as np
import pytest
import torch

from gst_mm.transport import build_kernel, entry_costs, transport_loss, with_entry_costs


def _scene(seed=0, n=5, grid=(12, 14), stride=4):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 2, generator=g) * torch.tensor([grid[1] * stride, grid[0] * stride])
    a = torch.rand(n, 2, 2, generator=g)
    cov = a @ a.transpose(1, 2) * 30 + torch.eye(2) * 10
    return means, cov, grid, stride


@pytest.mark.parametrize('kind', ['sqdist', 'mahalanobis'])
def test_cost_equals_a_dense_evaluation_of_the_plan(kind):
    means, cov, grid, stride = _scene()
    kernel = with_entry_costs(build_kernel(means, cov, grid, stride), means, cov, kind)
    z = torch.rand(grid, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # dense reference: every cell-point pair's cost from the formula
    ys, xs = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing='ij')
    centres = torch.stack([xs.reshape(-1) * stride + stride / 2,
                           ys.reshape(-1) * stride + stride / 2], 1).double()
    d = centres[:, None, :] - means[None].double()                   # (cells, N, 2)
    if kind == 'sqdist':
        c = (d ** 2).sum(-1) / stride ** 2
    else:
        from gst_mm.transport import clamp_covariances
        inv = torch.linalg.inv(clamp_covariances(cov, float(stride), 20.0)[0].double())
        c = 0.5 * torch.einsum('cni,nij,cnj->cn', d, inv, d)
    plan = z.reshape(-1, 1) * kernel.dense().double()[:, :-1]        # P = diag(z) K
    ref = (plan * c).sum()
    assert kernel.transport_cost(z).item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.allclose(kernel.dense_costs().double()[kernel.rows, kernel.cols.long()],
                          c[kernel.rows, kernel.cols.long()], rtol=1e-5)


def test_cost_gradient_matches_finite_differences():
    means, cov, grid, stride = _scene(2)
    kernel = with_entry_costs(build_kernel(means, cov, grid, stride), means, cov)
    z0 = torch.rand(grid, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def f(z):
        return transport_loss(z, kernel) + 0.3 * kernel.transport_cost(z)

    z = z0.clone().requires_grad_(True)
    (grad, ) = torch.autograd.grad(f(z), z)
    v = torch.randn(grid, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    eps = 1e-6
    fd = (f(z0 + eps * v) - f(z0 - eps * v)) / (2 * eps)
    assert fd.item() == pytest.approx((grad * v).sum().item(), rel=1e-6)


def test_cost_prefers_mass_on_the_point():
    """Unit mass on one cell: L_BT hardly changes inside the kernel's plateau, the cost
    grows with the squared distance to the point (what makes the loss localise)."""
    stride, grid = 8, (16, 16)
    means = torch.tensor([[60.0, 60.0]])  # centre of cell (7, 7)
    cov = torch.eye(2)[None] * 64.0       # std 8 px = 1 cell
    kernel = with_entry_costs(build_kernel(means, cov, grid, stride), means, cov)
    lbt, w = [], []
    for dx in range(3):
        z = torch.zeros(grid, dtype=torch.float64)
        z[7, 7 + dx] = 1.0
        lbt.append(transport_loss(z, kernel).item())
        w.append(kernel.transport_cost(z).item())
    assert max(lbt) - min(lbt) < 0.02
    assert w[0] == pytest.approx(0.0, abs=1e-6) and w[1] > 0.9 and w[2] > 3.5


def test_costs_survive_pickling_and_moves():
    means, cov, grid, stride = _scene(5)
    kernel = with_entry_costs(build_kernel(means, cov, grid, stride), means, cov)
    back = pickle.loads(pickle.dumps(kernel))
    assert torch.equal(back.costs, kernel.costs)
    assert torch.equal(kernel.to('cpu').costs, kernel.costs)
    z = torch.rand(grid)
    assert back.transport_cost(z).item() == pytest.approx(kernel.transport_cost(z).item())
    plain = build_kernel(means, cov, grid, stride)
    with pytest.raises(ValueError, match='no entry costs'):
        plain.transport_cost(z)
    with pytest.raises(ValueError, match='means'):
        entry_costs(plain, means[:2], cov[:2])


def test_gst_loss_cost_term_and_pipeline(registered):
    from gst_mm.datasets.transforms import LoadTransportKernel
    from gst_mm.models.losses import GSTLoss
    from gst_mm.splatting import Gaussians2D
    means, cov, grid, stride = _scene(6, grid=(8, 10), stride=8)
    results = dict(img=np.zeros((64, 80, 3), np.uint8), gaussians=Gaussians2D(means, cov))
    kernel = LoadTransportKernel(stride=8, cost='sqdist').transform(dict(results))[
        'transport_kernel']
    assert kernel.costs is not None and kernel.costs.numel() == kernel.nnz
    density = torch.rand(2, 1, 8, 10, generator=torch.Generator().manual_seed(7))
    points = [means, means]
    terms = GSTLoss(cost_weight=0.2)(density, points, kernels=[kernel, kernel])
    assert set(terms) == {'loss_transport', 'loss_cost'}
    expect = 0.2 * 0.5 * (kernel.transport_cost(density[0]) + kernel.transport_cost(density[1]))
    assert terms['loss_cost'].item() == pytest.approx(expect.item(), rel=1e-6)
    plain = GSTLoss()(density, points, kernels=[kernel, kernel])
    assert terms['loss_transport'].item() == pytest.approx(plain.item())  # default unchanged
    bare = LoadTransportKernel(stride=8).transform(dict(results))['transport_kernel']
    with pytest.raises(ValueError, match="cost='sqdist'"):
        GSTLoss(cost_weight=0.2)(density, points, kernels=[bare, bare])
    with pytest.raises(ValueError, match='cost'):
        LoadTransportKernel(cost='l2')
