"""Per-image losses on a density map and point annotations, and their batch averages.

All functions take one image's density ``(h, w)`` (also ``(1, h, w)`` or ``(h * w,)``),
non-negative, on a grid of ``stride``-px cells (centres at ``stride * k + stride / 2``
input px), and points ``(N, 2)`` ``(x, y)`` in input px. Targets are per-point masses
``(N,)`` (default ones).

* :func:`transport_loss` — GST's L_BT with a prebuilt :class:`TransportKernel`.
* :func:`bayesian_loss` — the Bayesian loss (same form, isotropic posterior).
* :func:`dm_count_terms` / :func:`dm_count_loss` — DM-Count's count, OT and TV terms.
* :func:`uot_loss` — the UOT semi-dual at its optimal potential.
* :func:`pseudo_density_l2_loss` — squared error to a blurred-points density.

Batches: :func:`batch_reduce` combines per-image losses by ``'mean'`` or ``'sum'`` over
the images (every image counts; the GST *(ref)* last-image-only bug is not
reproduced); :func:`batch_dm_count_loss` reduces DM-Count's terms separately (count and
TV averaged, OT summed, as DM-Count's training code). Which loss uses which reduction,
and the public code it follows, is in docs/counting.md ("Batch reduction").
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .kernel import TransportKernel, cell_centres
from .ot import (
    UOT_MAX_LOG_RATIO,
    bayesian_posteriors,
    pairwise_cost,
    sinkhorn,
    solve_uot_potential,
    uot_semi_dual,
)


# ----------------------------------------------------------------------------- helpers
def _work(density: Tensor) -> Tensor:
    """``density`` in at least float32 (float16 / bfloat16 inputs, e.g. under AMP, are
    upcast; autograd casts the gradient back). In float16 squared px distances
    overflow past 256 px (65504 = 256^2), a 1e4-per-cell density sums to inf and
    Sinkhorn's 1e-16 guard is 0, so DM-Count returned NaN already at 512 px."""
    if density.dtype in (torch.float16, torch.bfloat16):
        return density.float()
    return density


def _flat(density: Tensor) -> Tensor:
    return density.reshape(-1)


def _grid_of(density: Tensor) -> Tuple[int, int]:
    if density.dim() < 2:
        raise ValueError(f'density must be (h, w) or (1, h, w), got shape {tuple(density.shape)}')
    return int(density.shape[-2]), int(density.shape[-1])


def _targets(target: Optional[Tensor], n: int, like: Tensor) -> Tensor:
    if target is None:
        return like.new_ones(n)
    t = torch.as_tensor(target, dtype=like.dtype, device=like.device).reshape(-1)
    if t.numel() != n:
        raise ValueError(f'target has {t.numel()} masses for {n} points')
    return t


def _points(points: Tensor, like: Tensor) -> Tensor:
    return torch.as_tensor(points, dtype=like.dtype, device=like.device).reshape(-1, 2)


def _per_image(densities: Tensor) -> Tensor:
    """``(B, 1, h, w)`` or ``(B, h, w)`` -> ``(B, h, w)``."""
    if densities.dim() == 4:
        if densities.shape[1] != 1:
            raise ValueError(f'densities must have one channel, got shape {tuple(densities.shape)}')
        return densities[:, 0]
    if densities.dim() != 3:
        raise ValueError('densities must be (B, 1, h, w) or (B, h, w), '
                         f'got {tuple(densities.shape)}')
    return densities


#: Batch reductions accepted by :func:`batch_reduce`.
BATCH_REDUCTIONS = ('mean', 'sum')


def check_reduction(reduction: str, name: str = 'batch_reduction') -> str:
    """``reduction`` if it is one of :data:`BATCH_REDUCTIONS`, else a one-line ValueError."""
    if reduction not in BATCH_REDUCTIONS:
        raise ValueError(f"{name} must be 'mean' or 'sum', got {reduction!r}")
    return reduction


def reduce_images(values: Tensor, reduction: str) -> Tensor:
    """``(B,)`` per-image values -> scalar, ``'mean'`` or ``'sum'`` over the images."""
    check_reduction(reduction)
    return values.mean() if reduction == 'mean' else values.sum()


def batch_reduce(densities: Tensor, per_image: Callable[[int, Tensor], Tensor],
                 reduction: str = 'mean') -> Tensor:
    """``per_image(b, density_b)`` over the ``B`` images of a batch ``(B, 1, h, w)`` or
    ``(B, h, w)``, averaged (``'mean'``) or summed (``'sum'``); 0 for an empty batch."""
    check_reduction(reduction)
    d = _per_image(densities)
    if d.shape[0] == 0:
        return densities.sum() * 0
    return reduce_images(torch.stack([per_image(b, d[b]) for b in range(d.shape[0])]),
                         reduction)


