"""Point-supervised density counter (method.md 6) as an MMEngine ``BaseModel``.

Modes of :meth:`DensityCounter.forward`:

- ``'loss'``: density of the (cropped, augmented) batch -> the configured counting
  loss (GST or any baseline; one call signature, docs/architecture.md).
- ``'predict'``: density and count of each image; images larger than
  ``test_cfg['tile_size']`` are split into tiles whose densities are stitched
  (so counts are summed over tiles, *(ref)* behaviour).
- ``'tensor'``: the raw density ``(B, 1, H // s, W // s)``.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModel

from gst_mm.registry import MODELS

#: ImageNet statistics in RGB order, on the 0-255 scale (MMEngine's ImgDataPreprocessor).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

DEFAULT_DATA_PREPROCESSOR = dict(
    type='ImgDataPreprocessor', mean=IMAGENET_MEAN, std=IMAGENET_STD, bgr_to_rgb=True)


def tile_bounds(length: int, tile_size: int, align: int) -> List[Tuple[int, int]]:
    """Split ``[0, length)`` into the fewest near-equal tiles no longer than ``tile_size``.

    Inner boundaries are multiples of ``align`` (input px), so every tile starts
    on a cell of the stride-``s`` density grid when ``align`` is a multiple of
    ``s`` and the stitched map has exactly ``length // s`` cells.

    Args:
        length: image extent along one axis, input px.
        tile_size: largest tile extent, input px (a multiple of ``align``).
        align: boundary granularity, input px.

    Returns:
        ``[(start, stop), ...]`` covering ``[0, length)`` in order.
    """
    if tile_size < align or tile_size % align:
        raise ValueError(f'tile_size {tile_size} must be a positive multiple of {align}')
    if length <= tile_size:
        return [(0, length)]
    n = math.ceil(length / tile_size)
    cuts = [0]
    for k in range(1, n):
        cut = int(round(k * length / n / align)) * align
        cuts.append(min(max(cut, cuts[-1] + align), length))
    cuts.append(length)
    # a rounding may leave a last tile longer than tile_size by < align: add a tile
    bounds = [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    if any(b - a > tile_size for a, b in bounds):
        return tile_bounds(length, tile_size - align, align) if tile_size > align else bounds
    return bounds


@MODELS.register_module()
class DensityCounter(BaseModel):
    """Crowd counter: backbone density regressor + point-supervised counting loss.

    Args:
        backbone: config of the density regressor (e.g. ``VGG19Regressor``); it
            maps ``(B, 3, H, W)`` to a non-negative ``(B, 1, H // s, W // s)``
            density and exposes its ``stride`` ``s`` (default 8).
        loss: config of a counting loss (``GSTLoss``, ``PseudoDensityL2Loss``,
            ``BayesianLoss``, ``DMCountLoss``, ``UOTLoss``), called as
            ``loss(density, points, kernels=..., targets=..., stride=s,
            image_shapes=...)`` (``image_shapes``: each sample's ``ori_shape``).
        data_preprocessor: default ImageNet mean/std normalisation, BGR -> RGB.
        train_cfg: unused (kept for OpenMMLab config symmetry).
        test_cfg: ``dict(tile_size=512)``: images with a side larger than
            ``tile_size`` px are predicted tile by tile; ``tile_size=None``
            disables tiling.
        init_cfg: MMEngine init config of the whole model.
    """

    def __init__(self,
                 backbone: Dict,
                 loss: Dict,
                 data_preprocessor: Optional[Dict] = None,
                 train_cfg: Optional[Dict] = None,
                 test_cfg: Optional[Dict] = None,
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(DEFAULT_DATA_PREPROCESSOR)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.count_loss = MODELS.build(loss)
        self.train_cfg = dict(train_cfg or {})
        self.test_cfg = dict(test_cfg or {})
        self.test_cfg.setdefault('tile_size', 512)
        self.stride = int(getattr(self.backbone, 'stride', 8))
        # tile boundaries fall on the backbone's coarsest grid (stride 16 for VGG)
        self.tile_align = max(self.stride, int(getattr(self.backbone, 'trunk_stride', self.stride)))

    # ------------------------------------------------------------------ modes
    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[Sequence] = None,
                mode: str = 'tensor'):
        """Dispatch to :meth:`loss`, :meth:`predict` or the raw density (``'tensor'``).

        Args:
            inputs: ``(B, 3, H, W)`` normalised images (after the data preprocessor).
            data_samples: ``CountingDataSample`` list (loss / predict modes).
            mode: ``'loss'``, ``'predict'`` or ``'tensor'``.
        """
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.backbone(inputs)
        raise RuntimeError(f'DensityCounter: invalid mode "{mode}" '
                           "(use 'loss', 'predict' or 'tensor')")

    def loss(self, inputs: torch.Tensor, data_samples: Sequence) -> Dict[str, torch.Tensor]:
        """Counting loss of a batch.

        Reads from each data sample ``gt_points`` ``(N, 2)`` input px (x, y),
        ``point_targets`` ``(N,)`` (target masses, default ones) and, when every
        sample has one, ``transport_kernel`` (GST / heuristic plans).

        Returns:
            ``dict(loss=<scalar>, count_error=<mean |pred - target| count, detached>)``
            (plus any named terms the loss module returns as a dict, and the
            backbone's ``auxiliary_losses()`` when it has that method).
        """
        density = self.backbone(inputs)
        points = [self._points_of(ds, inputs.device) for ds in data_samples]
        targets = [self._targets_of(ds, p) for ds, p in zip(data_samples, points)]
        kernels = [ds.get('transport_kernel', None) for ds in data_samples]
        if any(k is None for k in kernels):
            kernels = None
        shapes = [ds.metainfo.get('ori_shape', None) for ds in data_samples]
        value = self.count_loss(density, points, kernels=kernels, targets=targets,
                                stride=self.stride,
                                image_shapes=None if any(s is None for s in shapes) else shapes)
        losses = dict(value) if isinstance(value, dict) else dict(loss=value)
        # backbones with training-time regularisers (VGG19TransformerRegressor's
        # attention variance) return them as named ``loss_*`` terms
        auxiliary = getattr(self.backbone, 'auxiliary_losses', None)
        if callable(auxiliary):
            losses.update(auxiliary())
        with torch.no_grad():
            pred = density.flatten(1).sum(1)
            gt = torch.stack([t.sum() for t in targets]).to(pred)
            losses['count_error'] = (pred - gt).abs().mean()
        return losses

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, data_samples: Optional[Sequence] = None) -> List:
        """Density and count of each image (tiled when larger than ``tile_size``).

        Sets on each data sample ``pred_density`` ``(1, H // s, W // s)`` (cells of
        the valid image region ``metainfo['img_shape']``, padding excluded) and
        ``pred_count`` (float, its sum). Without data samples, returns the
        densities.
        """
        densities = []
        for b in range(inputs.shape[0]):
            image = inputs[b:b + 1]
            if data_samples is not None and 'img_shape' in data_samples[b].metainfo:
                h, w = data_samples[b].metainfo['img_shape'][:2]
                image = image[..., :int(h), :int(w)]
            densities.append(self.predict_density(image)[0])
        if data_samples is None:
            return densities
        for ds, density in zip(data_samples, densities):
            ds.pred_density = density
            ds.pred_count = float(density.sum())
        return list(data_samples)

    def predict_density(self, image: torch.Tensor) -> torch.Tensor:
        """``(1, 3, H, W)`` -> ``(1, 1, H // s, W // s)``, tile by tile when large.

        Tiles follow :func:`tile_bounds` on each axis; each tile's density fills
        its own cells of the output, so the count is the sum of tile counts.
        """
        tile = self.test_cfg.get('tile_size')
        height, width = image.shape[-2:]
        if not tile or (height <= tile and width <= tile):
            return self.backbone(image)
        s = self.stride
        out = image.new_zeros((1, 1, height // s, width // s))
        for y0, y1 in tile_bounds(height, int(tile), self.tile_align):
            for x0, x1 in tile_bounds(width, int(tile), self.tile_align):
                part = self.backbone(image[..., y0:y1, x0:x1])
                out[..., y0 // s:y0 // s + part.shape[-2], x0 // s:x0 // s + part.shape[-1]] = part
        return out

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _points_of(data_sample, device: torch.device) -> torch.Tensor:
        """``gt_points`` of a sample as a float ``(N, 2)`` tensor on ``device``."""
        points = data_sample.get('gt_points', None)
        if points is None:
            name = data_sample.metainfo.get('img_path', '<unknown image>')
            raise KeyError(f'DensityCounter: data sample of {name} has no gt_points')
        return torch.as_tensor(points, dtype=torch.float32, device=device).reshape(-1, 2)

    @staticmethod
    def _targets_of(data_sample, points: torch.Tensor) -> torch.Tensor:
        """``point_targets`` ``(N,)`` (ones when absent), on the points' device."""
        targets = data_sample.get('point_targets', None)
        if targets is None:
            return points.new_ones(points.shape[0])
        targets = torch.as_tensor(targets, dtype=torch.float32, device=points.device).reshape(-1)
        if targets.shape[0] != points.shape[0]:
            name = data_sample.metainfo.get('img_path', '<unknown image>')
            raise ValueError(f'DensityCounter: {name} has {points.shape[0]} points but '
                             f'{targets.shape[0]} point_targets')
        return targets
