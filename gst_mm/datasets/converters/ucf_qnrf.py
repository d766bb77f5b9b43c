"""UCF-QNRF: ``{Train,Test}/img_XXXX.jpg`` with ``img_XXXX_ann.mat`` beside it
(``annPoints`` (N, 2) (x, y) px; MATLAB v7.3 files read through h5py)."""
from __future__ import annotations

import os.path as osp
from typing import List

from ..layout import LayoutError
from .common import (
    PointsAndCov,
    SourceSample,
    _as_points,
    _images_in,
    _load_mat,
    _require_dirs,
    _stem,
)


def read_ucf_qnrf_mat(path: str) -> PointsAndCov:
    """UCF-QNRF ``img_XXXX_ann.mat``: ``annPoints`` ``(N, 2)`` (x, y) px; no covariances."""
    mat = _load_mat(path)
    if 'annPoints' not in mat:
        raise LayoutError(f'{path}: no "annPoints" variable (not a UCF-QNRF annotation)')
    return _as_points(mat['annPoints'], path), None


def list_ucf_qnrf(root: str) -> List[SourceSample]:
    """UCF-QNRF (``root`` = ``UCF-QNRF_ECCV18``): ``{Train,Test}/img_XXXX.jpg``
    with ``img_XXXX_ann.mat`` beside it (names clash across the two splits,
    hence the split prefix of the output names)."""
    _require_dirs(root, ('Train', 'Test'), 'UCF-QNRF')
    out = []
    for folder, split in (('Train', 'train'), ('Test', 'test')):
        for img in _images_in(osp.join(root, folder)):
            stem = _stem(img)
            out.append(SourceSample(f'{split}_{stem}', split, img,
                                    osp.join(root, folder, f'{stem}_ann.mat'), 'ucf_qnrf'))
    return out
