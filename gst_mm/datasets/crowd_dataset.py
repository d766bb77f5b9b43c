"""The crowd-counting data set (gst_mm layout, docs/datasets.md)."""
from __future__ import annotations

import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
from mmengine.dataset import BaseDataset

from gst_mm.registry import DATASETS

from .layout import LayoutError, read_annotation, read_split


@DATASETS.register_module()
class CrowdCountingDataset(BaseDataset):
    """Images with point annotations in the gst_mm crowd layout.

    ``<data_root>/<ann_file>`` lists sample names; each has
    ``<data_prefix.img>/<image>`` and ``<data_prefix.ann>/<name>.json``.

    Data infos (what the pipeline and ``GSTPrecomputeHook`` read):
    ``img_path``, ``img_id`` (the name), ``points`` float32 ``(N, 2)`` (x, y) px
    with pixel centres at +0.5, ``ori_points`` (a copy the transforms leave alone:
    the original annotations), ``ori_count`` (N), ``height``/``width``, and
    ``gt_covariances`` float32 ``(N, 2, 2)`` px^2 when the annotation has them.

    Args:
        data_root: root of the layout.
        ann_file: split file relative to ``data_root`` (``train.txt``...).
        data_prefix: ``img`` and ``ann`` folders relative to ``data_root``.
        pipeline: the data pipeline.
        test_mode: evaluation data set.
        outside_tolerance: points up to this many px outside the image are
            clipped onto its border; points further out are an error naming the
            annotation file (converters clean real data sets beforehand).
    """

    METAINFO = dict(dataset_name='crowd_counting')

    def __init__(self,
                 data_root: str = '',
                 ann_file: str = 'train.txt',
                 data_prefix: Optional[dict] = None,
                 pipeline: Sequence = (),
                 test_mode: bool = False,
                 outside_tolerance: float = 2.0,
                 **kwargs) -> None:
        self.outside_tolerance = float(outside_tolerance)
        super().__init__(
            data_root=data_root,
            ann_file=ann_file,
            data_prefix=dict(data_prefix or dict(img='images/', ann='annotations/')),
            pipeline=list(pipeline),
            test_mode=test_mode,
            **kwargs)

    def _check_inside(self, points: np.ndarray, width: int, height: int,
                      source: str) -> np.ndarray:
        if len(points) == 0:
            return points
        tol = self.outside_tolerance
        out = ((points[:, 0] < -tol) | (points[:, 0] > width + tol)
               | (points[:, 1] < -tol) | (points[:, 1] > height + tol))
        if out.any():
            x, y = points[np.flatnonzero(out)[0]]
            raise LayoutError(
                f'{source}: {int(out.sum())} point(s) outside the {width}x{height} image, '
                f'e.g. ({x:.1f}, {y:.1f}); re-run the data set converter, which clips or '
                'drops them')
        points = points.copy()
        points[:, 0] = np.clip(points[:, 0], 0.0, float(width))
        points[:, 1] = np.clip(points[:, 1], 0.0, float(height))
        return points

    def load_data_list(self) -> List[dict]:
        img_dir = self.data_prefix.get('img', '')
        ann_dir = self.data_prefix.get('ann', '')
        data_list = []
        for name in read_split(self.ann_file):
            ann_path = osp.join(ann_dir, f'{name}.json')
            ann = read_annotation(ann_path)
            points = self._check_inside(ann.points, ann.width, ann.height, ann_path)
            info = dict(
                img_path=osp.join(img_dir, ann.image),
                img_id=name,
                data_root=self.data_root,
                points=points.astype(np.float32),
                # the original annotations, untouched by the pipeline's transforms
                # (the test pipeline packs them for localisation at the original size)
                ori_points=points.astype(np.float32),
                ori_count=int(len(points)),
                height=int(ann.height),
                width=int(ann.width))
            if ann.covariances is not None:
                info['gt_covariances'] = ann.covariances.astype(np.float32)
            data_list.append(info)
        if not data_list:
            raise LayoutError(f'{self.ann_file} lists no samples')
        return data_list
