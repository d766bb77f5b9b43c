"""One HDF5 file of fitted Gaussians per image, written atomically.

Layout of a cache file (``FORMAT_VERSION`` 1):

* datasets ``means (N, 2)`` px (x, y), ``covariances (N, 2, 2)`` px^2, ``colors (N, 3)``
  float32 and ``point_index (N,)`` int64 (index of each Gaussian's annotation point;
  ``arange(N)`` unless points outside the image were dropped);
* attributes ``format_version``, ``image_size`` ``(H, W)``, ``num_points`` (annotation
  points the fit was given), ``points_sha1`` (sha1 of the points as C-contiguous
  float32), ``fit_settings`` (json) and ``img_path``.

A file is *valid* for ``(img_path, points, image_size)`` when it opens, has this
layout and version, and its point count, point hash and image size match; anything
else is reported (:class:`GaussianCacheError` / :meth:`GaussianCache.check`) and
never silently used.
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
import uuid
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .gaussians import Gaussians2D

FORMAT_VERSION = 1
_DATASETS = ('means', 'covariances', 'colors', 'point_index')


class GaussianCacheError(RuntimeError):
    """A cache entry is missing, corrupt or stale (the message names the image)."""


def points_sha1(points: Optional[np.ndarray]) -> str:
    """sha1 hex digest of ``points`` as a C-contiguous float32 ``(N, 2)`` array."""
    arr = np.ascontiguousarray(np.asarray(points if points is not None else np.zeros((0, 2)),
                                          dtype=np.float32).reshape(-1, 2))
    return hashlib.sha1(arr.tobytes()).hexdigest()


class CacheKeyError(ValueError):
    """An image lies outside the cache's ``data_root``: no relative key exists.

    A configuration error (not a missing or stale entry), so it is never
    swallowed by :meth:`GaussianCache.check` and stops a precompute run before
    any fitting."""


def relative_key(img_path: str, data_root: str) -> Optional[str]:
    """``img_path`` relative to ``data_root`` (both made absolute), or ``None`` when
    the image lies outside it: the one "under the root" rule of cache keys."""
    rel = osp.relpath(osp.abspath(str(img_path)), osp.abspath(str(data_root)))
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return None
    return rel


#: name of the Gaussian cache folder inside a data set's root (the default cache)
CACHE_DIRNAME = 'gst_cache'


def default_cache_dir(data_root: str) -> str:
    """The default Gaussian cache of the data set at ``data_root``: ``<data_root>/gst_cache``
    (the cache lives with its data set; configs need not name it)."""
    if not data_root:
        raise ValueError('no data_root to place the default Gaussian cache in: '
                         'name a cache_dir')
    return osp.join(str(data_root), CACHE_DIRNAME)


class GaussianCache:
    """Directory of per-image Gaussian files.

    Args:
        root: cache directory.
        data_root: when given, an image's key is its path relative to ``data_root``
            (``root/<relative path>.h5``, portable: the data set and its cache can
            move together) and an image outside ``data_root`` is an error
            (:class:`CacheKeyError`: the cache would otherwise be keyed by absolute
            paths, typically because a data set's ``data_root`` was changed without
            the cache's). Without ``data_root`` the absolute image path is
            mirrored under ``root``.
    """

    def __init__(self, root: str, data_root: Optional[str] = None) -> None:
        self.root = osp.abspath(str(root))
        self.data_root = osp.abspath(str(data_root)) if data_root is not None else None

    def __repr__(self) -> str:
        return f'GaussianCache(root={self.root!r}, data_root={self.data_root!r})'

    # ------------------------------------------------------------------ paths
    def key(self, img_path: str) -> str:
        """Relative cache key of an image (``'a/b.jpg'``)."""
        if self.data_root is None:
            return osp.abspath(str(img_path)).lstrip(os.sep)
        rel = relative_key(img_path, self.data_root)
        if rel is None:
            raise CacheKeyError(
                f'{img_path} is not under the Gaussian cache\'s data_root {self.data_root} '
                '(cache keys are image paths relative to it): the data set\'s data_root and '
                'gaussian_data_root disagree; set both, or move every path at once with '
                '--cfg-options data_root=...')
        return rel

    def path_for(self, img_path: str) -> str:
        """Cache file of an image: ``root/<key>.h5``."""
        return osp.join(self.root, self.key(img_path) + '.h5')

    # ------------------------------------------------------------------ write
    def save(self, img_path: str, gaussians: Gaussians2D, points: np.ndarray,
             image_size: Tuple[int, int], fit_settings: Optional[Dict[str, Any]] = None,
             point_index: Optional[Sequence[int]] = None) -> str:
        """Write the Gaussians of one image atomically (temp file + ``os.replace``:
        a crash mid-write leaves the previous file untouched). Returns the path.

        Args:
            img_path: the image. gaussians: its fitted Gaussians.
            points: ``(N, 2)`` annotation points px the fit was given (hashed).
            image_size: ``(H, W)``. fit_settings: json-serialisable settings.
            point_index: annotation index of each Gaussian (default ``arange``).
        """
        import h5py
        arrays = gaussians.numpy()
        n = len(gaussians)
        if point_index is None:
            point_index = np.arange(n)
        point_index = np.asarray(point_index, np.int64).reshape(-1)
        if point_index.size != n:
            raise ValueError(f'{img_path}: point_index has {point_index.size} entries for '
                             f'{n} Gaussians')
        pts = np.asarray(points, np.float32).reshape(-1, 2)
        path = self.path_for(img_path)
        os.makedirs(osp.dirname(path), exist_ok=True)
        tmp = f'{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}'
        try:
            with h5py.File(tmp, 'w') as f:
                for name in ('means', 'covariances', 'colors'):
                    f.create_dataset(name, data=arrays[name])
                f.create_dataset('point_index', data=point_index)
                f.attrs['format_version'] = FORMAT_VERSION
                f.attrs['image_size'] = np.asarray(image_size, np.int64)
                f.attrs['num_points'] = int(len(pts))
                f.attrs['points_sha1'] = points_sha1(pts)
                f.attrs['fit_settings'] = json.dumps(fit_settings or {}, sort_keys=True,
                                                     default=str)
                f.attrs['img_path'] = str(img_path)
            os.replace(tmp, path)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)
        return path

    # ------------------------------------------------------------------ read
    def _read(self, img_path: str) -> Dict[str, Any]:
        """Read a file; raise :class:`GaussianCacheError` if missing or corrupt."""
        import h5py
        path = self.path_for(img_path)
        if not osp.exists(path):
            raise GaussianCacheError(f'{img_path}: no Gaussian cache ({path})')
        try:
            with h5py.File(path, 'r') as f:
                rec = {name: np.asarray(f[name]) for name in _DATASETS}
                attrs = dict(f.attrs)
            rec['format_version'] = int(attrs['format_version'])
            rec['image_size'] = tuple(int(v) for v in np.asarray(attrs['image_size']).reshape(2))
            rec['num_points'] = int(attrs['num_points'])
            rec['points_sha1'] = str(attrs['points_sha1'])
            rec['fit_settings'] = json.loads(attrs['fit_settings'])
        except Exception as e:  # noqa: BLE001 - any read failure means a corrupt file
            raise GaussianCacheError(f'{img_path}: corrupt Gaussian cache {path} '
                                     f'({type(e).__name__}: {e})') from e
        if rec['format_version'] != FORMAT_VERSION:
            raise GaussianCacheError(f'{img_path}: Gaussian cache {path} has format version '
                                     f"{rec['format_version']}, expected {FORMAT_VERSION}")
        n = rec['means'].shape[0]
        shapes_ok = (rec['means'].shape == (n, 2) and rec['covariances'].shape == (n, 2, 2)
                     and rec['colors'].shape == (n, 3) and rec['point_index'].shape == (n,)
                     and n <= rec['num_points'])
        if not shapes_ok:
            raise GaussianCacheError(f'{img_path}: corrupt Gaussian cache {path} '
                                     '(inconsistent array shapes)')
        rec['path'] = path
        return rec

    @staticmethod
    def _stale_reason(rec: Dict[str, Any], points: Optional[np.ndarray],
                      image_size: Optional[Tuple[int, int]]) -> Optional[str]:
        if points is not None:
            pts = np.asarray(points, np.float32).reshape(-1, 2)
            if len(pts) != rec['num_points']:
                return f"fitted for {rec['num_points']} points, annotations have {len(pts)}"
            if points_sha1(pts) != rec['points_sha1']:
                return 'annotation points changed since the fit'
        if image_size is not None and tuple(int(v) for v in image_size) != rec['image_size']:
            return f"fitted on a {rec['image_size']} image, image is {tuple(image_size)}"
        return None

    def check(self, img_path: str, points: Optional[np.ndarray] = None,
              image_size: Optional[Tuple[int, int]] = None) -> Optional[str]:
        """``None`` if the entry is valid, else why not (missing / corrupt / stale)."""
        try:
            rec = self._read(img_path)
        except GaussianCacheError as e:
            return str(e)
        reason = self._stale_reason(rec, points, image_size)
        if reason is None:
            return None
        return f"{img_path}: stale Gaussian cache {rec['path']} ({reason})"

    def is_valid(self, img_path: str, points: Optional[np.ndarray] = None,
                 image_size: Optional[Tuple[int, int]] = None) -> bool:
        """True if :meth:`load` would succeed for these arguments."""
        return self.check(img_path, points, image_size) is None

    def load(self, img_path: str, points: Optional[np.ndarray] = None,
             image_size: Optional[Tuple[int, int]] = None, *,
             return_index: bool = False):
        """Load the Gaussians of an image.

        Args:
            img_path: the image.
            points: if given, the entry must have been fitted from exactly these
                ``(N, 2)`` px points (count and float32 hash), else it is stale.
            image_size: if given, ``(H, W)`` must match.
            return_index: also return ``point_index (N,)``.

        Raises:
            GaussianCacheError: missing, corrupt or stale (message names the image).
        """
        rec = self._read(img_path)
        reason = self._stale_reason(rec, points, image_size)
        if reason is not None:
            raise GaussianCacheError(f"{img_path}: stale Gaussian cache {rec['path']} ({reason})")
        g = Gaussians2D(rec['means'], rec['covariances'], rec['colors'])
        return (g, rec['point_index']) if return_index else g

    def info(self, img_path: str) -> Dict[str, Any]:
        """Metadata of an entry (image size, point count, hash, fit settings, path)."""
        rec = self._read(img_path)
        return {k: rec[k] for k in ('format_version', 'image_size', 'num_points',
                                    'points_sha1', 'fit_settings', 'path')}
