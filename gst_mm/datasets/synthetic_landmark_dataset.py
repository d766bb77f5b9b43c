"""MMPose data set of the synthetic landmark figures (:mod:`.synthetic_pose`)."""
from __future__ import annotations

import copy

from mmpose.datasets.datasets.body import CocoDataset

from gst_mm.registry import DATASETS

from .synthetic_pose import DATASET_INFO


@DATASETS.register_module()
class SyntheticLandmarkDataset(CocoDataset):
    """COCO-format top-down data set written by
    :func:`gst_mm.datasets.synthetic_pose.write_dataset` (``tools/make_synthetic_pose.py``):
    11 landmarks per figure, keypoints in pixel indices, one figure per image.
    Everything else is MMPose's ``CocoDataset``."""

    METAINFO: dict = copy.deepcopy(DATASET_INFO)
