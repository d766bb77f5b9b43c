"""MMPose heatmap head trained with GST's per-joint transport loss."""
from __future__ import annotations

import logging
from typing import Optional, Tuple

import torch
from mmengine.logging import print_log
from mmpose.utils.typing import ConfigType, OptSampleList
from torch import Tensor

from gst_mm.registry import MODELS
from gst_mm.transport.joint_plan import COST_KEY, KERNEL_KEY

from .density_heatmap_head import DensityHeatmapHead
from .density_maps import DEFAULT_NONNEG


@MODELS.register_module()
class GSTHeatmapHead(DensityHeatmapHead):
    """A :class:`mmpose.models.heads.HeatmapHead` trained with GST's per-joint
    transport loss (method.md 5).

    Forward is HeatmapHead's own, so flip test, ``shift_heatmap``,
    ``output_heatmaps`` and ``MpiiPCKAccuracy`` work unchanged and a checkpoint
    of either head loads into the other; decoding and keypoint scores read the
    density ``d = softmax(beta * raw)`` (:class:`DensityHeatmapHead`).

    Training needs ``gt_fields.gst_kernels (J, h, w)`` per sample (and
    ``gt_fields.gst_costs`` when the loss has a cost term), produced by
    :class:`gst_mm.datasets.transforms.LoadPoseTransportKernel` placed after
    ``GenerateTarget``, plus MMPose's usual ``gt_fields.heatmaps`` and
    ``gt_instance_labels.keypoint_weights`` (for the optional MSE term and
    ``acc_pose``).

    Loss: the ``loss`` module, MMPose's pattern (default
    :class:`gst_mm.models.losses.JointTransportLoss`: per joint
    ``D(sum K_fg d, sum (1 - K_fg) d) + cost_weight * sum d K_fg c``), called as
    ``loss(density, kernels, keypoint_weights, costs)`` and returning its terms
    (``loss_transport``, ``loss_cost``). Logged besides: ``loss_mse`` (when
    ``mse_weight > 0`` or during the warm-up; ``mse_loss``, MMPose's
    ``KeypointMSELoss`` on its Gaussian targets: ~1e-3, three orders of magnitude
    below the transport term), ``acc_pose`` (MMPose's PCK on the targets),
    ``joint_mass`` (mean mass per visible joint channel: 1 by construction for
    ``softmax``, 0 for a dead ``relu`` model) and ``mass_on_joint`` (mean ``sum K_fg
    d``: the mass transported to the joint). MMEngine sums every ``loss*`` key.

    Collapse guard: a joint channel whose mass stays below ``dead_mass`` on every
    visible sample for ``collapse_window`` consecutive training steps triggers a
    one-time warning naming the channel.

    Args:
        loss: the transport loss config (``gst_mm.JointTransportLoss`` by default).
        mse_loss: the MSE loss config (MMPose's ``KeypointMSELoss``), used for the
            warm-up and ``mse_weight``.
        mse_weight: weight of the MSE term (0 = pure GST, the paper's setting; the
            MSE module is then not evaluated after the warm-up).
        mse_warmup_iters: the first ``mse_warmup_iters`` training steps train on
            ``mse_loss`` alone (weight 1; the transport terms are logged as 0), then
            GST takes over.
        nonneg, init_mass, beta: how raw heatmaps become mass, ``nonneg(beta * raw)``
            (:func:`gst_mm.models.heads.density_maps.nonnegative`); decoding and scores
            read the same density.
        score, score_radius, decode_mode, decode_radius: keypoint scores and decoder,
            see :class:`DensityHeatmapHead`.
        dead_mass, collapse_window: collapse-guard threshold (mass units) and
            window (training steps; MMEngine's default logging interval).
        **kwargs: every :class:`HeatmapHead` argument.
    """

    def __init__(self,
                 *args,
                 loss: ConfigType = dict(type='gst_mm.JointTransportLoss'),
                 mse_loss: ConfigType = dict(type='KeypointMSELoss', use_target_weight=True),
                 mse_weight: float = 0.0,
                 nonneg: str = DEFAULT_NONNEG,
                 init_mass: Optional[float] = 1.0,
                 score: str = 'mass',
                 score_radius: int = 2,
                 mse_warmup_iters: int = 0,
                 dead_mass: float = 1e-3,
                 collapse_window: int = 50,
                 **kwargs) -> None:
        super().__init__(*args, loss=loss, nonneg=nonneg, init_mass=init_mass, score=score,
                         score_radius=score_radius, **kwargs)
        if not hasattr(self.loss_module, 'needs_costs'):
            raise TypeError(
                f'GSTHeatmapHead: loss must be a per-joint transport loss '
                f"(dict(type='gst_mm.JointTransportLoss', ...)), got "
                f'{type(self.loss_module).__name__}; the MSE term is mse_loss=dict(...) '
                "(a config merged onto MMPose's head needs loss=dict(_delete_=True, ...))")
        if mse_weight < 0 or mse_warmup_iters < 0:
            raise ValueError('GSTHeatmapHead: mse_weight and mse_warmup_iters must be >= 0')
        self.mse_module = MODELS.build(mse_loss)
        self.mse_warmup_iters = int(mse_warmup_iters)
        self._train_steps = 0  # training-mode loss calls so far (warm-up counter)
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
                if key in (KERNEL_KEY, COST_KEY):
                    extra = (" with a cost (cost='sqdist' or 'mahalanobis'), which the "
                             "loss's cost_weight > 0 needs," if key == COST_KEY else '')
                    raise KeyError(
                        f'GSTHeatmapHead: sample {where} has no gt_fields.{key}. Put '
                        f'LoadPoseTransportKernel{extra} in the train pipeline after '
                        'GenerateTarget (GenerateTarget resets the field mapping '
                        'table) and before PackPoseInputs.')
                raise KeyError(f'GSTHeatmapHead: sample {where} has no gt_fields.{key} '
                               '(is GenerateTarget in the train pipeline?)')
            out.append(fields.get(key))
        return torch.stack(out)

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
        """Transport (+ cost, + optional MSE) loss terms and PCK accuracy of a batch.

        Returns:
            ``dict(loss_transport, [loss_cost,] [loss_mse,] acc_pose, joint_mass,
            mass_on_joint)``.
        """
        pred_fields = self.forward(feats)
        kernels = self._stack_field(batch_data_samples, KERNEL_KEY).to(pred_fields)
        costs = (self._stack_field(batch_data_samples, COST_KEY).to(pred_fields)
                 if self.loss_module.needs_costs else None)
        gt_heatmaps = self._stack_field(batch_data_samples, 'heatmaps').to(pred_fields)
        keypoint_weights = torch.cat([
            d.gt_instance_labels.keypoint_weights for d in batch_data_samples
        ]).to(pred_fields)

        density = self.density(pred_fields)
        terms = self.loss_module(density, kernels, keypoint_weights, costs)
        warmup = self.training and self.train_iter() < self.mse_warmup_iters
        if self.training:
            self._train_steps += 1
        # during the MSE warm-up the transport terms carry weight 0 (logged as 0)
        losses = {k: v * (0.0 if warmup else 1.0) for k, v in terms.items()}
        if self.mse_weight > 0 or warmup:
            mse = self.mse_module(pred_fields, gt_heatmaps, keypoint_weights)
            if isinstance(mse, dict):
                mse = sum(mse.values())
            losses['loss_mse'] = (1.0 if warmup else self.mse_weight) * mse

        with torch.no_grad():
            weights = self.loss_module.joint_weights(kernels, keypoint_weights)
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
