#!/usr/bin/env python
"""JHU-Crowd++ -> gst_mm crowd layout (docs/datasets.md).

Usage: python tools/dataset_converters/jhu_crowd.py data/raw/jhu_crowd_v2.0 data/jhu_crowd
Source: {train,val,test}/images/XXXX.jpg + gt/XXXX.txt (lines 'x y w h o b');
head boxes give covariances (std = side / 4); official splits kept.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # _converter_cli adds the repo root
from _converter_cli import make_main  # noqa: E402

main = make_main('jhu_crowd', __doc__, has_val_split=True)

if __name__ == '__main__':
    sys.exit(main())
