"""The command line shared by the data set converters of ``tools/dataset_converters/``.

``shanghaitech.py``, ``ucf_qnrf.py``, ``jhu_crowd.py`` and ``nwpu_crowd.py`` each get
their ``main(argv)`` from :func:`make_main`, with their own usage docstring as the
``--help`` description and the common behaviour (:data:`CONVERTER_EPILOG`) as its
epilog; the conversion itself is :func:`gst_mm.datasets.converters.convert_dataset`.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
from typing import Callable, Optional, Sequence

from gst_mm.datasets.converters import ConvertOptions, convert_dataset
from gst_mm.datasets.layout import LayoutError

CONVERTER_EPILOG = """\
Points are cleaned (clipped onto the image within --tolerance px, dropped further out,
with a warning naming the file), images resized so the short side is in
[--min-short, --max-short] (default [512, 2048]) with points and covariances scaled,
split files (train.txt / val.txt / test.txt) and conversion_report.json written
(docs/datasets.md). Exit code 0 when at least one image was converted."""


def build_parser(description: str, has_val_split: bool) -> argparse.ArgumentParser:
    """The common options of every converter command line (``description``: the
    converter's own docstring; the common behaviour is the epilog)."""
    p = argparse.ArgumentParser(description=description, epilog=CONVERTER_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src_root', help='folder of the downloaded data set')
    p.add_argument('out_root', help='output folder (gst_mm crowd layout, docs/datasets.md)')
    p.add_argument('--min-short', type=int, default=512,
                   help='smallest short side of the written images (px, default 512)')
    p.add_argument('--max-short', type=int, default=2048,
                   help='largest short side of the written images (px, default 2048)')
    p.add_argument('--tolerance', type=float, default=2.0,
                   help='points up to this many px outside the image are clipped onto it, '
                   'further ones dropped (default 2)')
    p.add_argument('--quality', type=int, default=95, help='JPEG quality of resized images')
    p.add_argument('--workers', type=int, default=1, help='conversion processes (default 1)')
    p.add_argument('--skip-existing', action='store_true',
                   help='keep samples already converted into OUT_ROOT (resume a run)')
    if not has_val_split:
        p.add_argument('--val-fraction', type=float, default=0.1,
                       help='fraction of the training images held out as val.txt '
                       '(default 0.1; 0 = use the test images as val, as in published code)')
        p.add_argument('--seed', type=int, default=0, help='seed of the val hold-out')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


def converter_main(dataset: str, argv: Optional[Sequence[str]], description: str,
                   has_val_split: bool) -> int:
    """Run one converter command line; returns the exit code (0 when at least
    one image was converted, 1 otherwise; 2 for bad options)."""
    args = build_parser(description, has_val_split).parse_args(argv)
    if not 0 < args.min_short <= args.max_short:
        print(f'error: need 0 < --min-short <= --max-short, got {args.min_short}, '
              f'{args.max_short}', file=sys.stderr)
        return 2
    options = ConvertOptions(args.min_short, args.max_short, args.tolerance, args.quality,
                             args.skip_existing)

    def say(msg: str) -> None:
        try:
            from tqdm import tqdm
            tqdm.write(msg, file=sys.stderr)
        except ImportError:  # pragma: no cover
            print(msg, file=sys.stderr)

    try:
        summary = convert_dataset(dataset, args.src_root, args.out_root, options,
                                  workers=args.workers,
                                  val_fraction=getattr(args, 'val_fraction', None),
                                  seed=getattr(args, 'seed', 0), progress=not args.quiet,
                                  on_message=say)
    except LayoutError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(summary.format())
    print(f'wrote {osp.join(osp.abspath(args.out_root), "conversion_report.json")}')
    return 0 if summary.images else 1


def make_main(dataset: str, description: str,
              has_val_split: bool) -> Callable[[Optional[Sequence[str]]], int]:
    """``main(argv=None) -> exit code`` of the converter of ``dataset`` (a key of
    :data:`gst_mm.datasets.converters.LISTERS`; ``description``: the script's
    docstring; ``has_val_split``: the source has its own val split, else
    ``--val-fraction`` / ``--seed`` are offered)."""

    def main(argv: Optional[Sequence[str]] = None) -> int:
        return converter_main(dataset, argv, description, has_val_split)

    return main
