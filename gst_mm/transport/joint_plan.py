"""Per-joint transport for landmark heatmaps (method.md 5; docs/pose.md).

Pure torch, no OpenMMLab imports. Each heatmap channel ``j`` has its own two-column
transport plan: the joint's Gaussian versus background. ``K_fg[j](x)`` (from
:func:`gst_mm.transport.point_kernels`) is the share of cell ``x``'s mass that goes to
joint ``j``, ``1 - K_fg[j](x)`` goes to background. With the predicted density ``d_j``
as the source, the plan is ``P = diag(d_j) [K_fg, 1 - K_fg]`` (the paper's Theorem 1)
and its marginal on the joint is the *transported mass* ``m_j = sum_x K_fg d_j``.

Discrepancy (the paper's ``D``, per joint; target mass 1 on the joint, 0 on background):

* ``'l1'`` (the paper): ``|m_j - 1| + |sum_x (1 - K_fg) d_j|``; for a unit-mass
  (softmax) density this is ``2 (1 - m_j)``, linear in ``d``: its gradient on a cell
  is proportional to the mass already there.
* ``'log'``: ``-log m_j + |sum_x (1 - K_fg) d_j|`` (``m_j`` floored at ``eps``): the
  same plan and masses; for a softmax density its logit gradient is the l1 one times
  ``(1 + 1 / m_j) / 2``, so a joint with little mass on its kernel is not starved.

Transport cost (the paper's ``W(P)``, which it drops with weight 0): the cost of the
whole plan, ``W_j = sum_x d_j(x) C_j(x)`` with ``C_j(x) = K_fg(x) c_j(x) +
(1 - K_fg(x)) c_0`` the plan's expected cost of cell ``x``'s mass: ``c_j`` the cost of
moving it to the joint (:func:`gst_mm.transport.point_costs`: squared distance in
cells, or half the squared Mahalanobis distance under the joint's Gaussian) and ``c_0``
that of the background column, the cost at the cut-off where the background sits
(:func:`gst_mm.transport.background_costs`), so sending mass to background is never
cheaper than keeping it on the kernel's rim. ``C_j`` is fixed per sample (the pose
transform makes it, ``gst_costs``). Inside the kernel's plateau the discrepancy does
not care where the mass lies; the cost prefers the joint's own cell.

Entropic regularisation (gst_mm's extension, as entropic optimal transport): ``-eps
H(P_j)`` with ``H(P_j) = -sum_x sum_n P log P = H(d_j) + sum_x d_j(x) h(K_fg(x))`` the
entropy of the plan (``h`` the binary entropy of a cell's two-column split,
:func:`plan_entropies`). Without it a softmax density collapses onto one cell of the
kernel's plateau, not necessarily the joint's, and stays there (its neighbours hold no
mass, so no gradient moves it); with it, the loss ``lambda W - eps H`` is minimised by
``d ~ exp(-lambda C / eps)``: a Gaussian of variance ``eps / (2 lambda)`` cells^2 around
the joint, whose log is quadratic (the ``'dark'`` decoder recovers the sub-cell maximum).

Units: ``d`` is mass per heatmap cell, a joint's unit mass is the sum over its channel's
``h * w`` cells; costs are in cells^2 (``'sqdist'``) or squared stds (``'mahalanobis'``).
"""
from __future__ import annotations

import torch
from torch import Tensor

#: results / ``gt_fields`` key of the per-joint kernels ``K_fg (J, h, w)`` and of the
#: per-joint plan cost maps ``C (J, h, w)`` (:func:`plan_costs`; written by the pose
#: kernel transform, read by the GST head).
KERNEL_KEY = 'gst_kernels'
COST_KEY = 'gst_costs'

DISCREPANCIES = ('l1', 'log')


def _check(density: Tensor, kernels: Tensor, what: str = 'transport kernels') -> None:
    if density.ndim != 4:
        raise ValueError(f'density must be (B, J, h, w), got shape {tuple(density.shape)}')
    if density.shape != kernels.shape:
        raise ValueError(f'heatmaps {tuple(density.shape)} and {what} '
                         f'{tuple(kernels.shape)} differ in shape')


