"""JHU-Crowd++: ``{train,val,test}/images/XXXX.jpg`` with
``{train,val,test}/gt/XXXX.txt`` (one head per line ``x y w h o b``, px)."""
from __future__ import annotations

import os.path as osp
from typing import List

import numpy as np

from ..layout import SPLITS, LayoutError, box_covariances
from .common import PointsAndCov, SourceSample, _images_in, _require_dirs, _stem


def read_jhu_crowd_txt(path: str, sigma_ratio: float = 0.25) -> PointsAndCov:
    """JHU-Crowd++ ``gt/XXXX.txt``: one head per line ``x y w h o b`` (centre,
    box width / height in px, occlusion and blur levels).

    Returns points ``(N, 2)`` (x, y) px and covariances ``(N, 2, 2)`` px^2 from
    the boxes (:func:`gst_mm.datasets.layout.box_covariances`, ``std =
    sigma_ratio * side``); lines without a box get the median box, files
    without any box no covariances (``None``).
    """
    if not osp.isfile(path):
        raise LayoutError(f'annotation file not found: {path}')
    rows: List[List[float]] = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise LayoutError(f'corrupt annotation file {path}: {e}') from None
    for lineno, line in enumerate(lines, 1):
        fields = line.replace(',', ' ').split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise LayoutError(f'{path}:{lineno}: expected numbers "x y w h o b", '
                              f'got {line.strip()!r}') from None
        if len(values) < 2:
            raise LayoutError(f'{path}:{lineno}: expected at least "x y", got {line.strip()!r}')
        rows.append((values + [np.nan, np.nan])[:4])
    if not rows:
        return np.zeros((0, 2), np.float64), None
    a = np.asarray(rows, np.float64)
    cov, valid = box_covariances(a[:, 2], a[:, 3], sigma_ratio)
    return a[:, :2].copy(), (cov if valid.any() else None)


def list_jhu_crowd(root: str) -> List[SourceSample]:
    """JHU-Crowd++ (``root`` = ``jhu_crowd_v2.0``): ``{train,val,test}/images/XXXX.jpg``
    with ``{train,val,test}/gt/XXXX.txt``."""
    _require_dirs(root, SPLITS, 'JHU-Crowd++')
    out = []
    for split in SPLITS:
        for img in _images_in(osp.join(root, split, 'images')):
            stem = _stem(img)
            out.append(SourceSample(f'{split}_{stem}', split, img,
                                    osp.join(root, split, 'gt', f'{stem}.txt'), 'jhu_crowd'))
    return out
