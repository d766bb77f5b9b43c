"""Fit what is missing for a data set: the one cache resolver, the precompute and the
read-only check (the grouping of a data set into samples is :mod:`.cache_groups`).

Shared by :class:`gst_mm.engine.hooks.GSTPrecomputeHook`, ``tools/precompute.py``,
``tools/demo.py`` and both visualisers. The fitting itself is
:func:`gst_mm.splatting.fit_missing` (pure core).

**One resolver.** What a data set's Gaussians are fitted with and where they live is
decided by :func:`resolve_cache` alone: the precompute hook's config (``cache_dir``,
``data_root``, ``fit_cfg``) plus the *fit plan* the data set's pipeline reads (the one
switch of a config: ``plan='soft'`` on ``LoadCrowdGaussians`` /
``LoadPoseTransportKernel``; each transform states it as its ``fit_plan`` attribute,
``None`` when it reads no fitted Gaussians). :func:`precompute_dataset` and
:func:`check_dataset` resolve through it, so no caller can fit one plan into the other
plan's folder.

Vocabulary: the *fit plan* is ``'hard'`` (one pinned Gaussian per annotation, the
paper) or ``'soft'`` (docs/soft_kernel.md); a crowd pipeline's *kernel source*
(``LoadCrowdGaussians(source=...)``: ``'fit'``, ``'gt'``, ``'heuristic'``) says
whether fitted Gaussians are read at all.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from gst_mm.splatting import (
    CacheKeyError,
    GaussianSample,
    PrecomputeSummary,
    fit_missing,
)
from gst_mm.splatting.cache import relative_key

from .cache_groups import (  # noqa: F401 (the grouping API, importable from here)
    CacheGroup,
    _unwrap,
    cache_groups,
    collect_gaussian_samples,
    dataset_cache_dir,
    dataset_data_root,
)

#: the precompute hook's registered names (as configs write them)
HOOK_TYPES = ('GSTPrecomputeHook', 'gst_mm.GSTPrecomputeHook')


def hook_cfg_of(cfg) -> Dict:
    """The ``GSTPrecomputeHook`` entry of a config's ``custom_hooks`` (without
    ``type``; ``{}`` when there is none)."""
    for hook in cfg.get('custom_hooks', None) or []:
        if hook.get('type') in HOOK_TYPES:
            return {k: v for k, v in hook.items() if k != 'type'}
    return {}


def fit_plan(fit_cfg: Optional[Dict]) -> str:
    """The plan (``'hard'`` | ``'soft'``) a resolved ``fit_cfg`` fits."""
    return str((fit_cfg or {}).get('plan', 'hard'))


def pipeline_plan(dataset) -> Optional[str]:
    """The fit plan the data set's pipelines read: the ``fit_plan`` of their
    transforms (``'hard'`` | ``'soft'``; ``None`` when no transform reads fitted
    Gaussians). Two plans in one data set are a ``ValueError``."""
    plans = set()
    for leaf in _unwrap(dataset):
        for t in getattr(getattr(leaf, 'pipeline', None), 'transforms', []) or []:
            plan = getattr(t, 'fit_plan', None)
            if plan is not None:
                plans.add(plan)
    if len(plans) > 1:
        raise ValueError('the data set\'s pipelines read both the soft and the hard plan; '
                         'use one plan per run')
    return plans.pop() if plans else None


def implied_fit_cfg(fit_cfg: Optional[Dict]) -> Dict:
    """``fit_cfg`` with the plan its settings imply: ``soft=...`` without a ``plan``
    means ``plan='soft'``."""
    cfg = dict(fit_cfg or {})
    if 'soft' in cfg:
        cfg.setdefault('plan', 'soft')
    return cfg


def resolve_fit_cfg(dataset, fit_cfg: Optional[Dict]) -> Dict:
    """``fit_cfg`` with the plan the data set's pipeline reads; a ``fit_cfg`` that
    names the other plan is a one-line ``ValueError`` (idempotent)."""
    cfg = dict(fit_cfg or {})
    wanted = pipeline_plan(dataset)
    if wanted is not None and 'plan' in cfg and cfg['plan'] != wanted:
        raise ValueError(f"fit_cfg plan {cfg['plan']!r} but the pipeline reads the "
                         f'{wanted!r} plan; set one of them')
    if 'soft' in cfg and wanted == 'hard' and 'plan' not in cfg:
        raise ValueError("fit_cfg has soft-plan settings (soft=...) but the pipeline reads "
                         "the hard plan; set plan='soft' on its loading transform")
    cfg = implied_fit_cfg(cfg)
    if wanted == 'soft':
        cfg['plan'] = 'soft'
    return cfg


@dataclass(frozen=True)
class CacheSpec:
    """What a data set's Gaussians are fitted with and where they are cached.

    Attributes:
        fit_cfg: the fit settings, with the plan the pipeline reads.
        cache_dir: one cache folder for every image, or ``None``: each data root's
            ``<data_root>/gst_cache`` (``gst_cache_soft`` for the soft plan).
        data_root: cache-key root for every image, or ``None``: each leaf's own.
    """
    fit_cfg: Dict
    cache_dir: Optional[str] = None
    data_root: Optional[str] = None

    @property
    def plan(self) -> str:
        return fit_plan(self.fit_cfg)

    def groups(self, dataset) -> List['CacheGroup']:
        """:func:`cache_groups` of ``dataset`` under this spec."""
        return cache_groups(dataset, self.cache_dir, self.data_root, self.plan)

    def folders(self, dataset) -> str:
        """The cache folder(s) as one string (``', '``-joined)."""
        return dataset_cache_dir(dataset, self.cache_dir, self.data_root, self.plan)


def resolve_cache(dataset, hook_cfg: Optional[Dict] = None) -> CacheSpec:
    """The one resolver: a :class:`CacheSpec` from the precompute hook's config
    (``cache_dir``, ``data_root``, ``fit_cfg``; other keys ignored) and the plan the
    data set's pipeline reads (module docstring)."""
    hook_cfg = dict(hook_cfg or {})
    return CacheSpec(resolve_fit_cfg(dataset, hook_cfg.get('fit_cfg')),
                     hook_cfg.get('cache_dir') or None, hook_cfg.get('data_root') or None)


