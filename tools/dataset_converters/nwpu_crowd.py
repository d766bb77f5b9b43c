#!/usr/bin/env python
"""NWPU-Crowd -> gst_mm crowd layout (docs/datasets.md).

Usage: python tools/dataset_converters/nwpu_crowd.py data/raw/NWPU-Crowd data/nwpu_crowd
Source: images/XXXX.jpg + jsons/XXXX.json (points, optional boxes) and
train.txt / val.txt / test.txt; test annotations are not public (empty lists).
"""
import sys

from gst_mm.datasets.converters.cli import make_main

main = make_main('nwpu_crowd', __doc__, has_val_split=True)

if __name__ == '__main__':
    sys.exit(main())
