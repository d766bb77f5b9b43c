"""Fit and cache the Gaussians of many images (shared by ``tools/precompute.py`` and
``GSTPrecomputeHook``).

:func:`fit_missing` skips images whose cache is valid, fits the others (optionally in
worker processes), writes each cache file atomically as soon as it is fitted — so a
killed run resumes where it stopped; the temp files of killed writers are removed by
the next run — and never aborts on one bad image: failures are collected with their
reason in the returned :class:`PrecomputeSummary`. Validity is the one rule of
:mod:`.cache` (image content hash, points, fit-settings key).

**Two runs on one cache** (two ``tools/precompute.py``, or a precompute beside a
training's hook): a writer claims each entry before fitting it (``<entry>.h5.claim``,
created with ``O_EXCL``, holding host and pid; a dead writer's claim is taken over, as
its temp files are removed). An entry claimed by a live writer is not fitted twice: it
is reported as *busy* (``tools/precompute.py`` says so and moves on) or, with
``wait_busy`` (the training hook, which needs every entry), waited for and checked again.
"""
from __future__ import annotations

import multiprocessing as mp
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .cache import GaussianCache, claim_entry, release_entry, remove_stale_temps
from .fit import fit_cfg_key, fit_gaussians
from .image_io import ImageReadError, bytes_sha1, file_sha1, read_image_file


@dataclass
class GaussianSample:
    """One image to fit: ``key`` (names it in reports), ``img_path`` and its
    annotation ``points (N, 2)`` float px (x, y)."""
    key: str
    img_path: str
    points: np.ndarray


