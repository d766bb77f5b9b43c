"""Crowd-counting transforms: load Gaussians, augment, pack.

Every geometric transform warps ``results['img']`` (MMCV's BGR ``(H, W, 3)``
uint8) and moves the annotations with one call of
:func:`.geometry.transform_results` (points, Gaussians, ground-truth
covariances and neighbourhood boxes, composing ``results['gst_affine']``), so
points and Gaussians cannot drift apart from the image.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from gst_mm.registry import TRANSFORMS
from gst_mm.splatting import GaussianCache, Gaussians2D, default_cache_dir, file_sha1_memo
from gst_mm.splatting.fit import fit_cfg_key
from gst_mm.structures import CountingDataSample

from .geometry import (
    AFFINE_KEY,
    GAUSSIANS_KEY,
    hflip,
    inside_fraction,
    scaling,
    select_points,
    transform_results,
    translation,
)


def _sample_name(results: dict) -> str:
    return str(results.get('img_path', results.get('img_id', '<unknown sample>')))


def _points(results: dict) -> np.ndarray:
    return np.asarray(results.get('points', np.zeros((0, 2))), np.float32).reshape(-1, 2)


@TRANSFORMS.register_module()
class LoadCrowdGaussians(BaseTransform):
    """Put one Gaussian per point in ``results['gaussians']`` (a ``Gaussians2D``).

    Must run before any geometric transform (the Gaussians are those of the
    original image). Kernel sources (``source``):

    - ``'fit'`` (GST): the fitted Gaussians of the HDF5 cache (``GSTPrecomputeHook``
      / ``tools/precompute.py``) of the fit ``plan``: ``'hard'`` (the paper, one
      pinned Gaussian per point, ``<data_root>/gst_cache``) or ``'soft'`` (free
      components with mixture weights per point, ``<data_root>/gst_cache_soft``;
      ``results['gaussians']`` is then a ``SoftGaussians``, docs/soft_kernel.md).
      The precompute hook fits the plan it finds here. Entries are checked by the
      cache's validity rule against the sample's points, the loaded image's size,
      the image file's content hash and (with ``fit_cfg``) the fit settings; a
      missing or stale entry raises ``GaussianCacheError`` naming the image, the
      reason and the repair command. Points the fit dropped (``drop_outside``) are
      dropped here too.
    - ``'gt'``: the data set's ``gt_covariances`` (ground-truth-scale kernel).
    - ``'heuristic'``: isotropic ``sigma`` px Gaussians (the ablation kernel).

    Args:
        cache_dir: cache root (``source='fit'``); default the sample's data set's
            ``<data_root>/gst_cache`` (``gst_cache_soft`` for the soft plan), where
            ``GSTPrecomputeHook`` and ``tools/precompute.py`` write by default.
        data_root: cache keys are image paths relative to it; default the sample's
            ``data_root`` (set by ``CrowdCountingDataset``).
        source: ``'fit'`` | ``'gt'`` | ``'heuristic'``.
        plan: the fit plan of ``source='fit'``: ``'hard'`` | ``'soft'``.
        sigma: std (px) of the heuristic kernel.
        fit_cfg: the precompute hook's ``fit_cfg``; when given, an entry fitted
            with other settings is stale (the hook refits such entries anyway).
    """

    SOURCES = ('fit', 'gt', 'heuristic')
    PLANS = ('hard', 'soft')
    #: the old one-word vocabulary (one value for source and plan), refused with a hint
    _OLD = {'gst': "source='fit', plan='hard'", 'soft': "source='fit', plan='soft'",
            'gt': "source='gt'", 'heuristic': "source='heuristic'"}

    def __init__(self, cache_dir: Optional[str] = None, data_root: Optional[str] = None,
                 source: str = 'fit', plan: str = 'hard', sigma: float = 8.0,
                 fit_cfg: Optional[dict] = None) -> None:
        if plan not in self.PLANS:
            hint = f'; write {self._OLD[plan]}' if plan in self._OLD else ''
            raise ValueError(f'LoadCrowdGaussians: plan must be one of {self.PLANS} (the fit '
                             f'plan), got {plan!r}{hint}')
        if source not in self.SOURCES:
            raise ValueError(f'LoadCrowdGaussians: source must be one of {self.SOURCES}, '
                             f'got {source!r}')
        if plan == 'soft' and source != 'fit':
            raise ValueError(f"LoadCrowdGaussians: plan='soft' needs source='fit', got "
                             f'source={source!r}')
        self.cache_dir = cache_dir
        self.data_root = data_root
        self.source = source
        self.plan = plan
        #: the fit plan this transform reads (``None``: no fitted Gaussians), which the
        #: precompute resolver fits (gst_mm.engine.precompute)
        self.fit_plan = plan if source == 'fit' else None
        self.sigma = float(sigma)
        self.fit_key = None if fit_cfg is None else fit_cfg_key(fit_cfg)
        self._caches: Dict[Tuple[str, Optional[str]], GaussianCache] = {}

    def cache_for(self, results: dict) -> GaussianCache:
        """The cache of a sample: ``cache_dir`` / ``data_root``, else the sample's data
        set's defaults."""
        data_root = self.data_root or results.get('data_root')
        if self.cache_dir:
            cache_dir = self.cache_dir
        elif data_root:
            cache_dir = default_cache_dir(data_root, self.plan)
        else:
            raise ValueError(f"{_sample_name(results)}: LoadCrowdGaussians source='fit' "
                             'needs a cache_dir, or a data set that sets data_root')
        key = (cache_dir, data_root)
        if key not in self._caches:
            # entries kept in memory per worker (a crowd entry: ~40 B per Gaussian)
            self._caches[key] = GaussianCache(cache_dir, data_root=data_root, memo=256)
        return self._caches[key]

    def transform(self, results: dict) -> dict:
        affine = results.get(AFFINE_KEY)
        if affine is not None and not np.allclose(affine, np.eye(3)):
            raise RuntimeError(f'{_sample_name(results)}: LoadCrowdGaussians must come before '
                               'the geometric transforms of the pipeline')
        points = _points(results)
        n = len(points)
        if self.source == 'heuristic':
            cov = np.broadcast_to(np.eye(2, dtype=np.float32) * self.sigma**2, (n, 2, 2))
            results[GAUSSIANS_KEY] = Gaussians2D(points, cov.copy())
        elif self.source == 'gt':
            cov = results.get('gt_covariances')
            if cov is None:
                raise KeyError(f"{_sample_name(results)}: source 'gt' needs gt_covariances in "
                               'the annotation')
            results[GAUSSIANS_KEY] = Gaussians2D(points, np.asarray(cov, np.float32))
        else:
            shape = results.get('ori_shape') or results['img'].shape[:2]
            gaussians, index = self.cache_for(results).load(
                results['img_path'], points=points, image_size=tuple(shape[:2]),
                image_sha1=file_sha1_memo(results['img_path']), fit_key=self.fit_key,
                plan=self.plan, return_index=True)
            index = np.asarray(index, np.int64)
            if len(index) != n:  # the fit dropped points (drop_outside): drop them too
                results[GAUSSIANS_KEY] = None
                select_points(results, index)
            results[GAUSSIANS_KEY] = gaussians
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(source={self.source!r}, plan={self.plan!r}, '
                f'cache_dir={self.cache_dir!r}, sigma={self.sigma})')


