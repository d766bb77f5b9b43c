"""Optimal-transport solvers and posteriors of the baselines GST replaces (method.md 7).

* :func:`sinkhorn` — balanced entropic OT in the log domain (DM-Count).
* :func:`uot_semi_dual`, :func:`solve_uot_potential`, :func:`uot_plan` — unbalanced OT
  with KL marginal penalties in its semi-dual, one potential per point (UOT, Ma et al.
  2021).
* :func:`bayesian_posteriors` — the isotropic posterior of the Bayesian loss with its
  background term (BL, Ma et al. 2019).
* :func:`pairwise_cost` — cell-to-point costs.

Coordinates: cells from :func:`gst_mm.transport.kernel.cell_centres` (input px,
row-major), points ``(N, 2)`` ``(x, y)`` input px.

Numerical range: the solvers are finite for any non-negative density (all-zero,
~1e-8 or ~1e4 per cell), any number of points and points on the image border, in
float32 and float64 (half-precision inputs are computed in float32 by the callers in
:mod:`gst_mm.transport.losses`). The bounds that make this hold are documented where
they act: the 1e-16 guard of the scaling Sinkhorn (:data:`SINKHORN_GUARD`) and the
potential bound of the UOT solve (:data:`UOT_MAX_LOG_RATIO`).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .kernel import cell_centres


def pairwise_cost(centres: Tensor, points: Tensor, power: float = 2.0,
                  scale: float = 1.0) -> Tensor:
    """``C[i, j] = (||x_i - y_j|| / scale) ** power``; ``(I, 2), (M, 2) -> (I, M)``."""
    d2 = ((centres[:, None, :] - points[None, :, :]) / scale).pow(2).sum(-1)
    if power == 2.0:
        return d2
    return d2.clamp_min(0).pow(power / 2)


# --------------------------------------------------------------------- Sinkhorn (DM-Count)
#: Added to every denominator of the scaling Sinkhorn (DM-Count's ``M_EPS``,
#: cvlab-stonybrook/DM-Count ``losses/bregman_pytorch.py``). With ``reg`` 10 on squared px
#: distances, ``exp(-C / reg)`` underflows float32 beyond ~32 px, so every cell farther
#: than that from all points has an all-zero kernel row; the guard keeps its scaling
#: ``u = a / (K v + guard) <= 1e16`` finite (its potential ``reg * log(u + guard)`` is
#: then a finite stand-in, as in DM-Count). ``method='log'`` has no such rows.
SINKHORN_GUARD = 1e-16


def sinkhorn(a: Tensor, b: Tensor, cost: Tensor, reg: float, num_iters: int = 100,
             method: str = 'knopp') -> Tuple[Tensor, Tensor, Tensor]:
    """Balanced entropic OT ``min_P <C, P> + reg * sum P (log P - 1)``, ``P 1 = a``,
    ``P^T 1 = b`` (``sum a = sum b``), by Sinkhorn iterations.

    Args:
        a: ``(I,)`` source masses (cells); zeros allowed.
        b: ``(M,)`` target masses (points).
        cost: ``(I, M)``.
        reg: entropic regularisation (same units as ``cost``).
        num_iters: full (row + column) iterations; DM-Count uses 100.
        method: ``'knopp'`` — scaling form ``u = a / (K v)``, ``v = b / (K^T u)`` with
            ``K = exp(-C / reg)`` and the :data:`SINKHORN_GUARD` against underflowed
            rows (what DM-Count runs; two mat-vecs per iteration); ``'log'`` —
            log-domain updates of the potentials (exact for any ``reg``, slower);
            zero masses enter as ``log(1e-38)``.

    Returns:
        ``(plan (I, M), f (I,), g (M,))`` with ``P = exp((f_i + g_j - C_ij) / reg)``.
        After the last iteration the column marginal is exact and the row marginal
        converges to ``a``. ``f`` is the dual potential of the source: the gradient of
        the OT value w.r.t. ``a`` (up to an additive constant).
    """
    if method == 'knopp':
        k = torch.exp(-cost / reg)
        u = torch.full_like(a, 1.0 / max(a.numel(), 1))
        v = torch.full_like(b, 1.0 / max(b.numel(), 1))
        for _ in range(num_iters):
            u = a / (k @ v + SINKHORN_GUARD)
            v = b / (k.t() @ u + SINKHORN_GUARD)
        plan = u[:, None] * k * v[None, :]
        return plan, reg * torch.log(u + SINKHORN_GUARD), reg * torch.log(v + SINKHORN_GUARD)
    if method != 'log':
        raise ValueError(f"sinkhorn method must be 'knopp' or 'log', got {method!r}")
    log_a = torch.log(a.clamp_min(1e-38))
    log_b = torch.log(b.clamp_min(1e-38))
    f = torch.zeros_like(a)
    g = torch.zeros_like(b)
    neg_c = -cost / reg
    for _ in range(num_iters):
        f = reg * (log_a - torch.logsumexp(neg_c + g[None, :] / reg, dim=1))
        g = reg * (log_b - torch.logsumexp(neg_c + f[:, None] / reg, dim=0))
    plan = torch.exp(neg_c + (f[:, None] + g[None, :]) / reg)
    return plan, f, g


# ------------------------------------------------------------------------ UOT semi-dual
#: Bound of :func:`solve_uot_potential` on ``|beta_j| / tau``: ``exp(-beta_j / tau)`` is
#: the ratio of the mass point ``j`` receives to its target, kept within
#: ``[1e-6, 1e6]``. The bound is reached only by degenerate densities (the optimum lies
#: inside it whenever the predicted mass near the points is within a factor 1e12 of the
#: target mass); there it keeps the loss and its density gradient finite: with
#: ``beta <= B = tau * log(1e6)`` and ``C >= 0``, ``alpha_i >= -B - eps * log(M)``, so
#: ``|dL/du_i| = tau * |1 - exp(-alpha_i / tau)| <= tau * 1e6 * M ** (eps / tau)``. Without
#: it an all-zero density has no maximiser (``beta -> +inf``) and the gradient grows with
#: every L-BFGS iteration (1.6e9 after 50 iterations in float64, 3 points).
UOT_MAX_LOG_RATIO = math.log(1e6)


def uot_alpha(cost: Tensor, beta: Tensor, eps: float) -> Tensor:
    """Smoothed c-transform ``alpha_i = -eps * log sum_j exp((beta_j - C_ij) / eps)``."""
    return -eps * torch.logsumexp((beta[None, :] - cost) / eps, dim=1)


def uot_semi_dual(density: Tensor, target: Tensor, cost: Tensor, beta: Tensor,
                  eps: float = 0.01, tau: float = 1.0) -> Tensor:
    """Semi-dual value of unbalanced OT with KL marginal penalties (Ma et al. 2021).

    ``H(beta) = -tau <u, exp(-alpha / tau) - 1> - tau <v, exp(-beta / tau) - 1>`` with
    ``alpha = uot_alpha(C, beta, eps)``, ``u`` = density (cells), ``v`` = target
    masses (points). Maximising over ``beta`` gives the value of the primal

        min_P <C, P> + eps sum_ij P_ij log(P_ij / (P 1)_i)
                     + tau KL(P 1 | u) + tau KL(P^T 1 | v)

    (generalised KL ``KL(p|q) = sum p log(p/q) - p + q``; the entropic term is the
    row-conditional entropy, which is what the smoothed c-transform dualises). The
    optimal plan is :func:`uot_plan`. ``H`` is linear in ``u``, so for fixed ``beta``
    its gradient w.r.t. the density is ``tau * (1 - exp(-alpha / tau))``.

    Args:
        density: ``(I,)``; target: ``(M,)``; cost: ``(I, M)``; beta: ``(M,)``.
    """
    alpha = uot_alpha(cost, beta, eps)
    return (-tau * (density * torch.expm1(-alpha / tau)).sum()
            - tau * (target * torch.expm1(-beta / tau)).sum())


def solve_uot_potential(density: Tensor, target: Tensor, cost: Tensor, eps: float = 0.01,
                        tau: float = 1.0, max_iter: int = 20, tolerance: float = 1e-9,
                        beta_init: Optional[Tensor] = None,
                        max_log_ratio: Optional[float] = UOT_MAX_LOG_RATIO) -> Tensor:
    """Maximise :func:`uot_semi_dual` over ``beta`` (one potential per point) by L-BFGS.

    ``max_iter`` L-BFGS iterations with strong-Wolfe line search (torch.optim.LBFGS,
    one ``step`` per training step, as the public UOT training code,
    Nightmare4214/GeneralizedLoss-Counting-Pytorch-semi ``utils/emd_dot_trainer.py``).
    The density is treated as a constant.

    Args:
        density, target, cost: ``(I,)``, ``(M,)``, ``(I, M)``.
        eps, tau: as :func:`uot_semi_dual`.
        max_iter, tolerance: L-BFGS iterations and gradient tolerance.
        beta_init: warm start ``(M,)`` (default zeros).
        max_log_ratio: the search runs on ``clamp(beta, -B, B)`` with
            ``B = tau * max_log_ratio`` (default :data:`UOT_MAX_LOG_RATIO`, a received
            mass within 1e-6..1e6 of each target); ``None`` searches without bound.

    Returns:
        The detached ``(M,)`` potential, inside the bound.
    """
    u = density.detach()
    v = target.detach()
    c = cost.detach()
    bound = None if max_log_ratio is None else float(tau) * float(max_log_ratio)
    beta = (torch.zeros_like(v) if beta_init is None else beta_init.detach().clone())
    beta.requires_grad_(True)
    opt = torch.optim.LBFGS([beta], lr=1.0, max_iter=max_iter, tolerance_grad=tolerance,
                            tolerance_change=tolerance * 1e-3,
                            line_search_fn='strong_wolfe')

    def bounded(b: Tensor) -> Tensor:
        return b if bound is None else b.clamp(-bound, bound)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = -uot_semi_dual(u, v, c, bounded(beta), eps, tau)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return bounded(beta.detach())


def uot_plan(density: Tensor, cost: Tensor, beta: Tensor, eps: float = 0.01,
             tau: float = 1.0) -> Tensor:
    """Primal plan of the semi-dual at ``beta``: ``P_ij = m_i softmax_j((beta_j - C_ij)/eps)``
    with row masses ``m_i = u_i exp(-alpha_i / tau)``; ``(I, M)``."""
    alpha = uot_alpha(cost, beta, eps)
    cond = torch.softmax((beta[None, :] - cost) / eps, dim=1)
    return (density * torch.exp(-alpha / tau))[:, None] * cond


def uot_primal_value(plan: Tensor, density: Tensor, target: Tensor, cost: Tensor,
                     eps: float = 0.01, tau: float = 1.0) -> Tensor:
    """Primal objective of :func:`uot_semi_dual` evaluated at a plan ``(I, M)``."""
    def kl(p: Tensor, q: Tensor) -> Tensor:
        return (torch.xlogy(p, p) - torch.xlogy(p, q) - p + q).sum()

    rows = plan.sum(1)
    cond_entropy = (torch.xlogy(plan, plan) - torch.xlogy(plan, rows[:, None])).sum()
    return ((plan * cost).sum() + eps * cond_entropy
            + tau * kl(rows, density) + tau * kl(plan.sum(0), target))


# ---------------------------------------------------------------- Bayesian loss posterior
def bayesian_posteriors(points: Tensor, grid_shape: Tuple[int, int], stride: float,
                        sigma: float = 8.0, bg_ratio: float = 0.15,
                        st_size: Optional[float] = None, background: bool = True) -> Tensor:
    """Posterior ``P(y_n | x_i)`` of the Bayesian loss (Ma et al. 2019), dense.

    With ``D_in = ||x_i - y_n||^2`` (px^2) and, if ``background``, the squared
    distance to the cell's background point ``D_i0 = (d - min_n ||x_i - y_n||)^2`` with
    ``d = st_size * bg_ratio`` px, the posterior is ``softmax_n(-D_in / (2 sigma^2))``
    over the points and the background. The background point of a cell lies at ``d``
    px from its nearest annotation, on the ray through the cell (BL's paper, and
    ZhihengCV/Bayesian-Crowd-Counting ``losses/post_prob.py``), so a cell goes to
    background once it is more than ``d / 2`` px from every point.

    Args:
        points: ``(N, 2)`` ``(x, y)`` px.
        grid_shape, stride: density-map cells (centres at ``stride * k + stride / 2``).
        sigma: likelihood std, px (BL default 8).
        bg_ratio: BL's background ratio (0.15 in its public training script).
        st_size: BL's image size term, px; default ``min(h, w) * stride`` (BL uses the
            shorter side of the image).

    Returns:
        ``(h * w, N + 1)`` (last column background) or ``(h * w, N)``.
    """
    centres = cell_centres(grid_shape, stride, dtype=points.dtype, device=points.device)
    dist = pairwise_cost(centres, points.reshape(-1, 2), power=2.0)
    if background:
        if st_size is None:
            st_size = min(grid_shape) * stride
        if dist.shape[1] > 0:
            near = dist.min(dim=1, keepdim=True).values.clamp_min(0).sqrt()
            bg = (st_size * bg_ratio - near) ** 2
        else:
            bg = torch.zeros(dist.shape[0], 1, dtype=dist.dtype, device=dist.device)
        dist = torch.cat([dist, bg], dim=1)
    if dist.shape[1] == 0:
        return dist
    return torch.softmax(-dist / (2.0 * sigma ** 2), dim=1)


# ------------------------------------------------------- grid Sinkhorn (heatmap OT, pose)
#: float64 ``exp`` is exact enough down to about exp(-700): the matrix-product
#: path of :func:`_grid_lse` is used while every Gibbs factor stays above that.
_MIN_LOG_GIBBS = -700.0


def _grid_lse(x: Tensor, cost_h: Tensor, cost_w: Tensor, eps: float, chunk: int,
              gibbs: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
    """``out[n, i, j] = LSE_{k, l} (x[n, k, l] - (Ch[i, k] + Cw[j, l]) / eps)`` by two 1-D
    log-sum-exps (the squared-distance cost on a grid is separable); ``x (N, h, w)``.

    With ``gibbs = (exp(-Ch / eps), exp(-Cw / eps))`` in float64 (given by
    :func:`grid_sinkhorn` while ``(max(h, w) - 1)^2 / eps < 700``,
    :data:`_MIN_LOG_GIBBS`), each 1-D log-sum-exp is a matrix product with the
    Gibbs kernel after subtracting the row maximum (exact: every sum keeps its
    maximal term, so nothing underflows to 0); otherwise a direct broadcast
    log-sum-exp in blocks of ``chunk`` slices.
    """
    if gibbs is not None:
        kh, kw = gibbs
        n, h, w = x.shape
        xd = x.double()
        m = xd.amax(-1, keepdim=True)  # n,k,1
        # 2-D products (one BLAS call each; kernels are symmetric)
        inner = m + torch.log((torch.exp(xd - m).reshape(n * h, w) @ kw).reshape(n, h, w))
        m2 = inner.amax(1, keepdim=True)  # n,1,j
        e2 = torch.exp(inner - m2).transpose(1, 2).reshape(n * w, h) @ kh  # (n,j),i
        return (m2 + torch.log(e2.reshape(n, w, h).transpose(1, 2))).to(x.dtype)  # n,i,j
    outs = []
    for s in range(0, x.shape[0], chunk):
        xs = x[s:s + chunk]
        inner = torch.logsumexp(xs[:, :, None, :] - cost_w[None, None] / eps, dim=-1)  # n,k,j
        outs.append(torch.logsumexp(inner[:, None, :, :] - cost_h[None, :, :, None] / eps,
                                    dim=2))  # n,i,j
    return torch.cat(outs)


def fast_path_eps(h: int, w: int) -> float:
    """Smallest ``eps`` (cells^2, at least 1) that keeps :func:`_grid_lse` on its
    matrix-product path for an ``(h, w)`` grid, with a margin of 50 below the
    :data:`_MIN_LOG_GIBBS` bound: ``max(1, (max(h, w) - 1)^2 / 650)``."""
    return max(1.0, (max(h, w) - 1) ** 2 / (-_MIN_LOG_GIBBS - 50.0))


def grid_sinkhorn(a: Tensor, b: Tensor, eps: float = 1.0, num_iters: int = 50,
                  chunk: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """Balanced entropic OT between distributions on the same ``(h, w)`` grid with the
    squared-distance cost in cells, ``C((i, j), (k, l)) = (i - k)^2 + (j - l)^2``,
    in the log domain with separable updates (``O(h w (h + w))`` per iteration instead
    of ``O((h w)^2)``; no ``(hw, hw)`` matrix is formed).

    Args:
        a, b: ``(N, h, w)`` non-negative, each slice summing to 1.
        eps: entropic regularisation in cells squared.
        num_iters: full (f, g) iterations.
        chunk: slices per log-sum-exp block (memory bound; default ~32 M entries).

    Returns:
        ``(f, g)`` dual potentials ``(N, h, w)``; the plan is
        ``P[(i, j), (k, l)] = a_ij b_kl exp((f_ij + g_kl - C) / eps)`` and
        ``<f, a> + <g, b>`` is the entropic OT value (cells^2) relative to the
        product measure. ``f`` is the gradient of that value w.r.t. ``a`` (up to a
        constant per slice).
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f'grid_sinkhorn needs two (N, h, w) tensors, got '
                         f'{tuple(a.shape)} and {tuple(b.shape)}')
    n, h, w = a.shape
    if chunk is None:
        chunk = max(1, int(32e6 // max(h * w * max(h, w), 1)))
    ih = torch.arange(h, dtype=a.dtype, device=a.device)
    iw = torch.arange(w, dtype=a.dtype, device=a.device)
    cost_h = (ih[:, None] - ih[None, :]) ** 2
    cost_w = (iw[:, None] - iw[None, :]) ** 2
    log_a = torch.log(a.clamp_min(1e-38))
    log_b = torch.log(b.clamp_min(1e-38))
    gibbs = None
    if (max(h, w) - 1) ** 2 / eps < -_MIN_LOG_GIBBS:  # fast path: kernels built once
        gibbs = (torch.exp(-cost_h.double() / eps), torch.exp(-cost_w.double() / eps))
    f = torch.zeros_like(a)
    g = torch.zeros_like(b)
    for _ in range(num_iters):
        f = -eps * _grid_lse(g / eps + log_b, cost_h, cost_w, eps, chunk, gibbs)
        g = -eps * _grid_lse(f / eps + log_a, cost_h, cost_w, eps, chunk, gibbs)
    return f, g


def grid_ot_loss(a: Tensor, b: Tensor, eps: float = 1.0, num_iters: int = 50) -> Tensor:
    """Entropic OT value ``(N,)`` in cells^2 between ``a`` and ``b`` ``(N, h, w)``,
    differentiable in ``a`` through its dual potential (envelope theorem: the value
    is ``<f, a> + <g, b>`` with ``f, g`` from :func:`grid_sinkhorn` on the detached
    inputs), so no gradient flows through the iterations."""
    with torch.no_grad():
        f, g = grid_sinkhorn(a.detach(), b.detach(), eps, num_iters)
    return (f * a).flatten(1).sum(-1) + (g * b).flatten(1).sum(-1)
