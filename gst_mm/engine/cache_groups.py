"""Data set -> Gaussian fit samples, grouped by the cache they belong to.

* :func:`cache_groups`: every leaf of a data set's wrappers (Concat / Repeat /
  ClassBalanced, nested) in the cache of its own ``data_root``, one
  :class:`GaussianSample` per unique image (all annotations of an image together);
* :func:`collect_gaussian_samples`, :func:`dataset_data_root`,
  :func:`dataset_cache_dir`: the single-root shortcuts.

Raw data infos are read without running the pipeline.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from gst_mm.splatting import GaussianCache, GaussianSample, default_cache_dir
from gst_mm.splatting.cache import relative_key


def _unwrap(dataset):
    """Yield the leaf data sets of wrappers, each once: MMEngine's ``ConcatDataset`` /
    MMPose's ``CombinedDataset`` (``.datasets``), ``RepeatDataset`` and
    ``ClassBalancedDataset`` (``.dataset``), nested to any depth."""
    from mmengine.dataset import BaseDataset, ClassBalancedDataset, RepeatDataset
    seen = set()

    def walk(ds):
        if hasattr(ds, 'datasets'):
            for sub in ds.datasets:
                yield from walk(sub)
        elif isinstance(ds, (RepeatDataset, ClassBalancedDataset)) or (
                hasattr(ds, 'dataset') and not isinstance(ds, BaseDataset)):
            yield from walk(ds.dataset)
        elif id(ds) not in seen:
            seen.add(id(ds))
            yield ds

    yield from walk(dataset)


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


@dataclass
class CacheGroup:
    """The images of one data root and the Gaussian cache they belong to.

    Attributes:
        data_root: cache keys are image paths relative to it (``None``: absolute).
        cache_dir: the cache folder (default ``<data_root>/gst_cache``).
        samples: one :class:`GaussianSample` per unique image, in data-set order.
    """
    data_root: Optional[str]
    cache_dir: str
    samples: List[GaussianSample] = field(default_factory=list)

    def cache(self) -> GaussianCache:
        return GaussianCache(self.cache_dir, data_root=self.data_root)


def _leaf_cache(leaf, cache_dir: Optional[str], data_root: Optional[str], plan: str = 'hard'
                ) -> Tuple[Optional[str], str]:
    """``(key root, cache dir)`` of one leaf data set: ``data_root`` else the leaf's
    own, and ``cache_dir`` else ``<root>/gst_cache`` (``gst_cache_soft`` for the soft
    plan)."""
    root = data_root or getattr(leaf, 'data_root', None) or None
    return root, cache_dir or default_cache_dir(root, plan)


def cache_groups(dataset, cache_dir: Optional[str] = None,
                 data_root: Optional[str] = None, plan: str = 'hard') -> List[CacheGroup]:
    """Group a data set's raw annotations by image into fit samples, per cache.

    Every leaf of the data set's wrappers (Concat / Repeat / ClassBalanced, nested)
    belongs to the cache of its own ``data_root``: ``cache_dir`` (when given, for
    one root only) else ``<data_root>/gst_cache``, the folder ``LoadCrowdGaussians``
    reads for that sample. Repeated infos are fitted once; all points of all
    instances of one image are fitted together (method.md 5: every visible joint of
    every person). Raw data infos are read without running the pipeline.

    Args:
        dataset: a built data set (crowd, MMPose or a wrapper of them).
        cache_dir: one cache for every image (a data set with one data root).
        data_root: key root for every image (default: each leaf's own).
        plan: ``'hard'`` | ``'soft'``: which default cache folder (``gst_cache`` |
            ``gst_cache_soft``).

    Raises:
        ValueError: ``cache_dir`` given for leaves with different data roots, or
            one image listed by two leaves with different annotations.
    """
    groups: 'OrderedDict[Tuple[Optional[str], str], CacheGroup]' = OrderedDict()
    # image -> (its group, {leaf: point parts}) in data-set order
    images: 'OrderedDict[str, Tuple[CacheGroup, Dict[int, List[np.ndarray]]]]' = OrderedDict()
    for leaf in _unwrap(dataset):
        if hasattr(leaf, 'full_init'):
            leaf.full_init()
        group_key = _leaf_cache(leaf, cache_dir, data_root, plan)
        root = group_key[0]
        group = groups.setdefault(group_key, CacheGroup(root, group_key[1]))
        # data_list is emptied when a data set serialises it: read through get_data_info
        for idx in range(len(leaf)):
            info = leaf.get_data_info(idx)
            _, parts = images.setdefault(info['img_path'], (group, {}))
            parts.setdefault(id(leaf), []).append(_points_of(info))
    if cache_dir and len(groups) > 1:
        roots = ', '.join(repr(r) for r, _ in groups)
        raise ValueError(f'cache_dir {cache_dir!r} is given for a data set with several data '
                         f'roots ({roots}); leave cache_dir unset so each part uses its own '
                         '<data_root>/gst_cache')
    for img_path, (group, parts) in images.items():
        per_leaf = [np.concatenate(p, 0) for p in parts.values()]
        points = per_leaf[0]
        if any(p.shape != points.shape or not np.array_equal(p, points) for p in per_leaf[1:]):
            raise ValueError(f'{img_path} is listed by {len(per_leaf)} data sets with different '
                             'annotations; a Gaussian cache entry belongs to one annotation')
        key = (relative_key(img_path, group.data_root) if group.data_root else None) or img_path
        group.samples.append(GaussianSample(key, img_path, points))
    return list(groups.values())


def collect_gaussian_samples(dataset) -> Tuple[List[GaussianSample], Optional[str]]:
    """``(samples, data_root)`` of a data set with one data root (see
    :func:`cache_groups`, which also serves wrappers of several roots)."""
    groups = cache_groups(dataset)
    if len(groups) != 1:
        raise ValueError(f'the data set has {len(groups)} data roots; use cache_groups')
    return groups[0].samples, groups[0].data_root


def dataset_data_root(dataset) -> Optional[str]:
    """``data_root`` of a data set (of its first leaf with one, through wrappers)."""
    for leaf in _unwrap(dataset):
        root = getattr(leaf, 'data_root', None)
        if root:
            return root
    return None


def dataset_cache_dir(dataset, cache_dir: Optional[str] = None,
                      data_root: Optional[str] = None, plan: str = 'hard') -> str:
    """The Gaussian cache(s) of ``dataset`` as one string (``', '``-joined when its
    parts have several data roots): ``cache_dir`` when given, else each
    ``<data_root>/gst_cache`` (the folders ``LoadCrowdGaussians`` reads by default)."""
    if cache_dir:
        return cache_dir
    dirs = [_leaf_cache(leaf, None, data_root, plan)[1] for leaf in _unwrap(dataset)]
    return ', '.join(dict.fromkeys(dirs))
