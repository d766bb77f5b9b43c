"""The fit's initial stds (method.md 3; docs/fit_scale.md) and the background window.

:func:`initial_stds` turns ``init`` (``'scale'`` / ``'knn'`` / ``'reference'``) into one
std per annotation; the ``'scale'`` init reads the image twice (:mod:`.scale`), the
second time with the background seen between the objects subtracted
(:func:`.background.masked_background`), and hands that background to the fit.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .background import masked_background
from .fit_config import WINDOW_CAP
from .scale import nearest_distance, scale_space_std


def background_window(knn: np.ndarray, init_std: np.ndarray, height: int, width: int) -> float:
    """The background estimate's window px: it spans the objects (their initial stds
    ``(N,)`` px) and their gaps (kNN distances ``(N,)`` px), in [15, max(H, W) /
    WINDOW_CAP]."""
    if len(knn) == 0:
        return max(15.0, max(height, width) / WINDOW_CAP)
    return float(np.clip(max(2.0 * np.median(knn), 6.0 * np.median(init_std)), 15.0,
                         max(15.0, max(height, width) / WINDOW_CAP)))


def initial_stds(image: np.ndarray, points: np.ndarray, knn: np.ndarray, init: str,
                 knn_fraction: float = 0.3,
                 init_mask: float = 0.5) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``((N,) initial std px, background or None)`` of the Gaussians at ``points (N,
    2)`` of ``image`` (``(H, W, 3)`` uint8 RGB); the background ``(H, W, 3)`` float32
    [0, 1] is the masked one of the second reading (the ``'estimate'`` fit starts
    from it), ``None`` for the other inits:

    * ``'scale'``: read from the image (:func:`.scale.scale_space_std`); with
      ``init_mask > 0`` read a second time from the image minus the background seen
      outside discs of radius ``min(2.5 s_1, init_mask * d_1)`` around the points
      (:func:`.background.masked_background`; ``s_1`` the first reading, ``d_1`` the
      nearest-neighbour distance px): a smooth background's own Laplacian otherwise
      outweighs low-contrast objects at large scales;
    * ``'knn'``: ``knn_fraction * d_knn`` (>= 1 px), the spacing heuristic;
    * ``'reference'``: the authors' ``1 + max(ln d_knn, 2)``.
    """
    if init == 'scale':
        if not (init_mask > 0 and len(points)):
            return scale_space_std(image, points), None
        est = scale_space_std(image, points, per_octave=2)  # only sizes the discs
        h, w = image.shape[:2]
        radii = np.minimum(2.5 * est, np.maximum(init_mask * nearest_distance(points), 1.0))
        bg = masked_background(image, points, radii, background_window(knn, est, h, w))
        diff = image.astype(np.float32)
        diff *= 1.0 / 255.0
        diff -= bg
        return scale_space_std(diff, points), bg
    if init == 'reference':
        return 1.0 + np.maximum(np.log(np.maximum(knn, 1e-12)), 2.0), None
    return np.maximum(knn_fraction * knn, 1.0), None
