"""Per-joint transport loss for landmark heatmaps (method.md section 5).

Pure torch (no OpenMMLab imports), so it can be checked against a direct
computation in isolation. Each heatmap channel ``j`` has its own two-column
transport plan: the joint's Gaussian versus background. ``K_fg[j]`` is the
foreground column (the share of each heatmap cell's mass that goes to joint
``j``; produced by :func:`gst_mm.transport.point_kernels`), the background
column is ``1 - K_fg[j]``. The joint should receive unit mass and the
background none:

    l_j = | sum_x K_fg[j](x) d_j(x) - 1 | + | sum_x (1 - K_fg[j](x)) d_j(x) |

with ``d_j >= 0`` the predicted heatmap made non-negative (see
:func:`nonnegative`). Units: ``d`` is mass per heatmap cell; a joint's unit mass
is the sum over the ``h * w`` cells of its channel.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

#: non-negativity maps; the first is the default (docs/pose.md, "Loss, density
#: and keypoint scores", has the measurements behind the choice).
NONNEG_MODES = ('softmax', 'softplus', 'relu', 'abs')
DEFAULT_NONNEG = NONNEG_MODES[0]


def mass_offset(num_cells: int, init_mass: float) -> float:
    """Raw-output offset ``c`` with ``num_cells * softplus(c) = init_mass``: a
    channel whose raw output is 0 everywhere holds ``init_mass`` in total."""
    if num_cells <= 0 or init_mass <= 0:
        raise ValueError(f'need num_cells > 0 and init_mass > 0, got {num_cells}, {init_mass}')
    return math.log(math.expm1(init_mass / num_cells))


def nonnegative(heatmaps: Tensor, mode: str = DEFAULT_NONNEG,
                init_mass: Optional[float] = 1.0) -> Tensor:
    """Map raw heatmaps ``(..., h, w)`` to a non-negative density ``d`` (mass per cell).

    Args:
        heatmaps: raw network output, any shape ending in ``(h, w)``.
        mode: ``'softmax'`` (default): a spatial softmax per channel, so every
            channel is a distribution over the heatmap cells (unit mass, the
            source ``P_X`` of the paper's Theorem 1) and the per-joint loss
            becomes ``2 (1 - sum K_fg d)``: it cannot lose its mass, has no
            uniform "lower everything" direction, and keeps the raw argmax.
            ``'softplus'``: ``d = softplus(raw + c)`` with ``c`` from
            :func:`mass_offset`, so a raw output near 0 (every freshly
            initialised MMPose head) holds ``init_mass`` per channel, spread
            evenly, and the map is smooth and strictly increasing: it never
            stops passing gradient and keeps the raw heatmap's argmax, but from
            random init it drifts to a low-mass plateau (docs/pose.md).
            ``'relu'``: negative cells count as zero mass; from random init the
            background term pushes every cell below 0 within a few steps and the
            loss then has no gradient (a dead channel, see docs/pose.md).
            ``'abs'``: the counting model's choice (method.md 1); a large
            negative peak satisfies the loss while the decoder ignores it.
        init_mass: channel mass at raw output 0 for ``'softplus'``; ``None`` =
            plain ``softplus(raw)`` (``0.69`` per cell). Ignored by the others
            (``'softmax'`` always has unit mass).

    Returns:
        Tensor of the same shape, ``>= 0``.
    """
    if mode == 'softmax':
        flat = heatmaps.flatten(-2)
        return torch.softmax(flat, -1).reshape(heatmaps.shape)
    if mode == 'softplus':
        if init_mass is None:
            return F.softplus(heatmaps)
        cells = heatmaps.shape[-1] * heatmaps.shape[-2]
        return F.softplus(heatmaps + mass_offset(cells, init_mass))
    if mode == 'relu':
        return torch.relu(heatmaps)
    if mode == 'abs':
        return heatmaps.abs()
    raise ValueError(f'unknown non-negativity mode {mode!r}; choose one of {NONNEG_MODES}')


def joint_transport_losses(density: Tensor, kernels: Tensor) -> Tensor:
    """Per-joint two-column transport loss ``l_j`` (no weighting, no reduction).

    Args:
        density: ``(B, J, h, w)`` non-negative predicted heatmaps (mass per cell).
        kernels: ``(B, J, h, w)`` foreground weight ``K_fg`` of each joint's
            own plan, values in [0, 1], on the same heatmap grid.

    Returns:
        ``(B, J)`` losses ``|sum K_fg d - 1| + |sum (1 - K_fg) d|``.
    """
    if density.shape != kernels.shape:
        raise ValueError(f'heatmaps {tuple(density.shape)} and transport kernels '
                         f'{tuple(kernels.shape)} differ in shape')
    d = density.flatten(2)
    k = kernels.to(d.dtype).flatten(2)
    to_joint = (k * d).sum(-1)
    to_background = ((1.0 - k) * d).sum(-1)
    return (to_joint - 1.0).abs() + to_background.abs()


def joint_transport_loss(heatmaps: Tensor,
                         kernels: Tensor,
                         weights: Tensor,
                         nonneg: str = DEFAULT_NONNEG,
                         init_mass: Optional[float] = 1.0) -> Tensor:
    """Weighted mean of the per-joint transport losses of a batch.

    Args:
        heatmaps: ``(B, J, h, w)`` raw network output.
        kernels: ``(B, J, h, w)`` per-joint foreground kernels ``K_fg``.
        weights: ``(B, J)`` per-joint weights (keypoint visibility times
            "joint inside the crop"; 0 drops a joint).
        nonneg, init_mass: how the raw heatmaps become mass, see
            :func:`nonnegative`.

    Returns:
        Scalar: ``sum_{b,j} w_bj l_bj / (B * J)`` (the normalisation of MMPose's
        ``KeypointMSELoss`` with target weights: a mean over all joint slots).
        Each visible joint contributes at most ~2 (all mass misplaced) and 0 when
        its unit mass lies where ``K_fg = 1``.
    """
    losses = joint_transport_losses(nonnegative(heatmaps, nonneg, init_mass), kernels)
    return weighted_joint_mean(losses, weights)


def weighted_joint_mean(losses: Tensor, weights: Tensor) -> Tensor:
    """``sum_{b,j} w_bj l_bj / (B * J)`` of per-joint losses ``(B, J)``: a mean over
    all joint slots, like MMPose's ``KeypointMSELoss`` with target weights."""
    w = weights.to(losses.dtype).reshape(losses.shape)
    return (losses * w).sum() / max(losses.numel(), 1)


def peak_mass(density: Tensor, radius: int = 2) -> Tensor:
    """Mass within ``radius`` cells (a ``(2r+1)^2`` window) of each channel's
    maximum: a keypoint score on MMPose's scale (a confident joint holds ~1,
    like an MSE heatmap's peak value; an uncertain one spreads its mass out).

    Args:
        density: ``(B, J, h, w)`` non-negative mass per cell.
        radius: window half-size in heatmap cells.

    Returns:
        ``(B, J)`` scores.
    """
    b, j, h, w = density.shape
    window = F.avg_pool2d(density.reshape(b * j, 1, h, w), 2 * radius + 1, stride=1,
                          padding=radius, count_include_pad=True) * (2 * radius + 1) ** 2
    flat = density.reshape(b * j, -1).argmax(-1)
    return window.reshape(b * j, -1).gather(1, flat[:, None]).reshape(b, j)
