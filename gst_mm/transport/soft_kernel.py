"""Soft-assignment transport kernel (docs/soft_kernel.md): each annotation's
likelihood is a mixture of free Gaussians.

With components ``G_m = N(mu_m, Sigma_m)`` (``M`` of them, clamped like the hard
kernel's) and mixture weights ``w_mn = P(G_m | y_n)`` (sparse, ``sum_m w_mn = 1``):

    l_n(x) = log sum_m w_mn exp(-d_M^2(x, G_m) / 2 - log det(Sigma_m) / 2)   (foreground)
    l_0(x) = -(d^2 - d_M^2(x, G*)) / 2 - log det(Sigma*) + log b               (background)
    K[i, :] = softmax(l_1(x_i), ..., l_N(x_i), l_0(x_i))

``G*`` is the nearest (Mahalanobis) component that carries foreground weight. When
every annotation owns exactly one component with weight 1, ``l_n`` is the hard
kernel's and the result equals :func:`.kernel.build_kernel` (tested).

Truncation: component-cell pairs beyond the common window radius of
:func:`.kernel.window_radius` (computed over the components) are dropped; every
dropped pair contributed ``< eps`` to the mixture's share, so each entry loses at
most ``eps`` (``sum_m w_mn <= 1``); entries below ``eps`` go to the background column
as in the hard kernel.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .kernel import (
    DEFAULT_BG_RATIO,
    DEFAULT_CUTOFF,
    DEFAULT_EPS,
    DEFAULT_MAX_STD,
    ArrayLike,
    TransportKernel,
    _as_tensor,
    _prepare,
    _window_pairs,
    background_loglik,
    cell_centres,
    mahalanobis_sq,
    nearest_gaussian,
    rows_softmax,
    window_radius,
)


def expand_groups(group: Tensor, wanted: Tensor, num_groups: int) -> Tuple[Tensor, Tensor]:
    """Every (request, entry) pair where entry ``e`` belongs to the requested group.

    Args:
        group: ``(E,)`` int64 group of each entry (e.g. its component or annotation).
        wanted: ``(Q,)`` int64 groups requested (repeats allowed).
        num_groups: groups are ``0..num_groups-1``.

    Returns:
        ``(request (P,), entry (P,))`` int64: request ``q`` is paired with every entry
        of group ``wanted[q]``, requests in order, entries in their input order.
    """
    dev = group.device
    by_group = torch.argsort(group, stable=True)
    counts = torch.bincount(group, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    per = counts.index_select(0, wanted)
    total = int(per.sum())
    request = torch.repeat_interleave(torch.arange(wanted.numel(), device=dev), per,
                                      output_size=total)
    offset = torch.arange(total, device=dev) - (torch.cumsum(per, 0)
                                                - per).index_select(0, request)
    entry = by_group.index_select(0, starts.index_select(0, wanted).index_select(0, request)
                                  + offset)
    return request, entry


def _entries(comp: ArrayLike, pen: ArrayLike, weight: ArrayLike, num_components: int,
             num_points: int, device) -> Tuple[Tensor, Tensor, Tensor]:
    c = _as_tensor(comp, torch.long, device).reshape(-1)
    p = _as_tensor(pen, torch.long, device).reshape(-1)
    w = _as_tensor(weight, torch.float64, device).reshape(-1)
    if not (c.numel() == p.numel() == w.numel()):
        raise ValueError('comp, pen and weight must have the same length')
    if c.numel() and (int(c.min()) < 0 or int(c.max()) >= num_components
                      or int(p.min()) < 0 or int(p.max()) >= num_points):
        raise ValueError('soft kernel: component or annotation index out of range')
    if c.numel() and not bool((w > 0).all() & torch.isfinite(w).all()):
        raise ValueError('soft kernel: mixture weights must be finite and > 0')
    return c, p, w


@torch.no_grad()
def build_soft_kernel(means: ArrayLike, covariances: ArrayLike, comp: ArrayLike,
                      pen: ArrayLike, weight: ArrayLike, num_points: int,
                      grid_shape: Tuple[int, int], stride: float, *, cutoff: float = DEFAULT_CUTOFF,
                      bg_ratio: float = DEFAULT_BG_RATIO, min_std: Optional[float] = None,
                      max_std: float = DEFAULT_MAX_STD,
                      eps: float = DEFAULT_EPS) -> TransportKernel:
    """Sparse soft-assignment kernel of one image (module docstring).

    Args:
        means: ``(M, 2)`` component means, ``(x, y)`` input px.
        covariances: ``(M, 2, 2)`` px^2 (clamped per axis to ``[min_std, max_std]``).
        comp, pen, weight: ``(E,)`` entries ``w = P(G_comp | y_pen) > 0``.
        num_points: ``N`` annotations (columns ``0..N-1``; column ``N`` = background).
        grid_shape, stride, cutoff, bg_ratio, min_std, max_std, eps: as
            :func:`.kernel.build_kernel`.

    Returns:
        :class:`.kernel.TransportKernel` with ``N + 1`` columns.
    """
    if not 0 < eps < 1:
        raise ValueError(f'eps must be in (0, 1), got {eps}')
    grid_shape = (int(grid_shape[0]), int(grid_shape[1]))
    m, cov, conic, logdet = _prepare(means, covariances, grid_shape, stride, min_std, max_std)
    dev = m.device
    n_cells = grid_shape[0] * grid_shape[1]
    c, p, w = _entries(comp, pen, weight, m.shape[0], num_points, dev)
    if c.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return TransportKernel.from_coo(empty, empty, torch.zeros(0, device=dev),
                                        torch.ones(n_cells, device=dev), num_points,
                                        grid_shape, stride, eps)
    # only components that carry foreground weight take part
    fg = torch.unique(c)
    local = torch.full((m.shape[0],), -1, dtype=torch.long, device=dev)
    local[fg] = torch.arange(fg.numel(), device=dev)
    m, cov, conic, logdet = m[fg], cov[fg], conic[fg], logdet[fg]
    c = local[c]
    radius = window_radius(logdet, cutoff, bg_ratio, eps)
    cell, g, d2 = _window_pairs(m, cov, conic, grid_shape, stride, radius)
    pair_logdet = logdet.index_select(0, g)
    d2_min, ld_star, covered = nearest_gaussian(cell, d2, pair_logdet, n_cells)
    l_comp = (-0.5 * d2 - 0.5 * pair_logdet).double()

    # expand each (cell, component) pair over the component's entries
    pair_idx, entry = expand_groups(c, g, fg.numel())
    e_cell = cell.index_select(0, pair_idx)
    e_pen = p.index_select(0, entry)
    e_l = l_comp.index_select(0, pair_idx) + torch.log(w).index_select(0, entry)

    # log-sum-exp over the components of each (cell, annotation)
    key = e_cell * max(num_points, 1) + e_pen
    uniq, inv = torch.unique(key, return_inverse=True)
    top = torch.full((uniq.numel(),), -math.inf, dtype=e_l.dtype, device=dev)
    top = top.scatter_reduce(0, inv, e_l, reduce='amax', include_self=True)
    s = torch.zeros_like(top).index_add(0, inv, torch.exp(e_l - top.index_select(0, inv)))
    l_fg = (top + torch.log(s)).to(d2.dtype)
    out_cell = torch.div(uniq, max(num_points, 1), rounding_mode='floor')
    out_pen = uniq - out_cell * max(num_points, 1)
    l_bg = background_loglik(d2_min, ld_star, covered, cutoff, bg_ratio)
    return rows_softmax(out_cell, out_pen, l_fg, l_bg, covered, num_points, grid_shape,
                        stride, eps)


@torch.no_grad()
def soft_point_kernels(means: ArrayLike, covariances: ArrayLike, comp: ArrayLike,
                       pen: ArrayLike, weight: ArrayLike, num_points: int,
                       grid_shape: Tuple[int, int], stride: float, *,
                       cutoff: float = DEFAULT_CUTOFF,
                       bg_ratio: float = DEFAULT_BG_RATIO, min_std: Optional[float] = None,
                       max_std: float = DEFAULT_MAX_STD) -> Tensor:
    """Foreground weight of each annotation's own two-column (point vs background)
    plan with a mixture likelihood: the soft form of :func:`.kernel.point_kernels`
    (landmarks, method.md 5).

    ``K_fg,n(x) = sigmoid(l_n(x) - l_0^(n)(x))`` with ``l_n`` the log mixture of
    annotation ``n``'s components and ``l_0^(n)`` the background of its nearest
    component ``G*_n(x)``. With one component of weight 1 per annotation this is
    :func:`.kernel.point_kernels` exactly.

    Returns:
        ``(N, h, w)`` float32 in [0, 1] (zeros for an annotation without entries).
    """
    grid_shape = (int(grid_shape[0]), int(grid_shape[1]))
    m, _, conic, logdet = _prepare(means, covariances, grid_shape, stride, min_std, max_std)
    dev = m.device
    c, p, w = _entries(comp, pen, weight, m.shape[0], num_points, dev)
    out = torch.zeros(num_points, grid_shape[0] * grid_shape[1], device=dev)
    if c.numel() == 0:
        return out.reshape(num_points, *grid_shape)
    centres = cell_centres(grid_shape, stride, device=dev, dtype=m.dtype)
    mc = m.index_select(0, c)
    dx = centres[None, :, 0] - mc[:, None, 0]
    dy = centres[None, :, 1] - mc[:, None, 1]
    d2 = mahalanobis_sq(dx, dy, conic.index_select(0, c)[:, None])       # (E, cells)
    ld = logdet.index_select(0, c)[:, None]
    l_e = (-0.5 * d2 - 0.5 * ld).double() + torch.log(w)[:, None]
    n_idx = p[:, None].expand_as(d2)
    big = torch.full((num_points, d2.shape[1]), -math.inf, dtype=l_e.dtype, device=dev)
    top = big.scatter_reduce(0, n_idx, l_e, reduce='amax', include_self=True)
    s = torch.zeros_like(top).scatter_add(0, n_idx, torch.exp(l_e - top.gather(0, n_idx)))
    l_fg = top + torch.log(s)
    # nearest component of each annotation at each cell
    d2_min = torch.full_like(top, math.inf).scatter_reduce(0, n_idx, d2.double(),
                                                           reduce='amin', include_self=True)
    is_min = d2.double() == d2_min.gather(0, n_idx)
    ld_star = torch.zeros_like(top).scatter_reduce(
        0, n_idx, torch.where(is_min, ld.double().expand_as(d2), torch.full_like(l_e, -math.inf)),
        reduce='amax', include_self=False)
    has = torch.isfinite(l_fg)
    l_bg = -0.5 * (cutoff ** 2 - d2_min) - ld_star + math.log(bg_ratio)
    k = torch.where(has, torch.sigmoid(torch.where(has, l_fg - l_bg, torch.zeros_like(l_fg))),
                    torch.zeros_like(l_fg))
    return k.float().reshape(num_points, *grid_shape)
