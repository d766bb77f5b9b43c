"""Heatmap losses for MMPose heads, registered in gst_mm's ``MODELS`` registry.

:class:`JointTransportLoss` is GST's per-joint transport loss (method.md 5), the loss a
:class:`gst_mm.models.heads.GSTHeatmapHead` builds from ``loss=dict(...)``: a
discrepancy between the plan's transported masses and their targets, plus the plan's
optional transport cost (:mod:`gst_mm.transport.joint_plan`).

:class:`HeatmapOTLoss` is the optimal-transport baseline of the pose benchmark
("heatmap OT": entropic OT between the predicted density and MMPose's *Gaussian*
target heatmap). HDM-HPE (Qu et al. 2022) matches the annotation itself (a sub-pixel
dot target); this baseline is the distribution-matching idea on MMPose's own targets,
not a reproduction of HDM-HPE. It has the signature of MMPose's
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
from gst_mm.transport import (
    DISCREPANCIES,
    fast_path_eps,
    grid_ot_loss,
    joint_transport_costs,
    joint_transport_losses,
    plan_entropies,
    weighted_joint_mean,
)


@MODELS.register_module()
class JointTransportLoss(nn.Module):
    """GST's per-joint transport loss on a density head's output (method.md 5).

    For each joint ``j`` with its kernel ``K_fg`` (the plan's foreground column) and
    density ``d`` (mass per heatmap cell, e.g. the head's softmax):

        l_j = D(sum_x K_fg d, sum_x (1 - K_fg) d) + cost_weight * sum_x d C_j
              - entropy_weight * H(P_j)

    ``D`` is ``'l1'`` (the paper: ``|m - 1| + |b|``) or ``'log'`` (``-log m + |b|``);
    the second term is the plan's transport cost ``W`` with the fixed per-cell plan cost
    ``C_j = K_fg c_j + (1 - K_fg) c_0`` of the pose transform (``gst_costs``,
    :func:`gst_mm.transport.plan_costs`); ``cost_weight = 0`` is the paper's setting (it
    drops ``W``); the last is the entropic regulariser of the plan
    (:func:`gst_mm.transport.plan_entropies`), 0 by default: with both weights on, a
    unit mass settles as a Gaussian of variance ``entropy_weight / (2 cost_weight)``
    cells^2 around the joint instead of collapsing anywhere on the plateau. Details and
    measurements: docs/pose.md.

    Args:
        discrepancy: ``'l1'`` (default, the paper) or ``'log'``.
        cost_weight: ``lambda_W`` (0: no cost term, and no cost maps needed).
        entropy_weight: ``eps`` of the plan's entropy (0: none).
        loss_weight: factor on both terms.
        use_target_weight: weight joints by ``target_weights`` (visibility); a joint
            whose kernel is all zero (outside the crop) always has weight 0.
        eps: floor of the transported mass under ``'log'``.

    Forward:
        ``density (B, J, h, w)``, ``kernels (B, J, h, w)``, ``target_weights (B, J)``,
        ``costs (B, J, h, w)`` or ``None`` -> ``dict(loss_transport=...)`` and, when
        their weights are > 0, ``loss_cost`` and ``loss_entropy`` (``-eps H``): each a
        weighted mean over the batch's joint slots (``KeypointMSELoss``'s normalisation).
    """

    def __init__(self, discrepancy: str = 'l1', cost_weight: float = 0.0,
                 loss_weight: float = 1.0, use_target_weight: bool = True,
                 eps: float = 1e-4, entropy_weight: float = 0.0) -> None:
        super().__init__()
        if discrepancy not in DISCREPANCIES:
            raise ValueError(f'JointTransportLoss: discrepancy must be one of {DISCREPANCIES}, '
                             f'got {discrepancy!r}')
        if cost_weight < 0 or loss_weight < 0 or entropy_weight < 0 or not 0 < eps < 1:
            raise ValueError('JointTransportLoss: need cost_weight, entropy_weight, '
                             'loss_weight >= 0 and 0 < eps < 1, got '
                             f'{cost_weight}, {entropy_weight}, {loss_weight}, {eps}')
        self.discrepancy = discrepancy
        self.cost_weight = float(cost_weight)
        self.entropy_weight = float(entropy_weight)
        self.loss_weight = float(loss_weight)
        self.use_target_weight = bool(use_target_weight)
        self.eps = float(eps)

    @property
    def needs_costs(self) -> bool:
        """True when the cost term is on (the head must pass the cost maps)."""
        return self.cost_weight > 0

    def joint_weights(self, kernels: Tensor, target_weights: Optional[Tensor]) -> Tensor:
        """``(B, J)``: visibility (with ``use_target_weight``) times "kernel present"."""
        present = (kernels.flatten(2).sum(-1) > 0).to(kernels.dtype)
        if self.use_target_weight and target_weights is not None:
            present = present * target_weights.reshape(present.shape).to(kernels.dtype)
        return present

    def forward(self, density: Tensor, kernels: Tensor, target_weights: Optional[Tensor] = None,
                costs: Optional[Tensor] = None) -> dict:
        weights = self.joint_weights(kernels, target_weights)
        per_joint = joint_transport_losses(density, kernels, self.discrepancy, self.eps)
        out = dict(loss_transport=self.loss_weight * weighted_joint_mean(per_joint, weights))
        if self.needs_costs:
            if costs is None:
                raise ValueError('JointTransportLoss: cost_weight > 0 needs the cost maps '
                                 "(gt_fields.gst_costs: LoadPoseTransportKernel's cost option)")
            w = joint_transport_costs(density, costs)
            out['loss_cost'] = self.loss_weight * self.cost_weight * weighted_joint_mean(
                w, weights)
        if self.entropy_weight > 0:
            h = plan_entropies(density, kernels)
            out['loss_entropy'] = -self.loss_weight * self.entropy_weight * weighted_joint_mean(
                h, weights)
        return out


@MODELS.register_module()
class HeatmapOTLoss(nn.Module):
    """Entropic OT between each predicted heatmap and its Gaussian target heatmap
    ("heatmap OT"; HDM-HPE's dot target is not what this matches, see the module doc).

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
