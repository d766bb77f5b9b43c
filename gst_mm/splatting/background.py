"""The background layer behind the fitted Gaussians (method.md 3b).

The default fit composites its Gaussians over an estimated background: a median-
filtered image first (:func:`median_background`), then re-estimated from the pixels
the current fit leaves uncovered (:func:`reestimate_background`). The reference
preset pastes the image into a background mask instead (:func:`background_mask`).
All images ``(H, W, 3)`` float in [0, 1] unless stated.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from .gaussians import Gaussians2D
from .render import render


def background_mask(points: np.ndarray, knn: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool: pixels no isotropic disc of std ``clamp(knn/6, 2,
    0.015 max(W, H))`` reaches (alpha >= 1/255), i.e. background (*(ref)*)."""
    std = np.clip(knn / 6.0, 2.0, max(2.0, 0.015 * max(width, height)))
    means = torch.as_tensor(points, dtype=torch.float32)
    cov = torch.diag_embed(torch.as_tensor(np.stack([std, std], 1) ** 2, dtype=torch.float32))
    acc = render(Gaussians2D(means, cov), height, width, 'torch', compositing='sum',
                 return_alpha=True)[1]
    return (acc <= 0).numpy()


def median_background(image: np.ndarray, window: float) -> np.ndarray:
    """``(H, W, 3)`` float [0, 1] median-filtered image with a ~``window`` px median
    (computed on an image shrunk so the median kernel is 15 px, then resized back)."""
    import cv2
    h, w = image.shape[:2]
    f = max(1.0, window / 15.0)
    small = cv2.resize(image, (max(1, round(w / f)), max(1, round(h / f))),
                       interpolation=cv2.INTER_AREA) if f > 1 else image
    k = min(15, 2 * (min(small.shape[:2]) // 2) - 1)
    med = cv2.medianBlur(small, k) if k >= 3 else small
    med = cv2.resize(med, (w, h), interpolation=cv2.INTER_LINEAR) if f > 1 else med
    return med.astype(np.float32) / 255.0


def _smooth(values: np.ndarray, weights: np.ndarray, sigma: float) -> Tuple[np.ndarray, np.ndarray]:
    """Normalised Gaussian smoothing of ``values (H, W, C)`` with ``weights (H, W)``,
    computed on a grid shrunk so the kernel std is ~4 cells. Returns the smoothed
    values and the smoothed weights (``(H, W, 1)``)."""
    import cv2
    h, w = weights.shape
    f = max(1.0, sigma / 4.0)
    size = (max(1, round(w / f)), max(1, round(h / f)))
    num = values * weights[..., None]
    den = weights.astype(np.float32)
    if f > 1:
        num = cv2.resize(num, size, interpolation=cv2.INTER_AREA)
        den = cv2.resize(den, size, interpolation=cv2.INTER_AREA)
    num = cv2.GaussianBlur(num, (0, 0), sigma / f)
    den = cv2.GaussianBlur(den, (0, 0), sigma / f)
    if f > 1:
        num = cv2.resize(num, (w, h), interpolation=cv2.INTER_LINEAR)
        den = cv2.resize(den, (w, h), interpolation=cv2.INTER_LINEAR)
    den = den.reshape(h, w, 1)
    return num / np.maximum(den, 1e-6), den


def reestimate_background(image: np.ndarray, rgb: np.ndarray, acc: np.ndarray,
                          previous: np.ndarray, window: float,
                          max_alpha: float = 0.5) -> np.ndarray:
    """Re-estimate the background layer from what the current fit leaves uncovered.

    Where the accumulated alpha ``acc (H, W)`` of the Gaussians is below
    ``max_alpha``, the background is seen directly: ``(image - rgb) / (1 - acc)``
    (the fitted Gaussians' own colour removed). These estimates, weighted by
    ``(1 - acc)^2``, are smoothed into the covered pixels (normalised Gaussian, coarse
    to fine: std ``window``, ``window/2``, ``/4``, ``/8`` px, each finer level
    overriding where it has enough support); where none is near, ``previous`` is kept.

    Args: ``image``, ``rgb`` (the Gaussians alone, sum-composited), ``previous``:
    ``(H, W, 3)`` float [0, 1]; ``window``: object-spacing scale in px.
    """
    vis = np.clip(1.0 - acc, 0.0, 1.0)
    weight = np.where(acc < max_alpha, vis * vis, 0.0).astype(np.float32)
    unmixed = np.clip((image - rgb) / np.maximum(vis, 1e-3)[..., None], 0.0, 1.0)
    unmixed = unmixed.astype(np.float32)
    est = previous
    for div in (1.0, 2.0, 4.0, 8.0):  # coarse to fine: large gaps filled from far away
        smooth, den = _smooth(unmixed, weight, max(1.0, window / div))
        trust = np.clip(den / 0.05, 0.0, 1.0)
        est = trust * smooth + (1 - trust) * est
    return est.astype(np.float32)
