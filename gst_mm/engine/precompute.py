"""Data set -> Gaussian fit samples, and "fit what is missing" for a data set.

Shared by :class:`gst_mm.engine.hooks.GSTPrecomputeHook` and ``tools/precompute.py``.
The fitting itself is :func:`gst_mm.splatting.fit_missing` (pure core).
"""
from __future__ import annotations

import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np

from gst_mm.splatting import (
    CacheKeyError,
    GaussianCache,
    GaussianSample,
    PrecomputeSummary,
    default_cache_dir,
    fit_missing,
)
from gst_mm.splatting.cache import relative_key


def _unwrap(dataset):
    """Yield the leaf data sets of MMEngine wrappers (Concat/Repeat/ClassBalanced)."""
    if hasattr(dataset, 'datasets'):
        for sub in dataset.datasets:
            yield from _unwrap(sub)
    elif hasattr(dataset, 'dataset') and not hasattr(dataset, 'get_data_info'):
        yield from _unwrap(dataset.dataset)
    else:
        yield dataset


def _points_of(info: dict) -> np.ndarray:
    """Annotation points (N, 2) (x, y) in image pixels of one raw data info.

    Crowd data infos carry ``points`` (already in the splatting convention,
    pixel centres at +0.5); MMPose ones ``keypoints (I, K, 2)`` with
    ``keypoints_visible (I, K)``: only visible joints are pinned, and MMPose's
    pixel indices (centres at integers) are shifted by +0.5.
    """
    if 'points' in info:
        return np.asarray(info['points'], dtype=np.float32).reshape(-1, 2)
    if 'keypoints' in info:
        kpts = np.asarray(info['keypoints'], dtype=np.float32).reshape(-1, 2)
        vis = info.get('keypoints_visible')
        if vis is None:
            return kpts + 0.5
        vis = np.asarray(vis, dtype=np.float32).reshape(-1)
        return kpts[vis > 0] + 0.5
    raise KeyError(
        f"data info of {info.get('img_path', '<unknown image>')} has neither "
        "'points' nor 'keypoints'")


def collect_gaussian_samples(dataset) -> Tuple[List[GaussianSample], Optional[str]]:
    """Group a data set's raw annotations by image into fit samples.

    All points of all instances of one image are fitted together (method.md 5:
    every visible joint of every person). Raw data infos are read without
    running the pipeline.

    Returns:
        ``(samples, data_root)``: samples in data-set order, one per image, and
        the data set's ``data_root`` (cache keys are relative to it).
    """
    grouped: 'OrderedDict[str, List[np.ndarray]]' = OrderedDict()
    data_root = dataset_data_root(dataset)
    for leaf in _unwrap(dataset):
        if hasattr(leaf, 'full_init'):
            leaf.full_init()
        # data_list is emptied when a data set serialises it: read through get_data_info
        for idx in range(len(leaf)):
            info = leaf.get_data_info(idx)
            img_path = info['img_path']
            grouped.setdefault(img_path, []).append(_points_of(info))
    samples = []
    for img_path, parts in grouped.items():
        key = osp.relpath(img_path, data_root) if data_root else img_path
        points = np.concatenate(parts, axis=0) if parts else np.zeros((0, 2), np.float32)
        samples.append(GaussianSample(key=key, img_path=img_path, points=points))
    return samples, data_root


def dataset_data_root(dataset) -> Optional[str]:
    """``data_root`` of a data set (of its first leaf with one, through wrappers)."""
    for leaf in _unwrap(dataset):
        root = getattr(leaf, 'data_root', None)
        if root:
            return root
    return None


def dataset_cache_dir(dataset, cache_dir: Optional[str] = None,
                      data_root: Optional[str] = None) -> str:
    """The Gaussian cache of ``dataset``: ``cache_dir`` when given, else
    ``<data_root>/gst_cache`` with ``data_root`` defaulting to the data set's own (the
    folder ``LoadCrowdGaussians`` reads by default)."""
    return cache_dir or default_cache_dir(data_root or dataset_data_root(dataset))


def check_under_root(samples: List[GaussianSample], data_root: str,
                     dataset_root: Optional[str] = None) -> None:
    """Raise a one-line :class:`gst_mm.splatting.CacheKeyError` when an image of
    ``samples`` lies outside ``data_root`` (the cache keys' root), naming both roots.

    Catches, before any fitting, a data set moved without its cache settings
    (e.g. ``train_dataloader.dataset.data_root`` overridden alone while
    ``gaussian_data_root`` still names the old place), which would otherwise key
    the cache by absolute paths somewhere else.
    """
    for s in samples:
        if relative_key(s.img_path, data_root) is None:
            where = f" (the data set's data_root is {dataset_root!r})" if dataset_root else ''
            raise CacheKeyError(
                f'image {s.img_path} is outside the Gaussian cache\'s data_root '
                f'{data_root!r}{where}; cache keys are image paths relative to it: set '
                'gaussian_data_root (hook and LoadPoseTransportKernel data_root) to the '
                "data set's data_root, or move every path at once with "
                '--cfg-options data_root=...')


def precompute_dataset(dataset,
                       cache_dir: Optional[str] = None,
                       fit_cfg: Optional[Dict] = None,
                       data_root: Optional[str] = None,
                       workers: int = 1,
                       shard: Tuple[int, int] = (0, 1),
                       progress: bool = True) -> PrecomputeSummary:
    """Fit and cache the Gaussians of every image of ``dataset`` that has no valid cache.

    Args:
        dataset: an MMEngine data set (crowd or MMPose), already built.
        cache_dir: root of the HDF5 Gaussian cache; default ``<data_root>/gst_cache``
            of the data set (:func:`gst_mm.splatting.default_cache_dir`).
        fit_cfg: keyword arguments of :func:`gst_mm.splatting.fit_gaussians`.
        data_root: cache keys are image paths relative to it; defaults to the
            data set's own ``data_root``.
        workers: fitting processes.
        shard: ``(k, n)``: fit only the k-th of n interleaved shards.
        progress: show a progress bar.
    """
    samples, ds_root = collect_gaussian_samples(dataset)
    root = data_root or ds_root
    cache = GaussianCache(dataset_cache_dir(dataset, cache_dir, root), data_root=root)
    if root:
        check_under_root(samples, root, ds_root)
    return fit_missing(samples, cache, dict(fit_cfg or {}), workers=workers, shard=shard,
                       progress=progress)
