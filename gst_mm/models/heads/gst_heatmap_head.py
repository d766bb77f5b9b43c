"""MMPose heatmap head trained with GST's per-joint transport loss."""
from __future__ import annotations

import logging
from typing import Optional, Tuple

import torch
from mmengine.logging import print_log
from mmpose.utils.typing import ConfigType, OptSampleList
from torch import Tensor

from gst_mm.registry import MODELS

from .density_heatmap_head import DensityHeatmapHead
from .joint_transport import DEFAULT_NONNEG, joint_transport_losses, weighted_joint_mean

#: results / ``gt_fields`` key under which the pose transform stores the kernels.
KERNEL_KEY = 'gst_kernels'


@MODELS.register_module()
class GSTHeatmapHead(DensityHeatmapHead):
    """A :class:`mmpose.models.heads.HeatmapHead` whose loss is GST's per-joint
    transport loss (method.md 5).

    Forward is HeatmapHead's own, so flip test, ``shift_heatmap``,
    ``output_heatmaps`` and ``MpiiPCKAccuracy`` work unchanged and a checkpoint
    of either head loads into the other; decoding and keypoint scores read the
    density (:class:`DensityHeatmapHead`).

    Training needs ``gt_fields.gst_kernels (J, h, w)`` per sample (produced by
    :class:`gst_mm.datasets.transforms.LoadPoseTransportKernel`, placed after
    ``GenerateTarget``), plus MMPose's usual ``gt_fields.heatmaps`` and
    ``gt_instance_labels.keypoint_weights`` (used for the optional MSE term and
    ``acc_pose``).

    Loss: with ``d = nonneg(heatmap)`` (mass per heatmap cell) and ``K_fg`` the
    joint's kernel, ``l_j = |sum K_fg d - 1| + |sum (1 - K_fg) d|`` weighted by
    ``keypoint_weights`` (visibility) times "kernel present" (a joint the
    transform dropped, e.g. outside the crop, has an all-zero kernel), averaged
    over the batch's joint slots. Logged terms: ``loss_transport`` (=
    ``transport_weight * L_GST``; about 2 x the visible fraction at init, 0 at
    the optimum) and, when ``mse_weight > 0``, ``loss_mse`` (``mse_weight`` x the
    head's ``loss`` module, ``KeypointMSELoss`` by default, on MMPose's Gaussian
    targets: ~1e-3, three orders of magnitude below the transport term).
    MMEngine sums every ``loss*`` key. Also logged: ``acc_pose`` (MMPose's PCK
    on the targets), ``joint_mass`` (mean mass per visible joint channel: 1 by
    construction for ``softmax``, 0 for a dead ``relu`` model) and
    ``mass_on_joint`` (mean ``sum K_fg d``: the mass transported to the joint,
    rising towards 1 as the model learns).

    Collapse guard: a joint channel whose mass stays below ``dead_mass`` on every
    visible sample for ``collapse_window`` consecutive training steps triggers a
    one-time warning naming the channel.

    Args:
        transport_weight: weight of the transport term.
        mse_weight: weight of the MSE term (0 = pure GST, the paper's setting;
            the MSE module is then not evaluated).
        mse_warmup_iters: the first ``mse_warmup_iters`` training steps train on
            the head's MSE alone (weight 1; ``loss_transport`` is logged as 0), then
            GST takes over (docs/pose.md: from random init, pure GST on a spatial
            softmax first learns the image-independent joint prior).
        nonneg: ``'softmax'`` (default), ``'softplus'``, ``'relu'`` or ``'abs'``:
            how raw heatmaps become non-negative mass (see
            :func:`gst_mm.models.heads.joint_transport.nonnegative`). Decoding
            and scores read the same density (:class:`DensityHeatmapHead`).
        init_mass: mass a channel holds when the raw output is 0 (``softplus``
            only; ``None`` = plain softplus).
        score, score_radius: keypoint scores, see :class:`DensityHeatmapHead`
            (default: the mass around the peak, on MMPose's 0-1 scale).
        dead_mass, collapse_window: collapse-guard threshold (mass units) and
            window (training steps; MMEngine's default logging interval).
        **kwargs: every :class:`HeatmapHead` argument.
    """

    def __init__(self,
                 *args,
                 transport_weight: float = 1.0,
                 mse_weight: float = 0.0,
                 nonneg: str = DEFAULT_NONNEG,
                 init_mass: Optional[float] = 1.0,
                 score: str = 'mass',
                 score_radius: int = 2,
                 mse_warmup_iters: int = 0,
                 dead_mass: float = 1e-3,
                 collapse_window: int = 50,
                 **kwargs) -> None:
        super().__init__(*args, nonneg=nonneg, init_mass=init_mass, score=score,
                         score_radius=score_radius, **kwargs)
        if transport_weight < 0 or mse_weight < 0 or mse_warmup_iters < 0:
            raise ValueError('GSTHeatmapHead: loss weights and mse_warmup_iters must be >= 0')
        self.mse_warmup_iters = int(mse_warmup_iters)
        self._train_steps = 0  # training-mode loss calls so far (warm-up counter)
        self.transport_weight = float(transport_weight)
        self.mse_weight = float(mse_weight)
        self.dead_mass = float(dead_mass)
        self.collapse_window = int(collapse_window)
        self._dead_steps: Optional[Tensor] = None  # consecutive dead steps per channel
        self._warned: set = set()

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

    def train_iter(self) -> int:
        """The runner's training iteration (MMEngine's ``RuntimeInfoHook`` puts it in
        the message hub, so a resumed run continues the warm-up where it stopped);
        outside a runner, the number of training-mode loss calls so far."""
        from mmengine.logging import MessageHub
        it = MessageHub.get_current_instance().get_info('iter')
        return int(it) if it is not None else self._train_steps

    def collapse_guard(self, mass: Tensor, weights: Tensor) -> None:
        """Count, per channel, consecutive steps in which every supervised sample's
        mass ``(B, J)`` is below ``dead_mass``; warn once per channel when the count
        reaches ``collapse_window``."""
        used = weights > 0
        if not used.any():
            return
        dead = ((mass < self.dead_mass) | ~used).all(0) & used.any(0)
        seen = used.any(0)
        if self._dead_steps is None or self._dead_steps.numel() != dead.numel():
            self._dead_steps = torch.zeros(dead.numel(), dtype=torch.long)
        steps = self._dead_steps
        d, s = dead.cpu(), seen.cpu()
        steps[d] += 1
        steps[s & ~d] = 0
        for j in torch.nonzero(steps >= self.collapse_window).flatten().tolist():
            if j in self._warned:
                continue
            self._warned.add(j)
            print_log(
                f'GSTHeatmapHead: heatmap channel {j} has held less than {self.dead_mass} '
                f'mass (of 1) on every sample for {int(steps[j])} steps: the channel is '
                f"dead (nonneg='{self.nonneg}'). The loss of this joint has no gradient; "
                "use nonneg='softmax' (the default) or restart from a checkpoint "
                'before the collapse.', logger='current', level=logging.WARNING)

    def loss(self,
             feats: Tuple[Tensor],
             batch_data_samples: OptSampleList,
             train_cfg: ConfigType = {}) -> dict:
        """Transport (+ optional MSE) loss terms and PCK accuracy of a batch.

        Returns:
            ``dict(loss_transport, [loss_mse,] acc_pose, joint_mass, mass_on_joint)``.
        """
        pred_fields = self.forward(feats)
        kernels = self._stack_field(batch_data_samples, KERNEL_KEY).to(pred_fields)
        gt_heatmaps = self._stack_field(batch_data_samples, 'heatmaps').to(pred_fields)
        keypoint_weights = torch.cat([
            d.gt_instance_labels.keypoint_weights for d in batch_data_samples
        ]).to(pred_fields)

        weights = self.joint_weights(kernels, keypoint_weights)
        density = self.density(pred_fields)
        transport = weighted_joint_mean(joint_transport_losses(density, kernels), weights)
        warmup = self.training and self.train_iter() < self.mse_warmup_iters
        if self.training:
            self._train_steps += 1
        # during the MSE warm-up the transport term carries weight 0 (logged as 0)
        losses = dict(loss_transport=self.transport_weight * transport * (0.0 if warmup else 1.0))
        if self.mse_weight > 0 or warmup:
            mse = self.loss_module(pred_fields, gt_heatmaps, keypoint_weights)
            if isinstance(mse, dict):
                mse = sum(mse.values())
            losses['loss_mse'] = (1.0 if warmup else self.mse_weight) * mse

        with torch.no_grad():
            mass = density.flatten(2).sum(-1)
            if self.training:
                self.collapse_guard(mass, weights)
            used = weights > 0
            on_joint = (kernels * density).flatten(2).sum(-1)
            zero = mass.new_zeros(())
            losses['joint_mass'] = mass[used].mean() if used.any() else zero
            losses['mass_on_joint'] = on_joint[used].mean() if used.any() else zero
        if train_cfg.get('compute_acc', True):
            losses['acc_pose'] = self.pose_accuracy(pred_fields, gt_heatmaps, keypoint_weights)
        return losses