@dataclass
class PrecomputeSummary:
    """Outcome of :func:`fit_missing`.

    Attributes:
        fitted: keys fitted and written in this run.
        skipped: keys whose cache was already valid.
        failed: ``(key, reason)`` of samples that could not be fitted.
        refitted: ``(key, reason)`` of samples whose existing cache was stale or
            corrupt (they are also in ``fitted`` or ``failed``).
        busy: ``(key, holder)`` of samples another live writer was fitting (not
            fitted here; see the module docstring).
        seconds: wall time.
        fit_key: key of the fit settings (:func:`.fit.fit_settings_key`).
    """
    fitted: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)
    refitted: List[Tuple[str, str]] = field(default_factory=list)
    busy: List[Tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    fit_key: str = ''

    def merge(self, other: 'PrecomputeSummary') -> 'PrecomputeSummary':
        """Add ``other``'s samples and time to this summary (several caches of one
        data set); returns ``self``."""
        for name in ('fitted', 'skipped', 'failed', 'refitted', 'busy'):
            getattr(self, name).extend(getattr(other, name))
        self.seconds += other.seconds
        self.fit_key = self.fit_key or other.fit_key
        return self

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def __str__(self) -> str:
        lines = [f'Gaussian precompute: {len(self.fitted)} fitted, {len(self.skipped)} skipped '
                 f'(valid cache), {len(self.failed)} failed, '
                 f'{len(self.refitted)} stale/corrupt caches replaced, {self.seconds:.1f} s '
                 f'(fit settings key {self.fit_key or "-"})'
                 + (f'; {len(self.busy)} being fitted by another process, left to it'
                    if self.busy else '')]
        for key, reason in self.refitted:
            lines.append(f'  refit {key}: {reason}')
        for key, reason in self.failed:
            lines.append(f'  FAILED {key}: {reason}')
        return '\n'.join(lines)


def fit_sample(sample: GaussianSample, cache: GaussianCache,
               fit_cfg: Dict[str, Any]) -> Tuple[str, str, Optional[str]]:
    """Fit one sample and write its cache. Returns ``(key, 'fitted' | 'failed',
    reason)``; never raises for a bad image.

    The image is read once (:func:`.image_io.read_image_file`, the pixels MMCV's
    loader gives); the entry records the hash of exactly those bytes, the decoded
    size and the fit-settings key (the validity rule of :mod:`.cache`)."""
    path = cache.path_for(sample.img_path)
    claimed, holder = claim_entry(path)
    if not claimed:
        return sample.key, 'busy', holder
    try:
        bgr, data = read_image_file(sample.img_path)
        image = bgr[..., ::-1]
        h, w = image.shape[:2]
        points = np.asarray(sample.points, np.float64).reshape(-1, 2)
        cfg = dict(fit_cfg)
        cfg.setdefault('name', sample.img_path)
        gaussians, info = fit_gaussians(image, points, return_info=True, **cfg)
        cache.save(sample.img_path, gaussians, points, (h, w), info.settings,
                   point_index=np.flatnonzero(info.kept), image_sha1=bytes_sha1(data),
                   fit_key=info.fit_key)
        return sample.key, 'fitted', None
    except Exception as e:  # noqa: BLE001 - one bad image must not abort the run
        msg = str(e) if isinstance(e, ImageReadError) else f'{type(e).__name__}: {e}'
        return sample.key, 'failed', msg
    finally:
        release_entry(path)


def sample_status(sample: GaussianSample, cache: GaussianCache, fit_key: str):
    """:class:`.cache.CacheStatus` of a sample's entry under the full validity rule
    (image content hash, points, fit-settings key; same bytes -> same decoded size),
    or ``None`` when the image file itself is missing."""
    try:
        sha1 = file_sha1(sample.img_path)
    except ImageReadError:
        return None
    return cache.status(sample.img_path, np.asarray(sample.points, np.float32).reshape(-1, 2),
                        image_sha1=sha1, fit_key=fit_key)


def _init_worker() -> None:
    import torch
    torch.set_num_threads(1)


def _work(args) -> Tuple[str, str, Optional[str]]:
    return fit_sample(*args)


def fit_missing(samples: Sequence[GaussianSample], cache: GaussianCache,
                fit_cfg: Optional[Dict[str, Any]] = None, workers: int = 1,
                shard: Tuple[int, int] = (0, 1), progress: bool = True,
                wait_busy: float = 0.0) -> PrecomputeSummary:
    """Fit every sample of this shard that has no valid cache entry.

    Args:
        samples: the images with their points.
        cache: where the Gaussians go.
        fit_cfg: keyword arguments of :func:`fit_gaussians`.
        workers: worker processes (``spawn``; each uses one torch thread); ``<= 1``
            fits in this process.
        shard: ``(k, n)``: only samples ``k, k + n, k + 2n, ...`` (several machines or
            ranks split one data set).
        progress: show a tqdm progress bar with ETA.
        wait_busy: seconds to wait for entries another live writer is fitting, then
            check them again (and fit those still not valid); 0 (default): report them
            as ``busy`` and move on.

    Returns:
        :class:`PrecomputeSummary` (fitted / skipped / failed with reasons).
    """
    t0 = time.perf_counter()
    k, n = shard
    if not (0 <= k < n):
        raise ValueError(f'invalid shard {shard}: need 0 <= k < n')
    fit_cfg = dict(fit_cfg or {})
    fit_key = fit_cfg_key(fit_cfg)  # TypeError on a typo, before fitting
    summary = PrecomputeSummary(fit_key=fit_key)
    todo: List[GaussianSample] = []
    mine = list(samples)[k::n]
    # temp files of writers killed inside their write window (never read: not *.h5),
    # in every folder of this shard's entries
    remove_stale_temps({osp.dirname(cache.path_for(s.img_path)) for s in mine})
    for sample in mine:
        status = sample_status(sample, cache, fit_key)
        if status is not None and status.valid:
            summary.skipped.append(sample.key)
            continue
        if status is not None and status.state != 'missing':
            summary.refitted.append((sample.key, status.message))
        todo.append(sample)  # a missing image fails in fit_sample, naming the file

    from tqdm import tqdm
    bar = tqdm(total=len(todo), desc='fitting Gaussians', unit='img', disable=not progress,
               dynamic_ncols=True)

    def record(result: Tuple[str, str, Optional[str]]) -> None:
        key, status, reason = result
        if status == 'fitted':
            summary.fitted.append(key)
        elif status == 'busy':
            summary.busy.append((key, reason or 'another writer'))
        else:
            summary.failed.append((key, reason or 'unknown error'))
        bar.update(1)

    try:
        if workers <= 1 or len(todo) <= 1:
            for sample in todo:
                record(fit_sample(sample, cache, fit_cfg))
        else:
            ctx = mp.get_context('spawn')
            with ctx.Pool(min(workers, len(todo)), initializer=_init_worker) as pool:
                jobs = [(s, cache, fit_cfg) for s in todo]
                for result in pool.imap_unordered(_work, jobs, chunksize=1):
                    record(result)
    finally:
        bar.close()
    if summary.busy and wait_busy > 0:
        _wait_for_busy(summary, {s.key: s for s in todo}, cache, fit_cfg, fit_key, wait_busy)
    summary.seconds = time.perf_counter() - t0
    return summary


def _wait_for_busy(summary: PrecomputeSummary, by_key: Dict[str, GaussianSample],
                   cache: GaussianCache, fit_cfg: Dict[str, Any], fit_key: str,
                   timeout: float) -> None:
    """Wait (polling) until the busy entries' writers are done, then skip the valid
    ones and fit the rest here."""
    from .cache_writers import CLAIM_SUFFIX, _claim_holder
    deadline = time.time() + timeout
    pending = [by_key[k] for k, _ in summary.busy]
    summary.busy = []
    while pending and time.time() < deadline:
        still = [s for s in pending
                 if _claim_holder(cache.path_for(s.img_path) + CLAIM_SUFFIX) is not None]
        for sample in [s for s in pending if s not in still]:
            status = sample_status(sample, cache, fit_key)
            if status is not None and status.valid:
                summary.skipped.append(sample.key)
            else:
                key, state, reason = fit_sample(sample, cache, fit_cfg)
                (summary.fitted.append(key) if state == 'fitted' else
                 summary.busy.append((key, reason)) if state == 'busy' else
                 summary.failed.append((key, reason or 'unknown error')))
        pending = still
        if pending:
            time.sleep(0.5)
    summary.busy += [(s.key, 'still being fitted after the wait') for s in pending]
