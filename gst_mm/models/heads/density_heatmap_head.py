"""MMPose heatmap head whose output is read as a density (mass per heatmap cell)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from mmpose.models.heads import HeatmapHead
from mmpose.utils.tensor_utils import to_numpy
from mmpose.utils.typing import ConfigType, OptSampleList
from torch import Tensor

from gst_mm.registry import MODELS

from .density_maps import (
    DECODE_MODES,
    DEFAULT_NONNEG,
    NONNEG_MODES,
    decode_cells,
    nonnegative,
    peak_mass,
)

SCORE_MODES = ('mass', 'raw')


@MODELS.register_module()
class DensityHeatmapHead(HeatmapHead):
    """A :class:`mmpose.models.heads.HeatmapHead` for losses that treat each channel
    as a mass distribution over the heatmap cells (GST's transport loss, heatmap OT).

    The layers, forward, flip test and checkpoints are HeatmapHead's. Two things
    differ, both because such a head's raw output is not on MSE's scale (a softmax
    head's logits are often all negative, and MMPose's ``get_heatmap_maximum``
    marks a keypoint whose maximum is ``<= 0`` as missing, ``(-1, -1)``):

    * decoding reads the density ``d = nonneg(beta * raw)`` (same argmax, since every
      mode is monotone where it matters): MMPose's codec (``decode_mode='codec'``:
      argmax + quarter-cell shift, or DARK when the codec is ``unbiased``), the mass
      centroid around the argmax (``'centroid'``) or a Newton step on the log density
      (``'dark'``) (:mod:`~gst_mm.models.heads.density_maps`), and ``acc_pose`` in
      training reads the density too;
    * keypoint scores (``score='mass'``) are the mass within ``score_radius`` cells
      of the peak (:func:`~gst_mm.models.heads.joint_transport.peak_mass`): ~1 for
      a confident joint, like an MSE heatmap's peak value, so MMPose's
      ``keypoint_score_thr`` (CocoMetric 0.2) and ``kpt_thr`` (visualiser 0.3) keep
      their meaning. ``score='raw'``: the decoded density's maximum.

    The loss is the ``loss`` module's (MMPose's signature ``loss(output, target,
    target_weights)``), e.g. ``loss=dict(type='gst_mm.HeatmapOTLoss')``.

    Args:
        nonneg: ``'softmax'`` (default), ``'softplus'``, ``'relu'`` or ``'abs'``
            (:func:`~gst_mm.models.heads.density_maps.nonnegative`).
        init_mass: channel mass at raw output 0 (``'softplus'`` only).
        beta: inverse temperature of the density, ``nonneg(beta * raw)``.
        score, score_radius: keypoint score (see above); radius in heatmap cells.
        decode_mode, decode_radius: keypoint decoder (see above; ``'codec'`` is
            MMPose's) and the centroid's window half-size in heatmap cells.
        **kwargs: every :class:`HeatmapHead` argument.
    """

    def __init__(self, *args, nonneg: str = DEFAULT_NONNEG, init_mass: Optional[float] = 1.0,
                 beta: float = 1.0, score: str = 'mass', score_radius: int = 2,
                 decode_mode: str = 'codec', decode_radius: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        name = type(self).__name__
        if nonneg not in NONNEG_MODES:
            raise ValueError(f'{name}: nonneg must be one of {NONNEG_MODES}, got {nonneg!r}')
        if decode_mode not in DECODE_MODES:
            raise ValueError(f'{name}: decode_mode must be one of {DECODE_MODES}, got '
                             f'{decode_mode!r}')
        if not beta > 0 or int(decode_radius) < 0:
            raise ValueError(f'{name}: need beta > 0 and decode_radius >= 0, got {beta}, '
                             f'{decode_radius}')
        self.beta = float(beta)
        self.decode_mode = decode_mode
        self.decode_radius = int(decode_radius)
        if score not in SCORE_MODES:
            raise ValueError(f'{name}: score must be one of {SCORE_MODES}, got {score!r}')
        if init_mass is not None and init_mass <= 0:
            raise ValueError(f'{name}: init_mass must be > 0 or None, got {init_mass}')
        self.nonneg = nonneg
        self.init_mass = None if init_mass is None else float(init_mass)
        self.score = score
        self.score_radius = int(score_radius)

    def density(self, heatmaps: Tensor) -> Tensor:
        """Raw heatmaps ``(B, J, h, w)`` -> mass per cell, ``nonneg(beta * raw)``."""
        return nonnegative(heatmaps, self.nonneg, self.init_mass, self.beta)

    def decode(self, batch_outputs: Tensor):
        """Keypoints of the density (not of the raw output): MMPose's codec
        (``decode_mode='codec'``), or the centroid / Newton refinement in cells scaled
        to the input as the codec scales its own (``scale_factor``)."""
        density = self.density(batch_outputs)
        if self.decode_mode == 'codec':
            return super().decode(density)
        from mmengine.structures import InstanceData
        cells = decode_cells(batch_outputs, density, self.decode_mode, self.decode_radius,
                             self.beta, self.nonneg)
        scale = np.asarray(getattr(self.decoder, 'scale_factor', 1.0), np.float32)
        keypoints = to_numpy(cells).astype(np.float32) * scale
        scores = to_numpy(density.flatten(2).amax(-1)).astype(np.float32)
        return [InstanceData(keypoints=k[None], keypoint_scores=s[None])
                for k, s in zip(keypoints, scores)]

    def loss(self, feats, batch_data_samples: OptSampleList, train_cfg: ConfigType = {}) -> dict:
        """HeatmapHead's loss, with ``acc_pose`` computed on the density."""
        pred_fields = self.forward(feats)
        gt_heatmaps = torch.stack([d.gt_fields.heatmaps for d in batch_data_samples])
        keypoint_weights = torch.cat([
            d.gt_instance_labels.keypoint_weights for d in batch_data_samples])
        losses = dict(loss_kpt=self.loss_module(pred_fields, gt_heatmaps, keypoint_weights))
        if train_cfg.get('compute_acc', True):
            losses['acc_pose'] = self.pose_accuracy(pred_fields, gt_heatmaps, keypoint_weights)
        return losses

    def pose_accuracy(self, pred_fields: Tensor, gt_heatmaps: Tensor,
                      keypoint_weights: Tensor) -> Tensor:
        """MMPose's ``acc_pose`` (PCK of the heatmap maxima) on the density."""
        from mmpose.evaluation.functional import pose_pck_accuracy
        _, avg_acc, _ = pose_pck_accuracy(
            output=to_numpy(self.density(pred_fields.detach())),
            target=to_numpy(gt_heatmaps), mask=to_numpy(keypoint_weights) > 0)
        return torch.tensor(avg_acc, device=gt_heatmaps.device)

    def predict(self, feats, batch_data_samples: OptSampleList, test_cfg: ConfigType = {}):
        """HeatmapHead's prediction (flip test included) decoded from the density;
        with ``score='mass'`` each keypoint's score is the mass around its peak."""
        if self.score == 'raw':
            return super().predict(feats, batch_data_samples, test_cfg)
        cfg = dict(test_cfg)
        cfg['output_heatmaps'] = True
        preds, fields = super().predict(feats, batch_data_samples, cfg)
        heatmaps = torch.stack([f.heatmaps for f in fields])
        scores = peak_mass(self.density(heatmaps), self.score_radius)
        for pred, s in zip(preds, to_numpy(scores)):
            pred.keypoint_scores = s.reshape(pred.keypoint_scores.shape).astype(
                pred.keypoint_scores.dtype)
        if test_cfg.get('output_heatmaps', False):
            return preds, fields
        return preds