def _warp(results: dict, img: np.ndarray, matrix: np.ndarray) -> None:
    results['img'] = img
    transform_results(results, matrix, img.shape[:2])


@TRANSFORMS.register_module()
class CrowdRandomResize(BaseTransform):
    """Resize by a random factor ``s ~ U(scale_range)`` (both axes).

    Args:
        scale_range: ``(min, max)`` factor; method.md 6 uses 0.75-1.25.
        min_size: the short side is never made smaller than this (px), so a
            later crop still fits.
    """

    def __init__(self, scale_range: Tuple[float, float] = (0.75, 1.25), min_size: int = 0):
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.min_size = int(min_size)

    @cache_randomness
    def _factor(self) -> float:
        return float(np.random.uniform(*self.scale_range))

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        s = self._factor()
        if self.min_size:
            s = max(s, self.min_size / min(h, w))
        nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
        resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        _warp(results, resized, scaling(nw / w, nh / h))
        results['scale_factor'] = (nw / w, nh / h)
        return results


@TRANSFORMS.register_module()
class CrowdResize(BaseTransform):
    """Deterministic resize (e.g. for evaluation): by ``scale_factor``, or so the
    long side is at most ``max_size`` px (images already smaller are kept)."""

    def __init__(self, scale_factor: Optional[float] = None, max_size: Optional[int] = None):
        if (scale_factor is None) == (max_size is None):
            raise ValueError('CrowdResize: give exactly one of scale_factor and max_size')
        self.scale_factor = scale_factor
        self.max_size = max_size

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        s = self.scale_factor if self.scale_factor is not None else min(
            1.0, self.max_size / max(h, w))
        if s == 1.0:
            return results
        nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
        _warp(results, cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR),
              scaling(nw / w, nh / h))
        results['scale_factor'] = (nw / w, nh / h)
        return results


