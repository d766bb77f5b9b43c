"""Conversion of a whole source data set into the gst_mm crowd layout.

:func:`convert_dataset` lists the source samples (:data:`LISTERS`), converts
them (:func:`convert_samples`, ``workers`` processes; a bad file is reported and
skipped), assigns the split lists (:func:`assign_splits`) and writes
``train.txt`` / ``val.txt`` / ``test.txt`` and ``conversion_report.json``
(:class:`ConversionSummary`).
"""
from __future__ import annotations

import json
import os.path as osp
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..layout import ANN_DIR, SPLITS, LayoutError, atomic_write_bytes, split_train_val, write_split
from .common import SourceSample
from .convert import ConvertOptions, SampleResult, convert_source_sample
from .jhu_crowd import list_jhu_crowd
from .nwpu_crowd import list_nwpu_crowd
from .shanghaitech import list_shanghaitech
from .ucf_qnrf import list_ucf_qnrf

# data set -> lister: source root -> its samples (output name, split, image, annotation)
LISTERS: Dict[str, Callable[[str], List[SourceSample]]] = {
    'shanghaitech': list_shanghaitech,
    'ucf_qnrf': list_ucf_qnrf,
    'jhu_crowd': list_jhu_crowd,
    'nwpu_crowd': list_nwpu_crowd,
}


def _convert_job(args) -> SampleResult:
    return convert_source_sample(*args)


@dataclass
class ConversionSummary:
    """Counts of a conversion run (also saved as ``conversion_report.json``)."""
    dataset: str
    out_root: str
    splits: Dict[str, int] = field(default_factory=dict)
    images: int = 0
    points: int = 0
    empty_images: int = 0
    unlabelled_images: int = 0
    resized_images: int = 0
    skipped_existing: int = 0
    dropped_points: int = 0
    clipped_points: int = 0
    with_covariances: bool = False
    val_from: str = ''
    failures: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    seconds: float = 0.0

    def format(self) -> str:
        """A human-readable multi-line summary."""
        lines = [
            f'{self.dataset} -> {osp.abspath(self.out_root)}',
            f'  images: {self.images} ('
            + ', '.join(f'{s} {n}' for s, n in self.splits.items()) + ')',
            f'  points: {self.points} ({self.empty_images} image(s) without points'
            + (f', {self.unlabelled_images} unlabelled' if self.unlabelled_images else '') + ')',
            f'  resized to the short-side range: {self.resized_images} image(s)',
            f'  points dropped outside the image: {self.dropped_points}, '
            f'clipped onto the border: {self.clipped_points}',
            f'  box covariances saved: {"yes" if self.with_covariances else "no"}',
        ]
        if self.val_from:
            lines.append(f'  val split: {self.val_from}')
        if self.skipped_existing:
            lines.append(f'  already converted (skipped): {self.skipped_existing}')
        if self.unlabelled_images:
            lines.append(f'  note: {self.unlabelled_images} test image(s) have no public '
                         'annotations and were written with empty point lists; their '
                         'counts must be evaluated by the benchmark server')
        lines.append(f'  failed (skipped): {len(self.failures)}')
        lines += [f'    {msg}' for msg in self.failures]
        lines.append(f'  time: {self.seconds:.1f} s')
        return '\n'.join(lines)


def convert_samples(samples: Sequence[SourceSample], out_root: str,
                    options: ConvertOptions = ConvertOptions(), workers: int = 1,
                    progress: bool = True,
                    on_message: Optional[Callable[[str], None]] = None) -> List[SampleResult]:
    """Convert ``samples`` (in order) with ``workers`` processes and a tqdm bar;
    ``on_message`` receives every warning / error line as it happens."""
    jobs = [(s, out_root, options) for s in samples]
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(jobs), desc='converting', unit='img')
        except ImportError:  # pragma: no cover
            bar = None
    results: List[SampleResult] = []

    def _collect(res: SampleResult) -> None:
        results.append(res)
        if on_message is not None:
            for msg in res.warnings:
                on_message(f'warning: {msg}')
            if res.error:
                on_message(f'error (skipped): {res.error}')
        if bar is not None:
            bar.update(1)

    try:
        if workers > 1 and len(jobs) > 1:
            import multiprocessing as mp
            with mp.get_context().Pool(workers) as pool:
                for res in pool.imap(_convert_job, jobs, chunksize=1):
                    _collect(res)
        else:
            for job in jobs:
                _collect(_convert_job(job))
    finally:
        if bar is not None:
            bar.close()
    return results


