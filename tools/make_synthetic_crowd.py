"""Generate the synthetic crowd data set in the gst_mm crowd layout (docs/datasets.md).

    python tools/make_synthetic_crowd.py [--out data/synthetic_crowd] [--num-images 60]
        [--min-size 256 --max-size 384] [--min-objects 20 --max-objects 150]
        [--near-std 6 --far-scale 0.45 --max-aspect 1.8 ...] [--seed 0]
        [--config configs/counting/gst_vgg19_synthetic.py] [--force]

Textured backgrounds with distractor textures, objects drawn as anisotropic
Gaussian blobs of known covariance (smaller towards the top: perspective), drawn
far to near so near objects occlude far ones, thin occluding bars and sensor
noise (``gst_mm.datasets.synthetic_crowd``). Annotations are the object centres;
each annotation also stores the object's true covariance (px^2).

Deterministic: image ``k`` depends only on ``(seed, k)``, so the same settings
always write byte-identical files. ``--config`` takes the settings a counting
config expects (its ``synthetic_data`` dict and its ``data_root``); explicit
options override them. When OUT already holds the same data set (same
``synthetic_config.json``, all files present) nothing is rewritten unless
``--force`` is given.
"""
import argparse
import os.path as osp
import sys
import time
from dataclasses import asdict, fields
from typing import Dict, Optional, Sequence

import numpy as np

from gst_mm.datasets.layout import ANN_DIR, IMG_DIR, read_annotation, read_split
from gst_mm.datasets.synthetic_crowd import SyntheticCrowdConfig, load_config, write_dataset

DEFAULT_OUT = osp.join('data', 'synthetic_crowd')

# option -> (SyntheticCrowdConfig field, argparse kwargs)
_OPTIONS = {
    '--num-images': ('num_images', dict(type=int, help='images in the data set (default 60)')),
    '--min-size': ('min_size', dict(type=int, help='smallest image side, px (default 256)')),
    '--max-size': ('max_size', dict(type=int, help='largest image side, px (default 384)')),
    '--min-objects': ('min_objects', dict(type=int, help='fewest objects per image (default 20)')),
    '--max-objects': ('max_objects', dict(
        type=int, help='most objects per image (default 150; fewer are placed when crowded)')),
    '--near-std': ('near_std', dict(
        type=float, help='major-axis std of an object on the bottom row, px (default 6)')),
    '--far-scale': ('far_scale', dict(
        type=float, help='object size on the top row relative to the bottom row (default 0.45)')),
    '--max-aspect': ('max_aspect', dict(
        type=float, help='largest major / minor std ratio (default 1.8)')),
    '--min-spacing': ('min_spacing', dict(
        type=float, help='centres at least this times the sum of the two major stds apart '
        '(default 1.2)')),
    '--opacity-range': ('opacity_range', dict(
        type=float, nargs=2, metavar=('LOW', 'HIGH'), help='peak opacity range (default 0.85 1)')),
    '--extent': ('extent', dict(
        type=float, help='blobs are drawn out to this Mahalanobis radius (default 4)')),
    '--noise-std': ('noise_std', dict(
        type=float, help='sensor noise std, grey levels (default 2)')),
    '--annotation-jitter': ('annotation_jitter', dict(
        type=float, help='annotated points = centres + noise of this times the object '
        'std (default 0: exact centres)')),
    '--split-fractions': ('split_fractions', dict(
        type=float, nargs=3, metavar=('TRAIN', 'VAL', 'TEST'),
        help='split fractions (default 0.7 0.15 0.15)')),
    '--seed': ('seed', dict(type=int, help='master seed (default 0)')),
    '--jpeg-quality': ('jpeg_quality', dict(type=int, help='JPEG quality (default 95)')),
}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default=None,
                   help=f'output folder (default: the config\'s data_root, else {DEFAULT_OUT})')
    p.add_argument('--config', default=None,
                   help='counting config whose `synthetic_data` / `data_root` to use')
    for opt, (dest, kwargs) in _OPTIONS.items():
        p.add_argument(opt, dest=dest, default=None, **kwargs)
    p.add_argument('--no-distractors', dest='distractors', action='store_false', default=None,
                   help='no distractor textures in the background')
    p.add_argument('--no-occluders', dest='occluders', action='store_false', default=None,
                   help='no occluding bars over the objects')
    p.add_argument('--force', action='store_true', help='regenerate even if OUT is up to date')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p.parse_args(argv)


def config_settings(config_path: str) -> Dict:
    """``dict(settings=<synthetic_data>, data_root=...)`` of a counting config
    (needs mmengine)."""
    from mmengine.config import Config
    cfg = Config.fromfile(config_path)
    return dict(settings=dict(cfg.get('synthetic_data', None) or {}),
                data_root=cfg.get('data_root', None))


