"""MPII helpers for small samples that ship without ``mpii_gt_val.mat``."""
from __future__ import annotations

import json

import numpy as np


def write_mpii_headboxes(ann_file: str, out_file: str) -> str:
    """Write an MPII-style ``headboxes_src (2, 2, N)`` .mat file for ``ann_file``
    (MMPose's MPII json), one box per annotation spanned by its upper-neck (8) and
    head-top (9) joints (pixels), so ``MpiiDataset(headbox_file=...)`` and
    ``MpiiPCKAccuracy`` (PCKh) work on a sample without MPII's official
    ``mpii_gt_val.mat``. Returns ``out_file``."""
    from scipy.io import savemat
    with open(ann_file) as f:
        anns = json.load(f)
    boxes = np.zeros((2, 2, len(anns)), np.float64)
    for i, ann in enumerate(anns):
        j = np.asarray(ann['joints'], np.float64)
        boxes[:, :, i] = np.stack([j[8], j[9]])
    savemat(out_file, {'headboxes_src': boxes})
    return out_file
