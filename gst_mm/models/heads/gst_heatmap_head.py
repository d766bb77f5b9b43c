"""MMPose heatmap head trained with GST's per-joint transport loss."""
from __future__ import annotations

from typing import Tuple

import torch
from mmpose.evaluation.functional import pose_pck_accuracy
from mmpose.models.heads import HeatmapHead
from mmpose.utils.tensor_utils import to_numpy
from mmpose.utils.typing import ConfigType, OptSampleList
from torch import Tensor

from gst_mm.registry import MODELS

from .joint_transport import NONNEG_MODES, joint_transport_loss

#: results / ``gt_fields`` key under which the pose transform stores the kernels.
KERNEL_KEY = 'gst_kernels'


@MODELS.register_module()
class GSTHeatmapHead(HeatmapHead):
    """A :class:`mmpose.models.heads.HeatmapHead` whose loss is GST's per-joint
    transport loss (method.md 5).

    Forward, predict and decode are HeatmapHead's own, so flip test,
    ``shift_heatmap``, ``output_heatmaps`` and ``MpiiPCKAccuracy`` work
    unchanged and a checkpoint of either head loads into the other.

    Training needs ``gt_fields.gst_kernels (J, h, w)`` per sample (produced by
    :class:`gst_mm.datasets.transforms.LoadPoseTransportKernel`, placed after
    ``GenerateTarget``), plus MMPose's usual ``gt_fields.heatmaps`` and
    ``gt_instance_labels.keypoint_weights`` (used for the optional MSE term and
    ``acc_pose``).

    Loss: with ``d = nonneg(heatmap)`` and ``K_fg`` the joint's kernel,
    ``l_j = |sum K_fg d - 1| + |sum (1 - K_fg) d|`` weighted by
    ``keypoint_weights`` (visibility) times "kernel present" (a joint the
    transform dropped, e.g. outside the crop, has an all-zero kernel), averaged
    over the batch's joint slots; ``loss_kpt = transport_weight * L_GST +
    mse_weight * L_MSE`` where ``L_MSE`` is the head's ``loss`` module
    (``KeypointMSELoss`` by default) on MMPose's Gaussian targets.

    Args:
        transport_weight: weight of the transport term.
        mse_weight: weight of the MSE term (0 = pure GST, the paper's setting;
            the MSE module is then not evaluated).
        nonneg: ``'relu'`` (default), ``'abs'`` or ``'softplus'``: how raw
            heatmaps become non-negative mass for the transport term (see
            :func:`gst_mm.models.heads.joint_transport.nonnegative`). Decoding
            always reads the raw heatmap.
        **kwargs: every :class:`HeatmapHead` argument.
    """

    def __init__(self,
                 *args,
                 transport_weight: float = 1.0,
                 mse_weight: float = 0.0,
                 nonneg: str = 'relu',
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if nonneg not in NONNEG_MODES:
            raise ValueError(f'GSTHeatmapHead: nonneg must be one of {NONNEG_MODES}, '
                             f'got {nonneg!r}')
        if transport_weight < 0 or mse_weight < 0:
            raise ValueError('GSTHeatmapHead: loss weights must be >= 0')
        self.transport_weight = float(transport_weight)
        self.mse_weight = float(mse_weight)
        self.nonneg = nonneg

    @staticmethod
    def _stack_field(batch_data_samples, key: str) -> Tensor:
        """Stack ``gt_fields.<key>`` of every sample into ``(B, J, h, w)``."""
        out = []
        for sample in batch_data_samples:
            fields = sample.get('gt_fields', None)
            if fields is None or key not in fields:
                where = sample.metainfo.get('img_path', '<unknown image>')
                if key == KERNEL_KEY:
                    raise KeyError(
                        f"GSTHeatmapHead: sample {where} has no gt_fields.{key}. Put "
                        "LoadPoseTransportKernel in the train pipeline after "
                        "GenerateTarget (GenerateTarget resets the field mapping "
                        "table) and before PackPoseInputs.")
                raise KeyError(f'GSTHeatmapHead: sample {where} has no gt_fields.{key} '
                               '(is GenerateTarget in the train pipeline?)')
            out.append(fields.get(key))
        return torch.stack(out)

    def joint_weights(self, kernels: Tensor, keypoint_weights: Tensor) -> Tensor:
        """``(B, J)`` transport weights: visibility times "kernel present"."""
        present = kernels.flatten(2).sum(-1) > 0
        return keypoint_weights.to(kernels.dtype) * present.to(kernels.dtype)

    def loss(self,
             feats: Tuple[Tensor],
             batch_data_samples: OptSampleList,
             train_cfg: ConfigType = {}) -> dict:
        """Transport (+ optional MSE) loss and PCK accuracy of a batch.

        Returns:
            ``dict(loss_kpt=Tensor, acc_pose=Tensor)`` like HeatmapHead.
        """
        pred_fields = self.forward(feats)
        kernels = self._stack_field(batch_data_samples, KERNEL_KEY).to(pred_fields)
        gt_heatmaps = self._stack_field(batch_data_samples, 'heatmaps').to(pred_fields)
        keypoint_weights = torch.cat([
            d.gt_instance_labels.keypoint_weights for d in batch_data_samples
        ]).to(pred_fields)

        weights = self.joint_weights(kernels, keypoint_weights)
        loss = self.transport_weight * joint_transport_loss(
            pred_fields, kernels, weights, nonneg=self.nonneg)
        if self.mse_weight > 0:
            mse = self.loss_module(pred_fields, gt_heatmaps, keypoint_weights)
            if isinstance(mse, dict):
                mse = sum(mse.values())
            loss = loss + self.mse_weight * mse

        losses = dict(loss_kpt=loss)
        if train_cfg.get('compute_acc', True):
            _, avg_acc, _ = pose_pck_accuracy(
                output=to_numpy(pred_fields),
                target=to_numpy(gt_heatmaps),
                mask=to_numpy(keypoint_weights) > 0)
            losses['acc_pose'] = torch.tensor(avg_acc, device=gt_heatmaps.device)
        return losses
