"""Per-point two-column plans (landmarks, method.md 5) and the transport costs of plans.

* :func:`point_kernels` — each point's own plan ``softmax(l_n, l_0^(n))``: its
  foreground weight ``K_fg (N, h, w)``;
* :func:`point_costs` / :func:`background_costs` — the cost of moving a cell's mass to
  the point and to its background column (the pose cost maps);
* :func:`entry_costs` / :func:`with_entry_costs` — the cost of every stored entry of a
  sparse counting kernel (:meth:`TransportKernel.transport_cost`).

Conventions (cells, strides, clamps) are :mod:`.kernel`'s.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .kernel import (
    DEFAULT_BG_RATIO,
    DEFAULT_CUTOFF,
    DEFAULT_MAX_STD,
    ArrayLike,
    _as_tensor,
    _prepare,
    cell_centres,
    clamp_covariances,
    mahalanobis_sq,
)
from .sparse_plan import TransportKernel


@torch.no_grad()
def point_kernels(means: ArrayLike, covariances: ArrayLike, grid_shape: Tuple[int, int],
                  stride: float, *, cutoff: float = DEFAULT_CUTOFF,
                  bg_ratio: float = DEFAULT_BG_RATIO,
                  min_std: Optional[float] = None, max_std: float = DEFAULT_MAX_STD) -> Tensor:
    """Foreground weight of each point's own two-column (point vs background) plan.

    For landmarks (method.md 5): heatmap channel ``n`` uses the plan
    ``softmax(l_n, l_0^(n))`` where ``G*`` is ``G_n`` itself, so
    ``K_fg = sigmoid(l_n - l_0) = sigmoid(-d_M^2 + d^2/2 + log det(Sigma_n)/2 - log b)``
    (same log-likelihoods and clamp as :func:`build_kernel`).

    Args:
        means: ``(N, 2)`` ``(x, y)`` input px (e.g. crop px for a pose heatmap).
        covariances: ``(N, 2, 2)`` px^2.
        grid_shape: ``(h, w)`` heatmap cells; stride: input px per cell.

    Returns:
        ``(N, h, w)`` float32 ``K_fg`` in [0, 1]; ``1 - K_fg`` goes to background.
    """
    grid_shape = (int(grid_shape[0]), int(grid_shape[1]))
    m, _, conic, logdet = _prepare(means, covariances, grid_shape, stride, min_std, max_std)
    centres = cell_centres(grid_shape, stride, device=m.device, dtype=m.dtype)
    dx = centres[None, :, 0] - m[:, None, 0]
    dy = centres[None, :, 1] - m[:, None, 1]
    d2 = mahalanobis_sq(dx, dy, conic[:, None])
    logit = -d2 + cutoff ** 2 / 2 + 0.5 * logdet[:, None] - math.log(bg_ratio)
    return torch.sigmoid(logit).reshape(m.shape[0], *grid_shape).float()


#: per-cell transport costs of a landmark plan (:func:`point_costs`)
COST_KINDS = ('sqdist', 'mahalanobis')


@torch.no_grad()
def point_costs(means: ArrayLike, covariances: ArrayLike, grid_shape: Tuple[int, int],
                stride: float, kind: str = 'sqdist', *, min_std: Optional[float] = None,
                max_std: float = DEFAULT_MAX_STD) -> Tensor:
    """Cost ``c_n(x)`` of moving mass from each heatmap cell to point ``n``: the fixed
    factor of the plan's transport cost ``W = sum_x d(x) K_fg(x) c(x)``
    (:mod:`gst_mm.transport.joint_plan`).

    Args:
        means: ``(N, 2)`` ``(x, y)`` input px, cell ``k`` centred at ``stride * k +
            stride / 2`` (as :func:`point_kernels`).
        covariances: ``(N, 2, 2)`` px^2 (clamped as :func:`point_kernels` does).
        grid_shape: ``(h, w)`` cells; stride: input px per cell.
        kind: ``'sqdist'``: squared Euclidean distance in cells^2 (covariances
            unused); ``'mahalanobis'``: ``d_M^2 / 2`` under the clamped covariance.

    Returns:
        ``(N, h, w)`` float32, 0 at the point (the cost of the point column; the
        background column's is :func:`background_costs`).
    """
    if kind not in COST_KINDS:
        raise ValueError(f'cost kind must be one of {COST_KINDS}, got {kind!r}')
    grid_shape = (int(grid_shape[0]), int(grid_shape[1]))
    m, _, conic, _ = _prepare(means, covariances, grid_shape, stride, min_std, max_std)
    centres = cell_centres(grid_shape, stride, device=m.device, dtype=m.dtype)
    dx = centres[None, :, 0] - m[:, None, 0]
    dy = centres[None, :, 1] - m[:, None, 1]
    if kind == 'sqdist':
        cost = (dx * dx + dy * dy) / float(stride) ** 2
    else:
        cost = 0.5 * mahalanobis_sq(dx, dy, conic[:, None])
    return cost.reshape(m.shape[0], *grid_shape).float()


@torch.no_grad()
def background_costs(covariances: ArrayLike, stride: float, kind: str = 'sqdist', *,
                     cutoff: float = DEFAULT_CUTOFF, min_std: Optional[float] = None,
                     max_std: float = DEFAULT_MAX_STD) -> Tensor:
    """Cost of sending mass to each point's background column: the cost at the
    cut-off, where the background log-likelihood places the virtual background object
    (method.md 4): ``'mahalanobis'``: ``d^2 / 2``; ``'sqdist'``: ``d^2 sigma^2`` with
    ``sigma^2 = sqrt(det Sigma)`` the clamped geometric-mean variance in cells^2.
    Returns ``(N,)`` float32."""
    if kind not in COST_KINDS:
        raise ValueError(f'cost kind must be one of {COST_KINDS}, got {kind!r}')
    cv = _as_tensor(covariances).reshape(-1, 2, 2)
    min_std = float(stride) if min_std is None else float(min_std)
    _, _, logdet = clamp_covariances(cv, min_std, float(max_std))
    if kind == 'mahalanobis':
        return torch.full_like(logdet, 0.5 * cutoff ** 2).float()
    return (cutoff ** 2 * torch.exp(0.5 * logdet) / float(stride) ** 2).float()


def entry_costs(kernel: TransportKernel, means: ArrayLike, covariances: ArrayLike,
                kind: str = 'sqdist', *, min_std: Optional[float] = None,
                max_std: float = DEFAULT_MAX_STD) -> Tensor:
    """Cost ``c(x_i, y_n)`` of every stored point entry of ``kernel`` ``(nnz,)``:
    ``'sqdist'`` the squared distance from cell ``i``'s centre to point ``n`` in cells^2
    (``/ stride^2``), ``'mahalanobis'`` ``d_M^2 / 2`` under point ``n``'s Gaussian
    (clamped as the kernel's). ``means (N, 2)`` / ``covariances (N, 2, 2)`` input px:
    the points' (for a soft plan, the anchors')."""
    if kind not in COST_KINDS:
        raise ValueError(f'cost kind must be one of {COST_KINDS}, got {kind!r}')
    grid = kernel.grid_shape
    m, _, conic, _ = _prepare(means, covariances, grid, kernel.stride, min_std, max_std)
    if m.shape[0] != kernel.num_points:
        raise ValueError(f'{m.shape[0]} means for a kernel of {kernel.num_points} points')
    m, conic = m.to(kernel.device), conic.to(kernel.device)
    centres = cell_centres(grid, kernel.stride, device=kernel.device, dtype=m.dtype)
    rows, cols = kernel.rows, kernel.cols.long()
    dx = centres[rows, 0] - m[cols, 0]
    dy = centres[rows, 1] - m[cols, 1]
    if kind == 'sqdist':
        return ((dx * dx + dy * dy) / kernel.stride ** 2).float()
    return (0.5 * mahalanobis_sq(dx, dy, conic[cols])).float()


def with_entry_costs(kernel: TransportKernel, means: ArrayLike, covariances: ArrayLike,
                     kind: str = 'sqdist', **clamp) -> TransportKernel:
    """``kernel`` with :func:`entry_costs` attached (the same object, returned)."""
    kernel.costs = entry_costs(kernel, means, covariances, kind, **clamp)
    return kernel
