#!/usr/bin/env python
"""ShanghaiTech part A / B -> gst_mm crowd layout (docs/datasets.md).

Usage: python tools/dataset_converters/shanghaitech.py \
    data/raw/ShanghaiTech/part_A data/shanghaitech_a
Source: {train_data,test_data}/images/IMG_k.jpg + ground-truth/GT_IMG_k.mat
(points at image_info[0,0][0,0][0]); --val-fraction of train becomes val.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # _converter_cli adds the repo root
from _converter_cli import make_main  # noqa: E402

main = make_main('shanghaitech', __doc__, has_val_split=False)

if __name__ == '__main__':
    sys.exit(main())
