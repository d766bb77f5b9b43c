"""Engine components: the precompute hook and data set -> fit-sample collection."""
from .hooks import GSTPrecomputeHook
from .precompute import (
    CacheGroup,
    CacheReport,
    cache_groups,
    check_dataset,
    collect_gaussian_samples,
    dataset_cache_dir,
    dataset_data_root,
    precompute_dataset,
)

__all__ = [
    'GSTPrecomputeHook', 'CacheGroup', 'CacheReport', 'cache_groups', 'check_dataset',
    'collect_gaussian_samples', 'dataset_cache_dir', 'dataset_data_root',
    'precompute_dataset'
]
