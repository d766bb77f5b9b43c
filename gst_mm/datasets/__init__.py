"""Crowd-counting and synthetic landmark data sets; data-pipeline transforms (crowd and pose)."""
from .crowd_dataset import CrowdCountingDataset
from .synthetic_landmark_dataset import SyntheticLandmarkDataset
from .transforms import *  # noqa: F401,F403

__all__ = ['CrowdCountingDataset', 'SyntheticLandmarkDataset']
