"""The GST pose recipe: every setting ``tools/gstify_config.py`` writes into a config,
as one object (docs/pose.md, "Which setting").

:data:`PRESETS` holds the two shipped ones: ``'default'`` (the setting the pose
benchmark chose; gst_mm's extension of the paper) and ``'paper'`` (the paper's own:
``beta = 1``, L1 discrepancy, no transport cost, MMPose's decoder). A new option is one
field here plus where it lands (:meth:`PoseRecipe.head` or :meth:`PoseRecipe.transform`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional

from gst_mm.transport.joint_plan import DISCREPANCIES
from gst_mm.transport.point_plans import COST_KINDS

from .density_maps import DECODE_MODES, NONNEG_MODES


@dataclass(frozen=True)
class PoseRecipe:
    """GST settings of an MMPose top-down heatmap config.

    Attributes:
        beta: inverse temperature of the density, ``softmax(beta * raw)``.
        discrepancy: ``'l1'`` (the paper) or ``'log'`` (:mod:`gst_mm.transport.joint_plan`).
        cost_weight: weight of the plan's transport cost (0: the paper drops it).
        entropy_weight: weight of the plan's entropy (entropic regularisation; 0: none).
            With ``cost_weight`` the density settles as a Gaussian of variance
            ``entropy_weight / (2 cost_weight)`` cells^2 around the joint.
        cost: per-cell cost of the transform, ``'sqdist'`` | ``'mahalanobis'``;
            ``None`` when ``cost_weight`` is 0 (no cost maps are made).
        decode_mode: the head's decoder (``'codec'`` is MMPose's).
        decode_radius: the centroid decoder's window half-size, cells.
        nonneg: density map of the raw output.
        mse_weight: MMPose's MSE term mixed into the loss (0: pure GST).
        mse_warmup_iters: steps trained on MSE alone before GST (0: none).
        fit_iterations: Gaussian fit iterations per image (method.md 5).
    """
    beta: float = 8.0
    discrepancy: str = 'log'
    cost_weight: float = 0.2
    entropy_weight: float = 0.4
    cost: Optional[str] = 'sqdist'
    decode_mode: str = 'centroid'
    decode_radius: int = 2
    nonneg: str = 'softmax'
    mse_weight: float = 0.0
    mse_warmup_iters: int = 0
    fit_iterations: int = 1000

    def __post_init__(self) -> None:
        checks = [(self.beta > 0, f'beta must be > 0, got {self.beta}'),
                  (self.discrepancy in DISCREPANCIES,
                   f'discrepancy must be one of {DISCREPANCIES}, got {self.discrepancy!r}'),
                  (self.cost_weight >= 0, f'cost_weight must be >= 0, got {self.cost_weight}'),
                  (self.cost is None or self.cost in COST_KINDS,
                   f'cost must be one of {COST_KINDS} or None, got {self.cost!r}'),
                  (self.cost_weight == 0 or self.cost is not None,
                   f'cost_weight {self.cost_weight} needs a cost kind {COST_KINDS}'),
                  (self.entropy_weight >= 0,
                   f'entropy_weight must be >= 0, got {self.entropy_weight}'),
                  (self.decode_mode in DECODE_MODES,
                   f'decode_mode must be one of {DECODE_MODES}, got {self.decode_mode!r}'),
                  (self.decode_radius >= 0, 'decode_radius must be >= 0'),
                  (self.nonneg in NONNEG_MODES,
                   f'nonneg must be one of {NONNEG_MODES}, got {self.nonneg!r}'),
                  (self.mse_weight >= 0 and self.mse_warmup_iters >= 0,
                   'mse_weight and mse_warmup_iters must be >= 0'),
                  (self.fit_iterations > 0, 'fit_iterations must be > 0')]
        for ok, message in checks:
            if not ok:
                raise ValueError(f'PoseRecipe: {message}')

    def replace(self, **changes: Any) -> 'PoseRecipe':
        """A copy with ``changes`` (``None`` values are ignored: "not given")."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def head(self, mse_loss: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The ``GSTHeatmapHead`` fields (merged onto the source's ``HeatmapHead``).

        ``mse_loss``: the source head's own loss config (MMPose's MSE), kept as the
        warm-up / mix term."""
        loss = dict(_delete_=True, type='gst_mm.JointTransportLoss',
                    discrepancy=self.discrepancy, cost_weight=float(self.cost_weight),
                    entropy_weight=float(self.entropy_weight))
        out = dict(type='gst_mm.GSTHeatmapHead', loss=loss, beta=float(self.beta),
                   nonneg=self.nonneg, decode_mode=self.decode_mode)
        if self.decode_mode == 'centroid':
            out['decode_radius'] = int(self.decode_radius)
        out.update(mse_weight=float(self.mse_weight),
                   mse_warmup_iters=int(self.mse_warmup_iters))
        if mse_loss is not None:
            out['mse_loss'] = dict(mse_loss)
        return out

    def transform(self) -> Dict[str, Any]:
        """The ``LoadPoseTransportKernel`` fields that depend on the recipe."""
        return dict(cost=self.cost if self.cost_weight > 0 else None)


#: the shipped recipes (docs/pose.md has the measurements behind 'default')
PRESETS: Dict[str, PoseRecipe] = {
    'default': PoseRecipe(),
    'paper': PoseRecipe(beta=1.0, discrepancy='l1', cost_weight=0.0, entropy_weight=0.0,
                        cost=None, decode_mode='codec'),
}