def precompute_config(cfg, split: str = 'train', workers: int = 1,
                      progress: bool = True) -> Tuple[Optional[PrecomputeSummary], str]:
    """Fit what is missing for one split of a config, as its precompute hook would
    (the hook's settings through :func:`resolve_cache`): ``(summary, cache folders)``,
    ``(None, '')`` when the config has no ``GSTPrecomputeHook``."""
    from mmengine.registry import init_default_scope

    from gst_mm.registry import DATASETS
    hook = hook_cfg_of(cfg)
    if not hook:
        return None, ''
    init_default_scope(cfg.get('default_scope', 'gst_mm'))
    dataset = DATASETS.build(cfg[f'{split}_dataloader'].dataset)
    spec = resolve_cache(dataset, hook)
    summary = precompute_dataset(dataset, spec.cache_dir, fit_cfg=spec.fit_cfg,
                                 data_root=spec.data_root, workers=workers, progress=progress)
    return summary, f'{spec.folders(dataset)} ({spec.plan} plan)'


def fit_image(dataset, hook_cfg: Optional[Dict], img_path: str) -> Optional[str]:
    """Fit and cache the Gaussians of one image of ``dataset`` (all its annotations,
    as the precompute does) when its entry is not valid under
    :func:`resolve_cache` ``(dataset, hook_cfg)``; the viewers' ``--fit``.

    Returns:
        ``None`` when the entry was valid, else the summary line of the fit.
    Raises:
        RuntimeError: the image is not in the data set, or its fit failed (reason).
    """
    spec = resolve_cache(dataset, hook_cfg)
    summary = precompute_dataset(dataset, spec.cache_dir, fit_cfg=spec.fit_cfg,
                                 data_root=spec.data_root, progress=False, only=[img_path])
    if summary.failed:
        raise RuntimeError(f'fitting the Gaussians of {img_path} failed: {summary.failed}')
    if not summary.fitted and not summary.skipped:
        raise RuntimeError(f'{img_path}: not an image of the data set')
    return None if not summary.fitted else str(summary).splitlines()[0]


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
                       progress: bool = True,
                       only: Optional[List[str]] = None,
                       wait_busy: float = 0.0) -> PrecomputeSummary:
    """Fit and cache the Gaussians of every image of ``dataset`` that has no valid cache.

    Args:
        dataset: an MMEngine data set (crowd or MMPose), already built.
        cache_dir, fit_cfg, data_root: the precompute hook's settings, resolved with
            the plan the pipeline reads by :func:`resolve_cache`: ``cache_dir``
            default each data root's ``<data_root>/gst_cache`` (``gst_cache_soft``),
            ``fit_cfg`` keywords of :func:`gst_mm.splatting.fit_gaussians`,
            ``data_root`` (cache keys are image paths relative to it) default the
            data set's own.
        workers: fitting processes.
        shard: ``(k, n)``: fit only the k-th of n interleaved shards.
        progress: show a progress bar.
        only: fit only these images (``img_path``; e.g. one sample for a viewer).
        wait_busy: seconds to wait for entries another process is fitting
            (:func:`gst_mm.splatting.fit_missing`); 0: report them as busy.
    """
    spec = resolve_cache(dataset, dict(cache_dir=cache_dir, fit_cfg=fit_cfg,
                                       data_root=data_root))
    summary = PrecomputeSummary()
    groups = spec.groups(dataset)
    for group in groups:  # every configuration error before any fitting
        if group.data_root:
            check_under_root(group.samples, group.data_root, dataset_data_root(dataset))
    wanted = None if only is None else set(only)
    for group in groups:
        samples = [s for s in group.samples if wanted is None or s.img_path in wanted]
        if samples:
            summary.merge(fit_missing(samples, group.cache(), spec.fit_cfg, workers=workers,
                                      shard=shard, progress=progress, wait_busy=wait_busy))
    return summary