def assign_splits(results: Sequence[SampleResult], val_fraction: Optional[float] = None,
                  seed: int = 0) -> Tuple[Dict[str, List[str]], str]:
    """Split lists from the converted samples.

    The source splits are kept. A source without a val split (ShanghaiTech,
    UCF-QNRF) gets one: ``val_fraction`` of its training images (deterministic
    for ``seed``), or, with ``val_fraction == 0``, the test images (the
    published protocol of these data sets). Returns ``(split -> sorted names,
    description of where val came from)``."""
    names: Dict[str, List[str]] = {s: [] for s in SPLITS}
    for res in results:
        if res.converted is not None:
            names[res.sample.split].append(res.sample.name)
    names = {s: sorted(v) for s, v in names.items()}
    has_val = any(r.sample.split == 'val' for r in results)
    if has_val:
        return names, 'the data set\'s own val split'
    if val_fraction is None or val_fraction <= 0:
        names['val'] = list(names['test'])
        return names, 'same as test (no separate val split)'
    n_train = len(names['train'])
    # at least one held-out image whenever a hold-out is asked for and possible
    fraction = max(val_fraction, 1.0 / n_train) if n_train >= 2 else 0.0
    names['train'], names['val'] = split_train_val(names['train'], fraction, seed)
    if not names['val']:
        names['val'] = list(names['test'])
        return names, 'same as test (too few training images to hold some out)'
    return names, f'{len(names["val"])} training image(s) held out ({val_fraction:g}, seed {seed})'


def summarize(dataset: str, out_root: str, results: Sequence[SampleResult],
              splits: Dict[str, List[str]], val_from: str, seconds: float) -> ConversionSummary:
    """Counts of a run (no I/O)."""
    s = ConversionSummary(dataset, out_root, splits={k: len(v) for k, v in splits.items()},
                          val_from=val_from, seconds=seconds)
    for res in results:
        s.warnings += res.warnings
        if res.error:
            s.failures.append(res.error)
            continue
        c = res.converted
        s.images += 1
        s.points += c.num_points
        s.empty_images += int(c.num_points == 0)
        s.unlabelled_images += int(res.sample.ann_path is None)
        s.resized_images += int(c.resized)
        s.skipped_existing += int(res.skipped_existing)
        s.dropped_points += c.dropped
        s.clipped_points += c.clipped
    return s


def convert_dataset(dataset: str, src_root: str, out_root: str,
                    options: ConvertOptions = ConvertOptions(), workers: int = 1,
                    val_fraction: Optional[float] = None, seed: int = 0,
                    progress: bool = True,
                    on_message: Optional[Callable[[str], None]] = None) -> ConversionSummary:
    """List, convert and split a whole data set (``dataset`` = a key of
    :data:`LISTERS`); writes the split files and ``conversion_report.json``."""
    t0 = time.time()
    samples = LISTERS[dataset](src_root)
    if not samples:
        raise LayoutError(f'no images found under {src_root} for {dataset}')
    results = convert_samples(samples, out_root, options, workers, progress, on_message)
    splits, val_from = assign_splits(results, val_fraction, seed)
    for split in SPLITS:
        write_split(out_root, split, splits[split])
    summary = summarize(dataset, out_root, results, splits, val_from, time.time() - t0)
    summary.with_covariances = _any_covariances(out_root, results)
    atomic_write_bytes(osp.join(out_root, 'conversion_report.json'),
                       json.dumps(dict(asdict(summary), options=asdict(options)),
                                  indent=1).encode())
    return summary


def _any_covariances(out_root: str, results: Sequence[SampleResult]) -> bool:
    """Whether the written annotations carry covariances (first non-empty one)."""
    for res in results:
        if res.converted is not None and res.converted.num_points:
            path = osp.join(out_root, ANN_DIR, f'{res.sample.name}.json')
            with open(path) as f:
                return 'covariances' in json.load(f)
    return False