def batch_mean(densities: Tensor, per_image: Callable[[int, Tensor], Tensor]) -> Tensor:
    """Average ``per_image(b, density_b)`` over the ``B`` images of a batch."""
    return batch_reduce(densities, per_image, 'mean')


# ------------------------------------------------------------------------------ GST L_BT
def transport_loss(density: Tensor, kernel: TransportKernel,
                   target: Optional[Tensor] = None, use_background: bool = True) -> Tensor:
    """GST's L_BT of one image: ``|| K^T density - [target, 0] ||_1`` (method.md 2).

    Args:
        density: ``(h, w)``, ``(1, h, w)`` or ``(h * w,)``, matching ``kernel.grid_shape``.
        kernel: the image's :class:`TransportKernel` (moved to the density's device).
        target: ``(N,)`` masses per point, default ones; the background target is 0.
        use_background: when the kernel has a background column, include its term
            (default). ``False`` leaves the mass sent to background unpenalised.

    Returns:
        Scalar, summed over the ``N (+1)`` entries. With no points and a background
        column it equals the total predicted mass.
    """
    density = _work(density)
    kernel = kernel.to(density.device)
    mass = kernel.transport(density)
    tgt = _targets(target, kernel.num_points, mass)
    fg = (mass[:kernel.num_points] - tgt).abs().sum()
    if kernel.background and use_background:
        return fg + mass[-1].abs()
    return fg


def batch_transport_loss(densities: Tensor, kernels: Sequence[TransportKernel],
                         targets: Optional[Sequence[Optional[Tensor]]] = None,
                         use_background: bool = True) -> Tensor:
    """Mean of :func:`transport_loss` over a batch ``(B, 1, h, w)`` or ``(B, h, w)``."""
    if len(kernels) != _per_image(densities).shape[0]:
        raise ValueError(f'{len(kernels)} kernels for a batch of {densities.shape[0]} images')
    return batch_mean(densities, lambda b, d: transport_loss(
        d, kernels[b], None if targets is None else targets[b], use_background))


# ------------------------------------------------------------------------ Bayesian loss
def bayesian_loss(density: Tensor, points: Tensor, stride: float, target: Optional[Tensor] = None,
                  sigma: float = 8.0, bg_ratio: float = 0.15, st_size: Optional[float] = None,
                  background: bool = True) -> Tensor:
    """Bayesian loss (Ma et al. 2019) of one image: ``|| P^T density - [target, 0] ||_1``
    with ``P`` from :func:`gst_mm.transport.ot.bayesian_posteriors` (recomputed every
    step, dense ``h*w x (N+1)``). Without points: the total mass, with or without
    background (BL's ``Bay_Loss`` targets a count of 0 then)."""
    density = _work(density)
    pts = _points(points, density)
    if pts.shape[0] == 0:
        return _flat(density).sum().abs()
    post = bayesian_posteriors(pts, _grid_of(density), stride, sigma=sigma,
                               bg_ratio=bg_ratio, st_size=st_size, background=background)
    mass = post.t() @ _flat(density)
    tgt = _targets(target, pts.shape[0], density)
    if background:
        tgt = torch.cat([tgt, tgt.new_zeros(1)])
    return (mass - tgt).abs().sum()


