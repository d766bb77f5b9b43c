"""ShanghaiTech part A / B: ``{train_data,test_data}/images/IMG_k.jpg`` with
``{train_data,test_data}/ground-truth/GT_IMG_k.mat`` (points (x, y) px)."""
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


def read_shanghaitech_mat(path: str) -> PointsAndCov:
    """ShanghaiTech ``GT_IMG_k.mat``: points at ``image_info[0, 0][0, 0][0]``
    (the struct's ``location`` field), ``(N, 2)`` (x, y) px; no covariances."""
    mat = _load_mat(path)
    if 'image_info' not in mat:
        raise LayoutError(f'{path}: no "image_info" variable (not a ShanghaiTech ground truth)')
    info = mat['image_info']
    try:
        rec = info[0, 0][0, 0]
        names = getattr(rec.dtype, 'names', None) or ()
        pts = rec['location'] if 'location' in names else rec[0]
    except (IndexError, TypeError, ValueError, KeyError) as e:
        raise LayoutError(f'{path}: unexpected image_info structure ({e})') from None
    return _as_points(pts, path), None


def list_shanghaitech(root: str) -> List[SourceSample]:
    """ShanghaiTech part A or B (``root`` = the ``part_A`` / ``part_B`` folder):
    ``{train_data,test_data}/images/IMG_k.jpg`` with
    ``{train_data,test_data}/ground-truth/GT_IMG_k.mat`` (``ground_truth`` accepted)."""
    _require_dirs(root, ('train_data', 'test_data'), 'ShanghaiTech (part_A / part_B)')
    out = []
    for folder, split in (('train_data', 'train'), ('test_data', 'test')):
        gt_dir = osp.join(root, folder, 'ground-truth')
        if not osp.isdir(gt_dir) and osp.isdir(osp.join(root, folder, 'ground_truth')):
            gt_dir = osp.join(root, folder, 'ground_truth')
        for img in _images_in(osp.join(root, folder, 'images')):
            stem = _stem(img)
            out.append(SourceSample(f'{split}_{stem}', split, img,
                                    osp.join(gt_dir, f'GT_{stem}.mat'), 'shanghaitech'))
    return out
