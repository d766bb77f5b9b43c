#!/usr/bin/env python
"""NWPU-Crowd -> gst_mm crowd layout (docs/datasets.md).

Usage: python tools/dataset_converters/nwpu_crowd.py data/raw/NWPU-Crowd data/nwpu_crowd
Source: images/XXXX.jpg + jsons/XXXX.json (points, optional boxes) and
train.txt / val.txt / test.txt; test annotations are not public (empty lists).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # _converter_cli adds the repo root
from _converter_cli import make_main  # noqa: E402

main = make_main('nwpu_crowd', __doc__, has_val_split=True)

if __name__ == '__main__':
    sys.exit(main())
