#!/usr/bin/env python
"""JHU-Crowd++ -> gst_mm crowd layout (docs/datasets.md).

Usage: python tools/dataset_converters/jhu_crowd.py data/raw/jhu_crowd_v2.0 data/jhu_crowd
Source: {train,val,test}/images/XXXX.jpg + gt/XXXX.txt (lines 'x y w h o b');
head boxes give covariances (std = side / 4); official splits kept.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from gst_mm.datasets.converters import converter_main  # noqa: E402


def main(argv=None) -> int:
    return converter_main('jhu_crowd', argv, __doc__, has_val_split=True)


if __name__ == '__main__':
    sys.exit(main())
