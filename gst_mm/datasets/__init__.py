"""Crowd-counting data set and the data-pipeline transforms (crowd and pose)."""
from .crowd_dataset import CrowdCountingDataset
from .transforms import *  # noqa: F401,F403

__all__ = ['CrowdCountingDataset']
