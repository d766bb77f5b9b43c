"""Registered metrics."""
from .counting_metric import CountingMetric, density_peaks, greedy_match_counts, to_original_pixels

__all__ = ['CountingMetric', 'density_peaks', 'greedy_match_counts', 'to_original_pixels']