@dataclass
class CacheReport:
    """Read-only state of a data set's Gaussian cache (``tools/precompute.py --check``).

    Attributes:
        counts: entries per state: ``valid``, ``missing``, ``corrupt``, ``stale``
            and ``no image`` (the image file itself is missing).
        stale_kinds: stale entries per failed rule (``image``, ``points``,
            ``settings``, ``format``...).
        examples: up to ``max_examples`` messages per state / stale kind.
        disk_bytes: size of the cache folders' files (entries and temp files).
        cache_dirs: the folders checked.
    """
    counts: Dict[str, int] = field(default_factory=dict)
    stale_kinds: Dict[str, int] = field(default_factory=dict)
    examples: Dict[str, List[str]] = field(default_factory=dict)
    disk_bytes: int = 0
    cache_dirs: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every entry valid."""
        return all(v == 0 for k, v in self.counts.items() if k != 'valid')

    def __str__(self) -> str:
        total = sum(self.counts.values())
        parts = [f'{self.counts.get(s, 0)} {s}'
                 for s in ('valid', 'missing', 'stale', 'corrupt', 'no image')]
        kinds = ', '.join(f'{k}: {v}' for k, v in sorted(self.stale_kinds.items()))
        lines = [f'{total} images: ' + ', '.join(parts) + (f' (stale by {kinds})' if kinds else '')
                 + f'; {self.disk_bytes / 2**20:.1f} MiB in {", ".join(self.cache_dirs)}']
        for name, messages in self.examples.items():
            lines += [f'  {name}: {m}' for m in messages]
            kind = name[len('stale ('):-1] if name.startswith('stale (') else None
            total = self.stale_kinds.get(kind, 0) if kind else self.counts.get(name, 0)
            if total > len(messages):  # the list is cut at max_examples: say so
                lines.append(f'  {name}: ... and {total - len(messages)} more')
        return '\n'.join(lines)


def check_dataset(dataset, cache_dir: Optional[str] = None, fit_cfg: Optional[Dict] = None,
                  data_root: Optional[str] = None, max_examples: int = 3) -> CacheReport:
    """Report (read-only: nothing is fitted, written or removed) the state of every
    image's cache entry under the validity rule of :mod:`gst_mm.splatting.cache`
    (the rule :func:`precompute_dataset` refits by). Arguments as
    :func:`precompute_dataset`."""
    from gst_mm.splatting.fit import fit_cfg_key
    from gst_mm.splatting.precompute import sample_status
    spec = resolve_cache(dataset, dict(cache_dir=cache_dir, fit_cfg=fit_cfg,
                                       data_root=data_root))
    fit_key = fit_cfg_key(spec.fit_cfg)
    report = CacheReport()
    for group in spec.groups(dataset):
        cache = group.cache()
        report.cache_dirs.append(cache.root)
        for sample in group.samples:
            status = sample_status(sample, cache, fit_key)
            state = 'no image' if status is None else status.state
            report.counts[state] = report.counts.get(state, 0) + 1
            label = state if status is None or status.kind is None else f'stale ({status.kind})'
            if status is not None and status.kind:
                report.stale_kinds[status.kind] = report.stale_kinds.get(status.kind, 0) + 1
            if state != 'valid':
                shown = report.examples.setdefault(label, [])
                if len(shown) < max_examples:
                    shown.append(status.message if status else f'{sample.img_path}: not found')
        report.disk_bytes += _folder_bytes(cache.root)
    return report


def _folder_bytes(folder: str) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                continue
    return total