@TRANSFORMS.register_module()
class CrowdRandomCrop(BaseTransform):
    """Random crop with the crop-area targets of method.md 1.

    Each point's target mass becomes the fraction of its neighbourhood box
    (side = mean distance to its 3 nearest neighbours, Bayesian-loss
    convention, computed on the full image) inside the crop; points below
    ``min_inside`` are dropped with their Gaussians. Images smaller than the
    crop are zero-padded at the bottom/right first (coordinates unchanged).

    Args:
        crop_size: ``int`` or ``(h, w)`` px.
        min_inside: drop points whose neighbourhood is less inside than this.
    """

    def __init__(self, crop_size: Union[int, Sequence[int]], min_inside: float = 0.3):
        if isinstance(crop_size, int):
            crop_size = (crop_size, crop_size)
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.min_inside = float(min_inside)

    @cache_randomness
    def _offset(self, h: int, w: int) -> Tuple[int, int]:
        ch, cw = self.crop_size
        return int(np.random.randint(0, h - ch + 1)), int(np.random.randint(0, w - cw + 1))

    def transform(self, results: dict) -> dict:
        img = results['img']
        ch, cw = self.crop_size
        h, w = img.shape[:2]
        if h < ch or w < cw:
            pad = ((0, max(0, ch - h)), (0, max(0, cw - w))) + ((0, 0), ) * (img.ndim - 2)
            img = np.pad(img, pad)
            h, w = img.shape[:2]
        y0, x0 = self._offset(h, w)
        _warp(results, np.ascontiguousarray(img[y0:y0 + ch, x0:x0 + cw]),
              translation(-x0, -y0))
        frac = inside_fraction(results['neighbourhood_boxes'], cw, ch)
        targets = results.get('point_targets')
        targets = np.ones(len(frac), np.float32) if targets is None else np.asarray(targets)
        results['point_targets'] = (targets * frac).astype(np.float32)
        select_points(results, frac >= self.min_inside)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(crop_size={self.crop_size}, '
                f'min_inside={self.min_inside})')


class _RandomlyApplied(BaseTransform):
    """A transform applied with probability ``prob`` (the draw is cached like
    MMCV's other random parameters)."""

    def __init__(self, prob: float):
        self.prob = float(prob)

    @cache_randomness
    def _do(self) -> bool:
        return bool(np.random.rand() < self.prob)


@TRANSFORMS.register_module()
class CrowdRandomFlip(_RandomlyApplied):
    """Horizontal flip with probability ``prob`` (``x -> W - x``)."""

    def __init__(self, prob: float = 0.5):
        super().__init__(prob)

    def transform(self, results: dict) -> dict:
        flip = self._do()
        results['flip'] = flip
        if flip:
            img = results['img']
            _warp(results, np.ascontiguousarray(img[:, ::-1]), hflip(img.shape[1]))
        return results


@TRANSFORMS.register_module()
class RandomGrayscale(_RandomlyApplied):
    """Replace the image by its grey level (3 channels) with probability ``prob``
    (method.md 6: 12 %)."""

    def __init__(self, prob: float = 0.12):
        super().__init__(prob)

    def transform(self, results: dict) -> dict:
        if self._do():
            grey = cv2.cvtColor(results['img'], cv2.COLOR_BGR2GRAY)
            results['img'] = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
        return results


@TRANSFORMS.register_module()
class PackCountingInputs(BaseTransform):
    """``results`` -> ``dict(inputs=(3, H, W) uint8 tensor (BGR), data_samples=
    CountingDataSample)`` (fields documented on :class:`CountingDataSample`)."""

    def __init__(self, meta_keys: Sequence[str] = ('img_path', 'img_id', 'ori_shape',
                                                   'img_shape', 'scale_factor',
                                                   AFFINE_KEY, 'flip')):
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.ndim == 2:
            img = img[..., None]
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        points = _points(results)
        sample = CountingDataSample()
        sample.gt_points = torch.from_numpy(points.copy())
        targets = results.get('point_targets')
        if targets is None:
            sample.point_targets = torch.ones(len(points), dtype=torch.float32)
            sample.gt_count = float(results.get('ori_count', len(points)))
        else:
            sample.point_targets = torch.as_tensor(np.asarray(targets, np.float32))
            sample.gt_count = float(sample.point_targets.sum())
        if results.get('transport_kernel') is not None:
            sample.transport_kernel = results['transport_kernel']
        meta = {k: results[k] for k in self.meta_keys if k in results}
        meta.setdefault('img_shape', img.shape[:2])
        sample.set_metainfo(meta)
        return dict(inputs=inputs, data_samples=sample)
