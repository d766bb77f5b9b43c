#!/usr/bin/env python
"""UCF-QNRF -> gst_mm crowd layout (docs/datasets.md).

Usage: python tools/dataset_converters/ucf_qnrf.py data/raw/UCF-QNRF_ECCV18 data/ucf_qnrf
Source: {Train,Test}/img_XXXX.jpg + img_XXXX_ann.mat (annPoints (N, 2));
--val-fraction of train becomes val.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # _converter_cli adds the repo root
from _converter_cli import make_main  # noqa: E402

main = make_main('ucf_qnrf', __doc__, has_val_split=False)

if __name__ == '__main__':
    sys.exit(main())
