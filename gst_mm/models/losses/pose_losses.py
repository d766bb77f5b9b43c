"""Heatmap losses for MMPose heads, registered in gst_mm's ``MODELS`` registry.

:class:`HeatmapOTLoss` is the optimal-transport baseline of the pose benchmark
(distribution matching between predicted and target heatmaps by entropic OT,
as in HDM-HPE, Qu et al. 2022). It has the signature of MMPose's
``KeypointMSELoss``, so a head builds it from ``loss=dict(type='gst_mm.HeatmapOTLoss')``;
use :class:`gst_mm.models.heads.DensityHeatmapHead` (``nonneg='softmax'``), which
decodes the softmax this loss trains (MMPose's ``HeatmapHead`` decodes the raw
logits and drops maxima ``<= 0``).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from gst_mm.registry import MODELS
from gst_mm.transport import fast_path_eps, grid_ot_loss


@MODELS.register_module()
class HeatmapOTLoss(nn.Module):
    """Entropic OT between each predicted heatmap and its target heatmap.

    The prediction becomes a distribution over heatmap cells by a spatial
    softmax of the raw output; the target (MMPose's Gaussian heatmap) is
    normalised to unit sum. The cost is the squared distance in heatmap cells,
    the value is computed by :func:`gst_mm.transport.grid_ot_loss` (log-domain
    separable Sinkhorn, gradient through the dual potential).

    Args:
        eps: entropic regularisation in cells^2; ``None`` (default): the smallest
            value that keeps :func:`gst_mm.transport.grid_sinkhorn` on its fast
            matrix-product path, :func:`gst_mm.transport.fast_path_eps` (1 for heatmaps
            up to 26 cells, 1.5 for 32x32, 6.1 for 64x64); smaller values work but
            fall back to a direct log-sum-exp ~100x slower.
        num_iters: Sinkhorn iterations.
        use_target_weight: weight each joint by ``target_weights`` (visibility).
        loss_weight: factor on the loss.

    Forward:
        output ``(B, K, h, w)`` raw heatmaps, target ``(B, K, h, w)``,
        target_weights ``(B, K)`` -> scalar: ``loss_weight * sum_bk w_bk OT_bk / (B K)``
        (mean over joint slots, like ``KeypointMSELoss``), in cells^2. A joint whose
        target is all zero (outside the crop) gets weight 0.
    """

    def __init__(self, eps: Optional[float] = None, num_iters: int = 50,
                 use_target_weight: bool = True, loss_weight: float = 1.0) -> None:
        super().__init__()
        if (eps is not None and eps <= 0) or num_iters <= 0:
            raise ValueError(f'HeatmapOTLoss: need eps > 0 and num_iters > 0, got {eps}, '
                             f'{num_iters}')
        self.eps = None if eps is None else float(eps)
        self.num_iters = int(num_iters)
        self.use_target_weight = bool(use_target_weight)
        self.loss_weight = float(loss_weight)

    def forward(self, output: Tensor, target: Tensor,
                target_weights: Optional[Tensor] = None, mask: Optional[Tensor] = None
                ) -> Tensor:
        if output.shape != target.shape:
            raise ValueError(f'HeatmapOTLoss: output {tuple(output.shape)} and target '
                             f'{tuple(target.shape)} differ in shape')
        b, k, h, w = output.shape
        pred = torch.softmax(output.reshape(b * k, h * w).float(), -1).reshape(b * k, h, w)
        tgt = target.reshape(b * k, h * w).float().clamp_min(0)
        total = tgt.sum(-1, keepdim=True)
        present = total.squeeze(-1) > 0
        tgt = torch.where(total > 0, tgt / total.clamp_min(1e-12),
                          torch.full_like(tgt, 1.0 / (h * w))).reshape(b * k, h, w)
        eps = self.eps if self.eps is not None else fast_path_eps(h, w)
        ot = grid_ot_loss(pred, tgt, eps, self.num_iters)
        weight = present.to(ot.dtype)
        if self.use_target_weight and target_weights is not None:
            weight = weight * target_weights.reshape(-1).to(ot.dtype)
        return self.loss_weight * (ot * weight).sum() / max(b * k, 1)
