"""One HDF5 file of fitted Gaussians per image, written atomically.

Layout of a cache file (``FORMAT_VERSION`` 3; version 2 files, which never hold a
soft plan, are read as they are):

* datasets ``means (N, 2)`` px (x, y), ``covariances (N, 2, 2)`` px^2, ``colors (N, 3)``
  float32 and ``point_index (N,)`` int64 (index of each Gaussian's annotation point;
  ``arange(N)`` unless points outside the image were dropped);
* for a soft plan (``fit_cfg=dict(plan='soft')``, docs/soft_kernel.md) also
  ``soft_means (M, 2)``, ``soft_covariances (M, 2, 2)``, ``soft_colors (M, 3)`` (the
  free components) and the sparse mixture weights ``soft_comp``, ``soft_pen`` (int64)
  and ``soft_weight`` (float32), all ``(E,)``; the datasets above are then the pinned
  fit's Gaussians (the anchors). Loading such an entry gives a
  :class:`.soft_gaussians.SoftGaussians`;
* attributes ``format_version``, ``image_size`` ``(H, W)`` of the decoded image,
  ``num_points`` (annotation points the fit was given), ``points_sha1`` (sha1 of the
  points as C-contiguous float32), ``image_sha1`` (sha1 of the image file's bytes),
  ``fit_key`` (:func:`gst_mm.splatting.fit.fit_settings_key` of the settings that
  change the result), ``fit_settings`` (json, for people) and ``img_path``.

**The validity rule** (:func:`stale_reason`, the one used by the precompute hook,
``tools/precompute.py`` and every loader): an entry is valid for an image when it
opens, has this layout and version, and every expectation the caller has matches:
the image file's content hash, the decoded image size, the annotation points (count
and hash) and the fit-settings key. Anything else is reported
(:class:`GaussianCacheError` / :meth:`GaussianCache.status`) and never silently used;
the hook and the tool refit it.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import os.path as osp
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from .cache_writers import (  # noqa: F401 (the writers' API, importable from here)
    _TMP_RE,
    CLAIM_SUFFIX,
    STALE_TMP_SECONDS,
    claim_entry,
    release_entry,
    remove_stale_temps,
)
from .gaussians import Gaussians2D
from .soft_gaussians import SoftGaussians

FORMAT_VERSION = 3
#: older versions read unchanged (their layout is a subset of this one)
READABLE_VERSIONS = (2, 3)
_DATASETS = ('means', 'covariances', 'colors', 'point_index')
_SOFT_DATASETS = ('soft_means', 'soft_covariances', 'soft_colors', 'soft_comp', 'soft_pen',
                  'soft_weight')


class GaussianCacheError(RuntimeError):
    """A cache entry is missing, corrupt or stale (the message names the image);
    ``kind`` is the failed rule of a stale entry (see :class:`CacheStatus`)."""

    def __init__(self, message: str, kind: Optional[str] = None) -> None:
        super().__init__(message)
        self.kind = kind


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


def default_cache_dir(data_root: str, plan: str = 'hard') -> str:
    """The default Gaussian cache of the data set at ``data_root``: ``<data_root>/gst_cache``
    (the cache lives with its data set; configs need not name it), and
    ``<data_root>/gst_cache_soft`` for the soft plan (docs/soft_kernel.md), so that the
    two plans' configs never refit each other's entries."""
    if not data_root:
        raise ValueError('no data_root to place the default Gaussian cache in: '
                         'name a cache_dir')
    if plan not in ('hard', 'soft'):
        raise ValueError(f"unknown plan {plan!r}; expected 'hard' or 'soft'")
    return osp.join(str(data_root), CACHE_DIRNAME + ('_soft' if plan == 'soft' else ''))


#: what a user runs to repair missing / stale entries (named in loader errors)
REPAIR_HINT = ('run `python tools/precompute.py CONFIG` (or train with GSTPrecomputeHook), '
               'which refits missing and stale entries')

#: cache entry states of :meth:`GaussianCache.status`
STATES = ('valid', 'missing', 'corrupt', 'stale')


@dataclass(frozen=True)
class CacheStatus:
    """State of one cache entry: ``state`` in :data:`STATES`; for a stale entry
    ``kind`` names the rule that failed (``'format'``, ``'image'``, ``'size'``,
    ``'points'``, ``'settings'``) and ``message`` says why, naming the image."""
    state: str
    message: Optional[str] = None
    kind: Optional[str] = None

    @property
    def valid(self) -> bool:
        return self.state == 'valid'


def stale_reason(rec: Dict[str, Any], points: Optional[np.ndarray] = None,
                 image_size: Optional[Tuple[int, int]] = None,
                 image_sha1: Optional[str] = None,
                 fit_key: Optional[str] = None,
                 plan: Optional[str] = None) -> Optional[Tuple[str, str]]:
    """The validity rule: ``None`` when a cache record matches every given
    expectation, else ``(kind, reason)`` of the first that fails.

    Args:
        rec: a record read from a cache file (:meth:`GaussianCache.read`).
        points: ``(N, 2)`` px annotation points the fit must have been given
            (count and float32 hash).
        image_size: ``(H, W)`` of the decoded image.
        image_sha1: sha1 of the image file's bytes (:func:`.image_io.file_sha1`).
        fit_key: :func:`gst_mm.splatting.fit.fit_settings_key` of the settings.
        plan: ``'hard'`` | ``'soft'``, the plan the entry must hold (a soft entry has
            the ``soft_*`` datasets).

    An expectation given as ``None`` is not checked.
    """
    if image_sha1 is not None and image_sha1 != rec['image_sha1']:
        return 'image', 'the image file changed since the fit (content hash differs)'
    if image_size is not None and tuple(int(v) for v in image_size) != rec['image_size']:
        return 'size', f"fitted on a {rec['image_size']} image, image is {tuple(image_size)}"
    if points is not None:
        pts = np.asarray(points, np.float32).reshape(-1, 2)
        if len(pts) != rec['num_points']:
            return 'points', (f"fitted for {rec['num_points']} points, annotations have "
                              f'{len(pts)}')
        if points_sha1(pts) != rec['points_sha1']:
            return 'points', 'annotation points changed since the fit'
    found = 'hard' if rec.get('soft') is None else 'soft'
    if plan is not None and plan != found:
        return 'plan', f'plan {plan!r} found a {found}-plan entry; fit it with this plan'
    if fit_key is not None and fit_key != rec['fit_key']:
        return 'settings', (f"fitted with other fit settings (key {rec['fit_key']}, "
                            f'expected {fit_key})')
    return None


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

    def __init__(self, root: str, data_root: Optional[str] = None, memo: int = 0) -> None:
        self.root = osp.abspath(str(root))
        self.data_root = osp.abspath(str(data_root)) if data_root is not None else None
        #: entries read, kept in memory: ``memo`` most recent (0 = none), keyed by the
        #: file's path and ``(inode, size, mtime_ns)`` so a replaced entry is read
        #: again (the training loaders, which read each entry once per epoch)
        self.memo = int(memo)
        self._memo: 'collections.OrderedDict[str, tuple]' = collections.OrderedDict()

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
    def save(self, img_path: str, gaussians: Union[Gaussians2D, SoftGaussians],
             points: np.ndarray,
             image_size: Tuple[int, int], fit_settings: Optional[Dict[str, Any]] = None,
             point_index: Optional[Sequence[int]] = None, *, image_sha1: str = '',
             fit_key: str = '') -> str:
        """Write the Gaussians of one image atomically (temp file + ``os.replace``:
        a crash mid-write leaves the previous file untouched and a temp file that
        :func:`remove_stale_temps` deletes later). Returns the path.

        Args:
            img_path: the image. gaussians: its fitted Gaussians (a
                :class:`.soft_gaussians.SoftGaussians` for the soft plan).
            points: ``(N, 2)`` annotation points px the fit was given (hashed).
            image_size: ``(H, W)`` of the decoded image.
            fit_settings: json-serialisable settings (informative).
            point_index: annotation index of each Gaussian (default ``arange``).
            image_sha1: sha1 of the image file's bytes the fit decoded.
            fit_key: key of the fit settings (:func:`gst_mm.splatting.fit.fit_settings_key`).
        """
        import h5py
        soft = gaussians.numpy() if isinstance(gaussians, SoftGaussians) else {}
        if soft:
            gaussians = gaussians.anchors
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
        tmp = f'{path}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}'
        try:
            with h5py.File(tmp, 'w') as f:
                for name in ('means', 'covariances', 'colors'):
                    f.create_dataset(name, data=arrays[name])
                f.create_dataset('point_index', data=point_index)
                for name, data in soft.items():
                    f.create_dataset(name, data=data)
                f.attrs['format_version'] = FORMAT_VERSION
                f.attrs['image_size'] = np.asarray(image_size, np.int64)
                f.attrs['num_points'] = int(len(pts))
                f.attrs['points_sha1'] = points_sha1(pts)
                f.attrs['image_sha1'] = str(image_sha1)
                f.attrs['fit_key'] = str(fit_key)
                f.attrs['fit_settings'] = json.dumps(fit_settings or {}, sort_keys=True,
                                                     default=str)
                f.attrs['img_path'] = str(img_path)
            os.replace(tmp, path)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)
        return path

    # ------------------------------------------------------------------ read
    def read(self, img_path: str) -> Dict[str, Any]:
        """Read an entry's arrays and attributes; raise :class:`GaussianCacheError`
        if it is missing, corrupt or of another format version."""
        import h5py
        path = self.path_for(img_path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise GaussianCacheError(f'{img_path}: no Gaussian cache ({path})') from None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        hit = self._memo.get(path)
        if hit is not None and hit[0] == stamp:
            self._memo.move_to_end(path)
            return dict(hit[1])
        try:
            with h5py.File(path, 'r') as f:
                attrs = dict(f.attrs)
                version = int(attrs['format_version'])
                if version not in READABLE_VERSIONS:
                    raise GaussianCacheError(
                        f'{img_path}: stale Gaussian cache {path} (format version {version}, '
                        f'expected {FORMAT_VERSION}); {REPAIR_HINT}', kind='format')
                rec = {name: np.asarray(f[name]) for name in _DATASETS}
                rec['soft'] = ({name: np.asarray(f[name]) for name in _SOFT_DATASETS}
                               if 'soft_means' in f else None)
            rec['format_version'] = version
            rec['image_size'] = tuple(int(v) for v in np.asarray(attrs['image_size']).reshape(2))
            rec['num_points'] = int(attrs['num_points'])
            rec['points_sha1'] = str(attrs['points_sha1'])
            rec['image_sha1'] = str(attrs['image_sha1'])
            rec['fit_key'] = str(attrs['fit_key'])
            rec['fit_settings'] = json.loads(attrs['fit_settings'])
        except GaussianCacheError:
            raise
        except Exception as e:  # noqa: BLE001 - any read failure means a corrupt file
            raise GaussianCacheError(f'{img_path}: corrupt Gaussian cache {path} '
                                     f'({type(e).__name__}: {e})') from e
        n = rec['means'].shape[0]
        shapes_ok = (rec['means'].shape == (n, 2) and rec['covariances'].shape == (n, 2, 2)
                     and rec['colors'].shape == (n, 3) and rec['point_index'].shape == (n,)
                     and n <= rec['num_points'])
        sf = rec['soft']
        if shapes_ok and sf is not None:
            m, e = sf['soft_means'].shape[0], sf['soft_comp'].shape[0]
            shapes_ok = (sf['soft_means'].shape == (m, 2)
                         and sf['soft_covariances'].shape == (m, 2, 2)
                         and sf['soft_colors'].shape == (m, 3)
                         and sf['soft_pen'].shape == (e,) and sf['soft_weight'].shape == (e,)
                         and (e == 0 or (0 <= sf['soft_comp'].min() and sf['soft_comp'].max() < m
                                         and 0 <= sf['soft_pen'].min()
                                         and sf['soft_pen'].max() < n)))
        if not shapes_ok:
            raise GaussianCacheError(f'{img_path}: corrupt Gaussian cache {path} '
                                     '(inconsistent array shapes)')
        rec['path'] = path
        if self.memo > 0:  # arrays shared with later reads: load() copies them
            self._memo[path] = (stamp, rec)
            self._memo.move_to_end(path)
            while len(self._memo) > self.memo:
                self._memo.popitem(last=False)
        return dict(rec)

    def status(self, img_path: str, points: Optional[np.ndarray] = None,
               image_size: Optional[Tuple[int, int]] = None, image_sha1: Optional[str] = None,
               fit_key: Optional[str] = None, *, plan: Optional[str] = None) -> CacheStatus:
        """State of an entry under :func:`stale_reason` (valid / missing / corrupt /
        stale with its kind); the expectations are those of :func:`stale_reason`."""
        path = self.path_for(img_path)
        if not osp.exists(path):
            return CacheStatus('missing', f'{img_path}: no Gaussian cache ({path})')
        try:
            rec = self.read(img_path)
        except GaussianCacheError as e:
            return CacheStatus('stale' if e.kind else 'corrupt', str(e), e.kind)
        found = stale_reason(rec, points, image_size, image_sha1, fit_key, plan)
        if found is None:
            return CacheStatus('valid')
        kind, reason = found
        return CacheStatus('stale', f"{img_path}: stale Gaussian cache {rec['path']} ({reason})",
                           kind)

    def check(self, img_path: str, points: Optional[np.ndarray] = None,
              image_size: Optional[Tuple[int, int]] = None, image_sha1: Optional[str] = None,
              fit_key: Optional[str] = None) -> Optional[str]:
        """``None`` if the entry is valid, else why not (missing / corrupt / stale)."""
        return self.status(img_path, points, image_size, image_sha1, fit_key).message

    def is_valid(self, img_path: str, points: Optional[np.ndarray] = None,
                 image_size: Optional[Tuple[int, int]] = None, image_sha1: Optional[str] = None,
                 fit_key: Optional[str] = None) -> bool:
        """True if :meth:`load` would succeed for these arguments."""
        return self.status(img_path, points, image_size, image_sha1, fit_key).valid

    def load(self, img_path: str, points: Optional[np.ndarray] = None,
             image_size: Optional[Tuple[int, int]] = None, *, image_sha1: Optional[str] = None,
             fit_key: Optional[str] = None, plan: Optional[str] = None,
             return_index: bool = False):
        """Load the Gaussians of an image, checked by :func:`stale_reason`.

        Args:
            img_path: the image.
            points: if given, the entry must have been fitted from exactly these
                ``(N, 2)`` px points (count and float32 hash).
            image_size: if given, ``(H, W)`` must match.
            image_sha1: if given, the image file's content hash must match.
            fit_key: if given, the fit-settings key must match.
            plan: if given (``'hard'`` | ``'soft'``), the entry must hold this plan.
            return_index: also return ``point_index (N,)``.

        Raises:
            GaussianCacheError: missing, corrupt or stale; the message names the
            image, the reason and the command that repairs it.
        """
        try:
            rec = self.read(img_path)
        except GaussianCacheError as e:
            msg = str(e)
            raise GaussianCacheError(msg if REPAIR_HINT in msg else f'{msg}; {REPAIR_HINT}') \
                from None
        found = stale_reason(rec, points, image_size, image_sha1, fit_key, plan)
        if found is not None:
            raise GaussianCacheError(f"{img_path}: stale Gaussian cache {rec['path']} "
                                     f'({found[1]}); {REPAIR_HINT}')
        g = Gaussians2D(rec['means'].copy(), rec['covariances'].copy(), rec['colors'].copy())
        sf = rec['soft']
        if sf is not None:
            g = SoftGaussians(Gaussians2D(sf['soft_means'].copy(), sf['soft_covariances'].copy(),
                                          sf['soft_colors'].copy()), g, sf['soft_comp'].copy(),
                              sf['soft_pen'].copy(), sf['soft_weight'].copy())
        return (g, rec['point_index'].copy()) if return_index else g

    def info(self, img_path: str) -> Dict[str, Any]:
        """Metadata of an entry (image size, point count, hashes, fit settings, path)."""
        rec = self.read(img_path)
        return {k: rec[k] for k in ('format_version', 'image_size', 'num_points',
                                    'points_sha1', 'image_sha1', 'fit_key', 'fit_settings',
                                    'path')}
