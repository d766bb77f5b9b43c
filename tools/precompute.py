"""Fit and cache the Gaussians of a data set (GST precompute stage).

From a config (the data sets and the ``GSTPrecomputeHook`` settings it names)::

    python tools/precompute.py CONFIG [--splits train val] [--workers 2]
        [--shard K/N] [--cache-dir DIR] [--cfg-options key=value ...]

From plain paths (an image folder and a folder of ``<name>.json`` files with a
``points`` list of (x, y) pixels, the crowd layout of docs/datasets.md)::

    python tools/precompute.py --img-dir DIR --ann-dir DIR --cache-dir DIR [--data-root DIR]

Before a long training, check the cache without touching it (valid / stale by
reason / missing / corrupt entries and the cache's disk size, per split; exits 1
unless every entry is valid)::

    python tools/precompute.py CONFIG --check [--splits train val]

Images whose cache is valid (the cache's one validity rule: image content hash,
decoded size, annotation points, fit settings) are skipped, so a killed run
resumes where it stopped. Several machines split a data set with ``--shard K/N`` each, or run it
under ``torchrun`` (the shard then comes from RANK / WORLD_SIZE). Ends with a
summary (fitted, skipped, failed with reasons); exits 1 when any image failed.
"""
import argparse
import glob
import os
import os.path as osp
import sys
from typing import List, Optional, Tuple

from gst_mm.splatting import GaussianCache, GaussianSample, fit_missing

HOOK_TYPES = ('GSTPrecomputeHook', 'gst_mm.GSTPrecomputeHook')
IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff')


def parse_shard(text: Optional[str]) -> Tuple[int, int]:
    """``'K/N'`` -> (K, N), 0 <= K < N; default from torchrun's RANK/WORLD_SIZE."""
    if text is None:
        return int(os.environ.get('RANK', 0)), int(os.environ.get('WORLD_SIZE', 1))
    try:
        k, n = (int(v) for v in text.split('/'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'--shard must look like K/N, got {text!r}')
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f'--shard {text}: need 0 <= K < N')
    return k, n


def parse_args(argv=None):
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description='Fit and cache GST Gaussians')
    p.add_argument('config', nargs='?', help='gst_mm / MMPose config naming the data sets')
    p.add_argument('--splits', nargs='+', default=None, choices=['train', 'val', 'test'],
                   help="data sets to cover (default: the hook's splits, else train)")
    p.add_argument('--img-dir', help='plain-path mode: folder of images')
    p.add_argument('--ann-dir', help='plain-path mode: folder of <name>.json with "points"')
    p.add_argument('--data-root', help='plain-path mode: cache keys are image paths '
                   'relative to it (default: the parent of --img-dir, as in the crowd layout)')
    p.add_argument('--cache-dir', help='cache root (default: the config hook\'s cache_dir, else '
                   'each data set\'s <data_root>/gst_cache)')
    p.add_argument('--iterations', type=int, help='override the fit iterations')
    p.add_argument('--workers', type=int, default=None, help='fitting processes')
    p.add_argument('--shard', default=None, help='K/N: fit only shard K of N')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('--check', action='store_true',
                   help='read-only report of the cache state (nothing is fitted or written)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of the config, key=value')
    args = p.parse_args(argv)
    if (args.config is None) == (args.img_dir is None):
        p.error('give either a CONFIG or --img-dir/--ann-dir/--cache-dir')
    if args.check and args.config is None:
        p.error('--check needs a CONFIG')
    if args.img_dir is not None and (args.ann_dir is None or args.cache_dir is None):
        p.error('plain-path mode needs --img-dir, --ann-dir and --cache-dir')
    try:
        args.shard = parse_shard(args.shard)
    except argparse.ArgumentTypeError as err:
        p.error(str(err))
    return args


