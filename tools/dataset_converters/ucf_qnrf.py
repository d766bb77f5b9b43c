#!/usr/bin/env python
"""UCF-QNRF -> gst_mm crowd layout (docs/datasets.md).

Usage: python tools/dataset_converters/ucf_qnrf.py data/raw/UCF-QNRF_ECCV18 data/ucf_qnrf
Source: {Train,Test}/img_XXXX.jpg + img_XXXX_ann.mat (annPoints (N, 2));
--val-fraction of train becomes val.
"""
import sys

from gst_mm.datasets.converters.cli import make_main

main = make_main('ucf_qnrf', __doc__, has_val_split=False)

if __name__ == '__main__':
    sys.exit(main())
