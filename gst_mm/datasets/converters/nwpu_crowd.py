"""NWPU-Crowd: ``images/XXXX.jpg``, ``jsons/XXXX.json`` (``points`` (x, y) px,
optional ``boxes`` ``[x1, y1, x2, y2]`` px) and ``train.txt`` / ``val.txt`` /
``test.txt`` (lines start with the image id; test annotations are not public)."""
from __future__ import annotations

import json
import os.path as osp
import warnings
from typing import List

import numpy as np

from ..layout import SPLITS, LayoutError, box_covariances
from .common import PointsAndCov, SourceSample, _as_points, _require_dirs


def read_nwpu_crowd_json(path: str, sigma_ratio: float = 0.25) -> PointsAndCov:
    """NWPU-Crowd ``jsons/XXXX.json``: ``points`` ``[[x, y], ...]`` -> ``(N, 2)``
    (x, y) px and optional ``boxes`` ``[[x1, y1, x2, y2], ...]`` (one per point)
    -> box covariances ``(N, 2, 2)`` px^2 (``std = sigma_ratio * side``). Boxes
    that do not match the points one for one are ignored with a warning."""
    if not osp.isfile(path):
        raise LayoutError(f'annotation file not found: {path}')
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        raise LayoutError(f'corrupt annotation file {path}: {e}') from None
    if not isinstance(d, dict) or 'points' not in d:
        raise LayoutError(f'{path}: no "points" list (not an NWPU-Crowd annotation)')
    pts = _as_points(d['points'], path)
    cov = None
    boxes = d.get('boxes')
    if boxes is not None and len(pts):
        b = np.asarray(boxes, np.float64) if len(boxes) else np.zeros((0, 4))
        if b.ndim != 2 or b.shape[1] != 4 or len(b) != len(pts):
            warnings.warn(f'{path}: {len(boxes)} boxes for {len(pts)} points; '
                          'boxes ignored (no covariances)', stacklevel=2)
        else:
            c, valid = box_covariances(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1], sigma_ratio)
            cov = c if valid.any() else None
    return pts, cov


def _nwpu_ids(list_file: str) -> List[str]:
    """Image ids of an NWPU-Crowd split list (first token of each line)."""
    with open(list_file) as f:
        return [ln.split()[0] for ln in f if ln.strip()]


def list_nwpu_crowd(root: str) -> List[SourceSample]:
    """NWPU-Crowd: ``images/XXXX.jpg``, ``jsons/XXXX.json`` and the split lists
    ``train.txt`` / ``val.txt`` / ``test.txt`` (lines start with the id). Test
    images have no public annotations: their ``ann_path`` is ``None`` unless a
    json is present."""
    _require_dirs(root, ('images', 'jsons'), 'NWPU-Crowd')
    out = []
    for split in SPLITS:
        list_file = osp.join(root, f'{split}.txt')
        if not osp.isfile(list_file):
            raise LayoutError(f'NWPU-Crowd split list not found: {list_file}')
        for image_id in _nwpu_ids(list_file):
            img = osp.join(root, 'images', f'{image_id}.jpg')
            ann = osp.join(root, 'jsons', f'{image_id}.json')
            if split == 'test' and not osp.isfile(ann):
                ann = None
            out.append(SourceSample(f'{split}_{image_id}', split, img, ann, 'nwpu_crowd'))
    return out