# ----------------------------------------------------------------------------- DM-Count
def dm_count_terms(density: Tensor, points: Tensor, stride: float, reg: float = 10.0,
                   num_iters: int = 100, method: str = 'knopp') -> dict:
    """DM-Count's (Wang et al. 2020) three terms of one image, unweighted.

    * ``count``: ``|sum(density) - N|``.
    * ``ot``: entropic Sinkhorn (``reg`` 10, ``num_iters`` 100, squared px distance
      between cell centres and points) between ``density / sum(density)`` and the
      uniform distribution on the points. As in DM-Count the term is the surrogate
      ``<z, g>`` with ``g = (T f - <z, f>) / (T^2 + 1e-8)`` (``z`` the density, ``T``
      its sum, ``f`` the detached source potential; DM-Count's ``im_grad``), whose
      gradient w.r.t. the density is the gradient of the OT value; its value is 0.
    * ``tv``: ``N * || density / sum(density) - hist / N ||_1`` with ``hist`` the points
      counted per cell (DM-Count's code uses the plain L1 of the normalised maps).
    * ``ot_value``: detached ``<P, C>`` of the plan, px^2 (for logging).

    ``count``, ``ot`` and ``tv`` are differentiable scalars; without points ``ot`` and
    ``tv`` are 0 (DM-Count skips the OT term of an image without points and its TV
    term is multiplied by ``N = 0``).
    """
    flat = _flat(_work(density))
    pts = _points(points, flat)
    h, w = _grid_of(density)
    n = pts.shape[0]
    total = flat.sum()
    count = (total - n).abs()
    zero = flat.sum() * 0
    if n == 0:
        return dict(count=count, ot=zero, tv=zero, ot_value=zero.detach())
    normed = flat / (total + 1e-6)
    with torch.no_grad():
        centres = cell_centres((h, w), stride, dtype=flat.dtype, device=flat.device)
        cost = pairwise_cost(centres, pts, power=2.0)
        a = normed.detach()
        b = flat.new_full((n,), 1.0 / n)
        plan, f, _ = sinkhorn(a, b, cost, reg, num_iters, method=method)
        ot_value = (plan * cost).sum()
        total_d = total.detach()
        # DM-Count's im_grad: (T f - <z, f>) / (T^2 + 1e-8), T = sum z (exactly zero-mean)
        grad = (total_d * f - (flat.detach() * f).sum()) / (total_d ** 2 + 1e-8)
        col = (pts[:, 0] / stride).floor().long().clamp(0, w - 1)
        row = (pts[:, 1] / stride).floor().long().clamp(0, h - 1)
        hist = torch.zeros(h * w, dtype=flat.dtype, device=flat.device).index_add_(
            0, row * w + col, flat.new_ones(n))
    ot_term = (flat * grad).sum()
    tv = (normed - hist / n).abs().sum() * n
    return dict(count=count, ot=ot_term, tv=tv, ot_value=ot_value)


def dm_count_loss(density: Tensor, points: Tensor, stride: float, reg: float = 10.0,
                  num_iters: int = 100, ot_weight: float = 0.1, tv_weight: float = 0.01,
                  count_weight: float = 1.0, method: str = 'knopp') -> Tuple[Tensor, dict]:
    """DM-Count of one image: ``count_weight * count + ot_weight * OT + tv_weight * TV``
    with the terms of :func:`dm_count_terms`.

    Returns:
        ``(loss, parts)`` with ``parts`` = detached ``count``, ``ot_value``
        (``<P, C>``) and ``tv`` terms.
    """
    t = dm_count_terms(density, points, stride, reg=reg, num_iters=num_iters, method=method)
    loss = count_weight * t['count'] + ot_weight * t['ot'] + tv_weight * t['tv']
    return loss, dict(count=t['count'].detach(), ot_value=t['ot_value'],
                      tv=t['tv'].detach())


def batch_dm_count_loss(densities: Tensor, points: Sequence[Tensor], stride: float,
                        reg: float = 10.0, num_iters: int = 100, ot_weight: float = 0.1,
                        tv_weight: float = 0.01, count_weight: float = 1.0,
                        method: str = 'knopp', ot_reduction: str = 'sum') -> Tuple[Tensor, dict]:
    """DM-Count of a batch ``(B, 1, h, w)`` or ``(B, h, w)`` with its per-term reductions.

    ``count_weight * mean_b count_b + ot_weight * R_b OT_b + tv_weight * mean_b TV_b``
    (terms of :func:`dm_count_terms`), ``R`` = sum over the images (``ot_reduction``
    ``'sum'``, default) or mean (``'mean'``). DM-Count's training code
    (cvlab-stonybrook/DM-Count ``train_helper.py`` with ``losses/ot_loss.py``)
    accumulates the OT surrogate over the images of a batch without dividing,
    averages the count L1 (``nn.L1Loss()``) and the N-weighted TV term (``.mean(0)``):
    at batch ``B`` the OT term weighs ``B`` times more than under a mean.

    Returns:
        ``(loss, parts)``, ``parts`` = detached batch-reduced ``count``, ``ot``, ``tv``
        and the per-image ``ot_value`` ``(B,)``.
    """
    check_reduction(ot_reduction, 'ot_reduction')
    d = _per_image(densities)
    if len(points) != d.shape[0]:
        raise ValueError(f'{len(points)} point sets for a batch of {d.shape[0]} densities')
    if d.shape[0] == 0:
        zero = densities.sum() * 0
        return zero, dict(count=zero.detach(), ot=zero.detach(), tv=zero.detach(),
                          ot_value=zero.detach().reshape(0))
    terms = [dm_count_terms(d[b], points[b], stride, reg=reg, num_iters=num_iters,
                            method=method) for b in range(d.shape[0])]

    def stacked(key: str) -> Tensor:
        return torch.stack([t[key] for t in terms])

    count = stacked('count').mean()
    ot = reduce_images(stacked('ot'), ot_reduction)
    tv = stacked('tv').mean()
    loss = count_weight * count + ot_weight * ot + tv_weight * tv
    return loss, dict(count=count.detach(), ot=ot.detach(), tv=tv.detach(),
                      ot_value=stacked('ot_value'))