def transported_masses(density: Tensor, kernels: Tensor) -> tuple:
    """``(to_joint, to_background)``, each ``(B, J)``: the plan's marginals
    ``sum_x K_fg d`` and ``sum_x (1 - K_fg) d`` for density and kernels ``(B, J, h, w)``."""
    _check(density, kernels)
    d = density.flatten(2)
    k = kernels.to(d.dtype).flatten(2)
    to_joint = (k * d).sum(-1)
    return to_joint, d.sum(-1) - to_joint


def joint_transport_losses(density: Tensor, kernels: Tensor, discrepancy: str = 'l1',
                           eps: float = 1e-4) -> Tensor:
    """Per-joint discrepancy ``(B, J)`` (no weighting, no reduction; module docstring).

    Args:
        density: ``(B, J, h, w)`` non-negative predicted heatmaps (mass per cell).
        kernels: ``(B, J, h, w)`` foreground weights ``K_fg`` in [0, 1].
        discrepancy: ``'l1'`` (the paper) or ``'log'``.
        eps: floor of the transported mass under ``-log`` (``'log'`` only).

    Returns:
        ``(B, J)``: l1: ``|m - 1| + |b|``, 0 when all mass lies where ``K_fg = 1`` and
        2 when a unit mass lies where ``K_fg = 0``; log: ``-log max(m, eps) + |b|``.
    """
    if discrepancy not in DISCREPANCIES:
        raise ValueError(f'discrepancy must be one of {DISCREPANCIES}, got {discrepancy!r}')
    to_joint, to_background = transported_masses(density, kernels)
    if discrepancy == 'l1':
        return (to_joint - 1.0).abs() + to_background.abs()
    return -torch.log(to_joint.clamp_min(eps)) + to_background.abs()


def plan_costs(kernels: Tensor, costs: Tensor, background: Tensor) -> Tensor:
    """The two-column plan's expected cost per cell, ``C = K_fg c + (1 - K_fg) c_0``,
    for kernels and point costs ``(..., h, w)`` and background costs ``(...)``."""
    return kernels * costs + (1.0 - kernels) * background[..., None, None]


def joint_transport_costs(density: Tensor, costs: Tensor) -> Tensor:
    """Per-joint transport cost ``W_j = sum_x d C_j`` ``(B, J)`` of the plan, with
    ``costs (B, J, h, w)`` the plan's expected cost per cell (:func:`plan_costs`; cells^2
    or stds^2)."""
    _check(density, costs, 'cost maps')
    return (density * costs.to(density.dtype)).flatten(2).sum(-1)


def plan_entropies(density: Tensor, kernels: Tensor, eps: float = 1e-12) -> Tensor:
    """Per-joint entropy ``H(P_j)`` ``(B, J)`` of the plan ``P = diag(d) [K, 1 - K]``:
    ``-sum_x d log d + sum_x d h(K)`` with ``h(k) = -k log k - (1 - k) log (1 - k)``
    (nats; ``d`` is floored at ``eps`` inside the log)."""
    _check(density, kernels)
    d = density.flatten(2)
    k = kernels.to(d.dtype).flatten(2).clamp(eps, 1 - eps)
    h = -(k * k.log() + (1 - k) * (1 - k).log())
    return -(d * d.clamp_min(eps).log()).sum(-1) + (d * h).sum(-1)


def weighted_joint_mean(losses: Tensor, weights: Tensor) -> Tensor:
    """``sum_{b,j} w_bj l_bj / (B * J)`` of per-joint losses ``(B, J)``: a mean over
    all joint slots, like MMPose's ``KeypointMSELoss`` with target weights."""
    w = weights.to(losses.dtype).reshape(losses.shape)
    return (losses * w).sum() / max(losses.numel(), 1)
