"""2D Gaussian splatting precompute of GST (pure PyTorch / NumPy, no OpenMMLab).

* :class:`Gaussians2D` — means (x, y) px, covariances px^2, colours; affine transform.
* :func:`render` — differentiable splatting with gsplat's conventions (torch / gsplat).
* :func:`fit_gaussians` — one Gaussian per annotation point, mean pinned (or, with
  ``plan='soft'``, free Gaussians reduced onto the points: :class:`SoftGaussians`).
* :class:`GaussianCache` — one atomic HDF5 file per image; :func:`fit_missing` fits
  the images without a valid cache.
"""
from .cache import CacheKeyError, GaussianCache, GaussianCacheError, default_cache_dir
from .fit import FitInfo, fit_gaussians
from .gaussians import Gaussians2D
from .image_io import ImageReadError, file_sha1, file_sha1_memo, read_image, read_image_file
from .knn import knn_distance, knn_distances
from .precompute import GaussianSample, PrecomputeSummary, fit_missing
from .render import render
from .soft_gaussians import SoftGaussians

__all__ = [
    'Gaussians2D', 'render', 'fit_gaussians', 'FitInfo', 'read_image', 'GaussianCache',
    'GaussianCacheError', 'GaussianSample', 'fit_missing', 'PrecomputeSummary',
    'default_cache_dir', 'CacheKeyError', 'ImageReadError', 'file_sha1', 'file_sha1_memo',
    'read_image_file', 'knn_distance', 'knn_distances', 'SoftGaussians',
]
