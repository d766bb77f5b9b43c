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
:func:`nonnegative`).
"""
from __future__ import annotations

import torch
from torch import Tensor

NONNEG_MODES = ('relu', 'abs', 'softplus')


def nonnegative(heatmaps: Tensor, mode: str = 'relu') -> Tensor:
    """Map raw heatmaps to a non-negative density ``d``.

    Args:
        heatmaps: raw network output, any shape.
        mode: ``'relu'`` (default): negative cells count as zero mass, so the
            mass the loss sees has the same peak as the raw heatmap the
            decoder reads (argmax); ``'abs'``: the counting model's choice
            (method.md 1), but a large negative peak then satisfies the loss
            while the decoder ignores it, so it is not the default for pose;
            ``'softplus'``: smooth and strictly positive (monotone, so the
            decoded peak is unchanged), every cell carries a little mass.

    Returns:
        Tensor of the same shape, ``>= 0``.
    """
    if mode == 'relu':
        return torch.relu(heatmaps)
    if mode == 'abs':
        return heatmaps.abs()
    if mode == 'softplus':
        return torch.nn.functional.softplus(heatmaps)
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
                         nonneg: str = 'relu') -> Tensor:
    """Weighted mean of the per-joint transport losses of a batch.

    Args:
        heatmaps: ``(B, J, h, w)`` raw network output.
        kernels: ``(B, J, h, w)`` per-joint foreground kernels ``K_fg``.
        weights: ``(B, J)`` per-joint weights (keypoint visibility times
            "joint inside the crop"; 0 drops a joint).
        nonneg: how the raw heatmaps are made non-negative, see
            :func:`nonnegative`.

    Returns:
        Scalar: ``sum_{b,j} w_bj l_bj / (B * J)`` (the normalisation of MMPose's
        ``KeypointMSELoss`` with target weights: a mean over all joint slots).
    """
    losses = joint_transport_losses(nonnegative(heatmaps, nonneg), kernels)
    w = weights.to(losses.dtype).reshape(losses.shape)
    return (losses * w).sum() / max(losses.numel(), 1)
