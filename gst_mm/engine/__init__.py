"""Engine components: the precompute hook and data set -> fit-sample collection."""
from .hooks import GSTPrecomputeHook
from .precompute import collect_gaussian_samples, precompute_dataset

__all__ = ['GSTPrecomputeHook', 'collect_gaussian_samples', 'precompute_dataset']