# ---------------------------------------------------------------------------------- UOT
def uot_loss(density: Tensor, points: Tensor, stride: float, target: Optional[Tensor] = None,
             eps: float = 0.01, tau: float = 1.0, cost_power: float = 1.0,
             max_iter: int = 20, coord_scale: Optional[float] = None,
             max_log_ratio: Optional[float] = UOT_MAX_LOG_RATIO) -> Tensor:
    """UOT loss (Ma et al. 2021) of one image: the semi-dual value at its maximiser.

    The potential ``beta`` (one per point) maximises
    :func:`gst_mm.transport.ot.uot_semi_dual` for the detached density (L-BFGS,
    ``max_iter`` iterations); the loss is the semi-dual at that ``beta``, linear in the
    density. Cost: ``||x - y|| ** cost_power`` on coordinates divided by
    ``coord_scale`` (default the longer side of the input, ``max(h, w) * stride``, so
    coordinates are in [0, 1]); ``eps`` 0.01, KL marginal penalties with weight ``tau``
    1. Without points the semi-dual reduces to ``tau * sum(density)`` (every unit of
    predicted mass pays the KL cost of being destroyed). ``max_log_ratio`` bounds the
    potential (:data:`gst_mm.transport.ot.UOT_MAX_LOG_RATIO`): the loss stays finite
    with a density gradient of at most ``tau * 1e6 * N ** (eps / tau)`` per cell even
    for an all-zero density, where the unbounded maximiser does not exist.
    """
    flat = _flat(_work(density))
    pts = _points(points, flat)
    h, w = _grid_of(density)
    if pts.shape[0] == 0:
        return tau * flat.sum()
    scale = float(coord_scale) if coord_scale is not None else max(h, w) * stride
    centres = cell_centres((h, w), stride, dtype=flat.dtype, device=flat.device)
    cost = pairwise_cost(centres, pts, power=cost_power, scale=scale)
    tgt = _targets(target, pts.shape[0], flat)
    beta = solve_uot_potential(flat, tgt, cost, eps=eps, tau=tau, max_iter=max_iter,
                               max_log_ratio=max_log_ratio)
    return uot_semi_dual(flat, tgt, cost, beta, eps=eps, tau=tau)


# ------------------------------------------------------------------ pseudo density (L2)
def pseudo_density(points: Tensor, grid_shape: Tuple[int, int], stride: float,
                   sigma: float = 8.0, target: Optional[Tensor] = None) -> Tensor:
    """Points blurred by an isotropic Gaussian (std ``sigma`` px), integrated per cell.

    Exact cell integrals (separable erf differences), so each point contributes its
    mass (``target``, default 1) times the fraction of its Gaussian inside the grid.
    Returns ``(h, w)``.
    """
    h, w = int(grid_shape[0]), int(grid_shape[1])
    p = torch.as_tensor(points).reshape(-1, 2)
    if not p.is_floating_point():
        p = p.float()
    dtype, dev = p.dtype, p.device
    if p.shape[0] == 0:
        return torch.zeros(h, w, dtype=dtype, device=dev)
    mass = _targets(target, p.shape[0], p)
    scale = 1.0 / (sigma * math.sqrt(2.0))

    def axis_mass(coord: Tensor, n_cells: int) -> Tensor:  # (N, n_cells)
        edges = torch.arange(n_cells + 1, dtype=dtype, device=dev) * stride
        cdf = 0.5 * torch.erf((edges[None, :] - coord[:, None]) * scale)
        return cdf[:, 1:] - cdf[:, :-1]

    return (axis_mass(p[:, 1], h) * mass[:, None]).t() @ axis_mass(p[:, 0], w)


def pseudo_density_l2_loss(density: Tensor, points: Tensor, stride: float, sigma: float = 8.0,
                           target: Optional[Tensor] = None) -> Tensor:
    """Sum over cells of ``(density - pseudo_density)^2`` for one image."""
    density = _work(density)
    h, w = _grid_of(density)
    gt = pseudo_density(_points(points, density), (h, w), stride, sigma, target)
    return (density.reshape(h, w) - gt).pow(2).sum()


__all__ = [
    'BATCH_REDUCTIONS', 'check_reduction', 'reduce_images', 'batch_reduce', 'batch_mean',
    'transport_loss', 'batch_transport_loss', 'bayesian_loss', 'dm_count_terms',
    'dm_count_loss', 'batch_dm_count_loss', 'uot_loss', 'pseudo_density',
    'pseudo_density_l2_loss'
]