def plain_path_samples(img_dir: str, ann_dir: str) -> List[GaussianSample]:
    """Samples of an image folder with per-image ``<stem>.json`` point files, read
    and validated by the data set's own reader (:func:`gst_mm.datasets.layout.read_points`:
    a required ``points`` key, ``(N, 2)`` rows)."""
    from gst_mm.datasets.layout import read_points
    samples = []
    for img_path in sorted(glob.glob(osp.join(img_dir, '*'))):
        if osp.splitext(img_path)[1].lower() not in IMAGE_EXTS:
            continue
        stem = osp.splitext(osp.basename(img_path))[0]
        ann_path = osp.join(ann_dir, stem + '.json')
        if not osp.isfile(ann_path):
            raise FileNotFoundError(f'{img_path}: no annotation file {ann_path}')
        samples.append(GaussianSample(key=stem, img_path=img_path, points=read_points(ann_path)))
    if not samples:
        raise FileNotFoundError(f'no images found in {img_dir}')
    return samples


def run_config(args, holder: Optional[dict] = None) -> int:
    from gst_mm.engine import check_dataset, hook_cfg_of, precompute_dataset, resolve_cache
    from gst_mm.registry import DATASETS
    from gst_mm.utils import register_all_modules
    from gst_mm.utils.config import load_run_config

    register_all_modules()
    # --cfg-options data_root=... moves every path under the old data_root (load_run_config)
    cfg = load_run_config(args.config, args.cfg_options)
    if holder is not None:
        holder['cfg'] = cfg
    hook = hook_cfg_of(cfg)
    # default: each data set's <data_root>/gst_cache (where the hook and the transform look)
    hook['cache_dir'] = args.cache_dir or hook.get('cache_dir') or cfg.get('gaussian_cache_dir')
    hook['fit_cfg'] = dict(hook.get('fit_cfg') or {})
    if args.iterations is not None:
        hook['fit_cfg']['iterations'] = args.iterations
    workers = args.workers or hook.get('workers', 1)
    splits = args.splits or list(hook.get('splits', ('train', )))
    bad = 0
    for split in splits:
        loader_cfg = cfg.get(f'{split}_dataloader', None)
        if not loader_cfg:
            print(f'[precompute] {args.config} has no {split}_dataloader; skipped')
            continue
        dataset = DATASETS.build(loader_cfg['dataset'])
        spec = resolve_cache(dataset, hook)  # the plan the pipeline reads, its folder
        if args.check:
            report = check_dataset(dataset, spec.cache_dir, fit_cfg=spec.fit_cfg,
                                   data_root=spec.data_root)
            print(f'[precompute --check] {split}: {report}')
            bad += 0 if report.ok else 1
            continue
        print(f'[precompute] {split} set: {len(dataset)} samples -> {spec.folders(dataset)} '
              f'({spec.plan} plan, shard {args.shard[0]}/{args.shard[1]})')
        summary = precompute_dataset(dataset, spec.cache_dir, fit_cfg=spec.fit_cfg,
                                     data_root=spec.data_root, workers=workers,
                                     shard=args.shard, progress=not args.no_progress)
        print(f'[precompute] {split}: {summary}')
        bad += len(summary.failed)
    return 1 if bad else 0


def run_plain(args) -> int:
    samples = plain_path_samples(args.img_dir, args.ann_dir)
    data_root = args.data_root or osp.dirname(osp.abspath(args.img_dir))
    cache = GaussianCache(args.cache_dir, data_root=data_root)
    fit_cfg = {} if args.iterations is None else dict(iterations=args.iterations)
    summary = fit_missing(samples, cache, fit_cfg, workers=args.workers or 1,
                          shard=args.shard, progress=not args.no_progress)
    print(f'[precompute] {summary}')
    return 1 if summary.failed else 0


def main(argv=None) -> int:
    """Exit code 0 (all fitted or cached; with ``--check``: all valid), 1 (some images
    failed; with ``--check``: some entry not valid), 2 (a setup error: missing config
    or files, an invalid annotation file, images outside the cache's data_root, an
    unknown fit setting; one line on stderr)."""
    from gst_mm.utils.config import user_error_line
    args = parse_args(argv)
    holder: dict = {}
    try:
        return run_config(args, holder) if args.config else run_plain(args)
    except (ValueError, TypeError, FileNotFoundError, KeyError) as err:
        # a bad annotation value is traced to its file, sample and field
        line = user_error_line(err, holder.get('cfg')) or str(err)
        print(f'precompute.py: error: {line}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