def build_config(args: argparse.Namespace, base: Optional[Dict] = None) -> SyntheticCrowdConfig:
    """Defaults <- ``base`` (e.g. a config's ``synthetic_data``) <- explicit options."""
    values = dict(base or {})
    for f in fields(SyntheticCrowdConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    for k in ('opacity_range', 'split_fractions'):
        if k in values:
            values[k] = tuple(float(x) for x in values[k])
    cfg = SyntheticCrowdConfig(**values)
    check_config(cfg)
    return cfg


def check_config(cfg: SyntheticCrowdConfig) -> None:
    """Raise ``ValueError`` for settings the generator cannot honour."""
    if cfg.num_images < 1:
        raise ValueError('--num-images must be at least 1')
    if not 16 <= cfg.min_size <= cfg.max_size:
        raise ValueError(f'need 16 <= --min-size <= --max-size, got {cfg.min_size}, '
                         f'{cfg.max_size}')
    if not 0 <= cfg.min_objects <= cfg.max_objects:
        raise ValueError(f'need 0 <= --min-objects <= --max-objects, got {cfg.min_objects}, '
                         f'{cfg.max_objects}')
    if cfg.near_std <= 0 or not 0 < cfg.far_scale <= 1 or cfg.max_aspect < 1:
        raise ValueError('need --near-std > 0, 0 < --far-scale <= 1 and --max-aspect >= 1')
    lo, hi = cfg.opacity_range
    if not 0 < lo <= hi <= 1:
        raise ValueError(f'need 0 < opacity low <= high <= 1, got {lo}, {hi}')
    if min(cfg.split_fractions) < 0 or sum(cfg.split_fractions) <= 0:
        raise ValueError(f'split fractions must be >= 0 with a positive sum, got '
                         f'{cfg.split_fractions}')


def up_to_date(out: str, cfg: SyntheticCrowdConfig) -> bool:
    """``out`` holds the data set of ``cfg`` with every listed file present."""
    if load_config(osp.join(out, 'synthetic_config.json')) != cfg:
        return False
    try:
        names = [n for s in ('train', 'val', 'test') for n in read_split(osp.join(out, f'{s}.txt'))]
    except FileNotFoundError:
        return False
    return len(names) == cfg.num_images and all(
        osp.isfile(osp.join(out, ANN_DIR, f'{n}.json'))
        and osp.isfile(osp.join(out, IMG_DIR, f'{n}.jpg')) for n in names)


def summary(out: str, splits: Dict[str, list]) -> str:
    """Sizes, object counts and object scales of the data set in ``out``."""
    counts, sizes, stds = [], [], []
    for names in splits.values():
        for n in names:
            ann = read_annotation(osp.join(out, ANN_DIR, f'{n}.json'))
            counts.append(len(ann.points))
            sizes.append((ann.width, ann.height))
            if ann.covariances is not None and len(ann.covariances):
                stds.append(np.sqrt(np.linalg.eigvalsh(ann.covariances.astype(np.float64))))
    counts_a = np.asarray(counts)
    sz = np.asarray(sizes)
    s = np.concatenate(stds) if stds else np.zeros(1)
    return '\n'.join([
        f'  images: {len(counts)} (' + ', '.join(f'{k} {len(v)}' for k, v in splits.items())
        + ')',
        f'  image size: {sz[:, 0].min()}-{sz[:, 0].max()} x {sz[:, 1].min()}-{sz[:, 1].max()} px',
        f'  objects: {int(counts_a.sum())} (per image {counts_a.min()}-{counts_a.max()}, '
        f'mean {counts_a.mean():.1f})',
        f'  object std (axis): {s.min():.1f}-{s.max():.1f} px',
    ])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the generator; returns the exit code (2 for invalid settings)."""
    args = parse_args(argv)
    base, out = {}, args.out
    if args.config:
        cs = config_settings(args.config)
        base = cs['settings']
        out = out or cs['data_root']
    out = out or DEFAULT_OUT
    try:
        cfg = build_config(args, base)
    except (TypeError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if not args.force and up_to_date(out, cfg):
        splits = {s: read_split(osp.join(out, f'{s}.txt')) for s in ('train', 'val', 'test')}
        print(f'synthetic crowd data set already in {osp.abspath(out)} (same settings; '
              '--force to rewrite)')
        print(summary(out, splits))
        return 0
    t0 = time.time()
    splits = write_dataset(out, cfg, progress=not args.quiet)
    print(f'wrote the synthetic crowd data set to {osp.abspath(out)} in {time.time() - t0:.1f} s '
          f'(seed {cfg.seed})')
    print(summary(out, splits))
    print('  settings: ' + ', '.join(f'{k}={v}' for k, v in asdict(cfg).items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
