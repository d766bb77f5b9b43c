"""Engine components: the precompute hook and data set -> fit-sample collection."""
from .hooks import GSTPrecomputeHook
from .precompute import (
    CacheGroup,
    CacheReport,
    CacheSpec,
    cache_groups,
    check_dataset,
    collect_gaussian_samples,
    dataset_cache_dir,
    dataset_data_root,
    fit_image,
    hook_cfg_of,
    precompute_config,
    precompute_dataset,
    resolve_cache,
)

__all__ = [
    'GSTPrecomputeHook', 'CacheGroup', 'CacheReport', 'CacheSpec', 'cache_groups',
    'check_dataset', 'collect_gaussian_samples', 'dataset_cache_dir', 'dataset_data_root',
    'fit_image', 'hook_cfg_of', 'precompute_config', 'precompute_dataset', 'resolve_cache'
]
