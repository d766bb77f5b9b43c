"""Crowd counters."""
from .density_counter import DensityCounter, tile_bounds

__all__ = ['DensityCounter', 'tile_bounds']
