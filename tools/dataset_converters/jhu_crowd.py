#!/usr/bin/env python
"""JHU-Crowd++ -> gst_mm crowd layout (docs/datasets.md).

Usage: python tools/dataset_converters/jhu_crowd.py data/raw/jhu_crowd_v2.0 data/jhu_crowd
Source: {train,val,test}/images/XXXX.jpg + gt/XXXX.txt (lines 'x y w h o b');
head boxes give covariances (std = side / 4); official splits kept.
Thin wrapper around ``gst_mm.datasets.converters.converter_main``: points are
cleaned (clipped within --tolerance px, dropped further out, with a warning naming
the file), images resized so the short side is in [--min-short, --max-short]
(default [512, 2048]) with points and covariances scaled, split files and
conversion_report.json written. Exit code 0 when at least one image converted.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from gst_mm.datasets.converters import converter_main  # noqa: E402


def main(argv=None) -> int:
    return converter_main('jhu_crowd', argv, __doc__, has_val_split=True)


if __name__ == '__main__':
    sys.exit(main())
