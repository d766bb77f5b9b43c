"""Engine components: the precompute hook and data set -> fit-sample collection."""
from .hooks import GSTPrecomputeHook
from .precompute import (
    collect_gaussian_samples,
    dataset_cache_dir,
    dataset_data_root,
    precompute_dataset,
)

__all__ = [
    'GSTPrecomputeHook', 'collect_gaussian_samples', 'dataset_cache_dir', 'dataset_data_root',
    'precompute_dataset'
]
