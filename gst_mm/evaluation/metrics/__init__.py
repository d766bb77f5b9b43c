"""Registered metrics."""
from .counting_metric import CountingMetric, density_peaks, greedy_match_counts

__all__ = ['CountingMetric', 'density_peaks', 'greedy_match_counts']
