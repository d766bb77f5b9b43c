#!/usr/bin/env python
"""JHU-Crowd++ -> gst_mm crowd layout (docs/datasets.md).

Usage: python tools/dataset_converters/jhu_crowd.py data/raw/jhu_crowd_v2.0 data/jhu_crowd
Source: {train,val,test}/images/XXXX.jpg + gt/XXXX.txt (lines 'x y w h o b');
head boxes give covariances (std = side / 4); official splits kept.
"""
import sys

from gst_mm.datasets.converters.cli import make_main

main = make_main('jhu_crowd', __doc__, has_val_split=True)

if __name__ == '__main__':
    sys.exit(main())
