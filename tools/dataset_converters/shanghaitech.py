#!/usr/bin/env python
"""ShanghaiTech part A / B -> gst_mm crowd layout (docs/datasets.md).

Usage: python tools/dataset_converters/shanghaitech.py \
    data/raw/ShanghaiTech/part_A data/shanghaitech_a
Source: {train_data,test_data}/images/IMG_k.jpg + ground-truth/GT_IMG_k.mat
(points at image_info[0,0][0,0][0]); --val-fraction of train becomes val.
"""
import sys

from gst_mm.datasets.converters.cli import make_main

main = make_main('shanghaitech', __doc__, has_val_split=False)

if __name__ == '__main__':
    sys.exit(main())
