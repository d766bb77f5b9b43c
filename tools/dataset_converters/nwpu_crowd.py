#!/usr/bin/env python
"""NWPU-Crowd -> gst_mm crowd layout (docs/datasets.md).

Usage: python tools/dataset_converters/nwpu_crowd.py data/raw/NWPU-Crowd data/nwpu_crowd
Source: images/XXXX.jpg + jsons/XXXX.json (points, optional boxes) and
train.txt / val.txt / test.txt; test annotations are not public (empty lists).
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
    return converter_main('nwpu_crowd', argv, __doc__, has_val_split=True)


if __name__ == '__main__':
    sys.exit(main())
