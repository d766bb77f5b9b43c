"""Fit the Gaussians a run needs before it starts."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import BaseLoop

from gst_mm.registry import HOOKS
from gst_mm.splatting.fit import fit_settings

from ..precompute import implied_fit_cfg, precompute_dataset, resolve_cache


class GSTPrecomputeError(RuntimeError):
    """Images of the run could not be fitted (missing, unreadable, ...): the message
    lists them; the tools print it as one line (``gst_mm.utils.config.run_tool``)."""


@HOOKS.register_module()
class GSTPrecomputeHook(Hook):
    """Before a run, fit and cache the Gaussians of samples with no valid cache.

    So that ``tools/train.py CONFIG`` just works on a fresh data set. Under
    distributed training every rank fits an interleaved shard of the missing
    images, then the ranks exchange their outcomes: a failure on any rank (an
    image that could not be fitted, or an error) stops every rank with the same
    message (the cache directory must be shared by the ranks).

    Args:
        cache_dir: root of the HDF5 Gaussian cache (the same value the
            data-pipeline transform reads); default: each data set's
            ``<data_root>/gst_cache``, where ``LoadCrowdGaussians`` looks by default
            (each part of a ``ConcatDataset`` its own).
        data_root: cache keys are image paths relative to it; default: each data
            set's ``data_root``.
        fit_cfg: keyword arguments of :func:`gst_mm.splatting.fit_gaussians`
            (e.g. ``dict(iterations=1000)`` for pose images). The plan is the one the
            data set's pipeline reads (``plan='soft'`` on ``LoadCrowdGaussians`` /
            ``LoadPoseTransportKernel`` fits the soft plan into ``gst_cache_soft``).
        splits: which of ``'train'``, ``'val'``, ``'test'`` to cover; splits
            the current run does not use are skipped.
        workers: fitting processes per rank.
        allow_failures: if False (default), images that could not be fitted
            stop the run with one error listing them after every other image
            has been fitted and cached.
        wait_busy: seconds to wait for entries another process (e.g. a
            ``tools/precompute.py`` beside the run) is fitting; entries still busy
            then count as failures.
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 cache_dir: Optional[str] = None,
                 data_root: Optional[str] = None,
                 fit_cfg: Optional[Dict] = None,
                 splits: Sequence[str] = ('train', ),
                 workers: int = 1,
                 allow_failures: bool = False,
                 wait_busy: float = 3600.0) -> None:
        for split in splits:
            if split not in ('train', 'val', 'test'):
                raise ValueError(f"GSTPrecomputeHook: unknown split '{split}'")
        self.cache_dir = cache_dir
        self.data_root = data_root
        self.fit_cfg = dict(fit_cfg or {})
        # a typo in fit_cfg fails when the config is built
        fit_settings(**implied_fit_cfg(self.fit_cfg))
        self.splits = tuple(splits)
        self.workers = workers
        self.allow_failures = allow_failures
        self.wait_busy = float(wait_busy)

    @staticmethod
    def _dataset_of(runner, split: str):
        loop = getattr(runner, f'_{split}_loop', None)
        if isinstance(loop, BaseLoop):
            return loop.dataloader.dataset
        return None

    def before_run(self, runner) -> None:
        rank, world_size = get_dist_info()
        failed: List[Tuple[str, str]] = []
        caches: List[str] = []
        error: Optional[str] = None
        try:
            for split in self.splits:
                dataset = self._dataset_of(runner, split)
                if dataset is None:
                    continue
                spec = resolve_cache(dataset, dict(cache_dir=self.cache_dir,
                                                   data_root=self.data_root,
                                                   fit_cfg=self.fit_cfg))
                cache_dir = spec.folders(dataset)
                print_log(f'GSTPrecomputeHook: checking Gaussian cache of the {split} set '
                          f'in {cache_dir} ({spec.plan} plan)', logger='current')
                summary = precompute_dataset(
                    dataset,
                    spec.cache_dir,
                    fit_cfg=spec.fit_cfg,
                    data_root=spec.data_root,
                    workers=self.workers,
                    shard=(rank, world_size),
                    progress=rank == 0,
                    wait_busy=self.wait_busy)
                print_log(f'GSTPrecomputeHook [{split}, rank {rank}/{world_size}]: {summary}',
                          logger='current')
                failed += list(summary.failed) + [(k, f'being fitted by {h}')
                                                  for k, h in summary.busy]
                caches.append(cache_dir)
        except Exception as e:  # noqa: BLE001 - re-raised on every rank below
            if world_size == 1:
                raise
            error = f'rank {rank}: {type(e).__name__}: {e}'
        if world_size > 1:
            # every rank learns every rank's outcome: one failure stops all ranks with
            # the same message instead of leaving them at the next collective
            outcomes = all_gather_object((failed, caches, error))
            failed = [f for out in outcomes for f in out[0]]
            caches = list(dict.fromkeys(c for out in outcomes for c in out[1]))
            errors = [out[2] for out in outcomes if out[2]]
            if errors:
                raise GSTPrecomputeError('GSTPrecomputeHook failed on '
                                   f'{len(errors)} of {world_size} ranks: ' + '; '.join(errors))
        if failed and not self.allow_failures:
            lines = '\n'.join(f'  {key}: {reason}' for key, reason in failed)
            raise GSTPrecomputeError(
                f'GSTPrecomputeHook: {len(failed)} image(s) could not be fitted '
                f'(every other image is cached in {", ".join(caches)}):\n{lines}')
