#!/usr/bin/env python
"""ShanghaiTech part A / B -> gst_mm crowd layout (docs/datasets.md).

Usage: python tools/dataset_converters/shanghaitech.py \
    data/raw/ShanghaiTech/part_A data/shanghaitech_a
Source: {train_data,test_data}/images/IMG_k.jpg + ground-truth/GT_IMG_k.mat
(points at image_info[0,0][0,0][0]); --val-fraction of train becomes val.
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
    return converter_main('shanghaitech', argv, __doc__, has_val_split=False)


if __name__ == '__main__':
    sys.exit(main())
