"""The background layer behind the fitted Gaussians (method.md 3b).

The default fit composites its Gaussians over an estimated background: first the
background seen between the objects before any fit (:func:`masked_background`, which
the scale init also subtracts; the median-filtered image, :func:`median_background`,
where nothing is seen), then re-estimated from the pixels the current fit leaves
uncovered (:func:`reestimate_background`). The reference
preset pastes the image into a background mask instead (:func:`background_mask`).
All images ``(H, W, 3)`` float in [0, 1] unless stated.
"""
from __future__ import annotations

from typing import Optional, Tuple

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


def _smooth(num: np.ndarray, den: np.ndarray, sigma: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Normalised Gaussian smoothing: ``num (H, W, C)`` (values times weights) and
    ``den (H, W)`` (the weights) are blurred on a grid shrunk so the kernel std is ~4
    cells and brought back. Returns the smoothed values ``num / den`` and the smoothed
    weights ``(H, W, 1)`` as float32 tensors (CPU)."""
    import cv2
    h, w = den.shape
    f = max(1.0, sigma / 4.0)
    size = (max(1, round(w / f)), max(1, round(h / f)))
    if f > 1:
        num = cv2.resize(num, size, interpolation=cv2.INTER_AREA)
        den = cv2.resize(den, size, interpolation=cv2.INTER_AREA)
    num = cv2.GaussianBlur(num, (0, 0), sigma / f)
    den = cv2.GaussianBlur(den, (0, 0), sigma / f)
    if f > 1:
        num = cv2.resize(num, (w, h), interpolation=cv2.INTER_LINEAR)
        den = cv2.resize(den, (w, h), interpolation=cv2.INTER_LINEAR)
    num_t = torch.from_numpy(np.ascontiguousarray(num))
    den_t = torch.from_numpy(np.ascontiguousarray(den)).reshape(h, w, 1)
    return num_t.div_(den_t.clamp_min(1e-6)), den_t


def masked_background(image: np.ndarray, points: np.ndarray, radii: np.ndarray,
                      window: float) -> np.ndarray:
    """The background seen outside discs around the objects, before any fit.

    Pixels farther than ``radii (N,)`` px from every point ``(N, 2)`` px (x, y) are
    taken as background and smoothed into the discs as :func:`reestimate_background`
    does (``window`` px); where no seen pixel is near, the median background
    (:func:`median_background`) is kept. Computed on the image shrunk by
    ``max(1, floor(window / 32))`` (the finest smoothing, ``window / 8`` px, stays >= 4
    px there) and brought back bilinearly. ``image``: ``(H, W, 3)`` uint8 RGB.
    Returns ``(H, W, 3)`` float32 in [0, 1].
    """
    import cv2
    h, w = image.shape[:2]
    f = max(1, int(window // 32))
    small = image if f == 1 else cv2.resize(
        image, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    sx, sy = w / small.shape[1], h / small.shape[0]
    covered = np.zeros(small.shape[:2], np.uint8)
    # cv2 draws at integer pixel centres: 4 fractional bits for sub-pixel centre, radius
    for (x, y), r in zip(np.asarray(points, np.float64), np.asarray(radii, np.float64)):
        cv2.circle(covered, (int(round((x / sx - 0.5) * 16)), int(round((y / sy - 0.5) * 16))),
                   int(round(r / np.sqrt(sx * sy) * 16)), 1, thickness=-1, shift=4)
    win = window / np.sqrt(sx * sy)
    bg = reestimate_background(small.astype(np.float32) / 255.0, None,
                               covered.astype(np.float32), median_background(small, win), win)
    return bg if f == 1 else cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)


@torch.no_grad()
def reestimate_background(image: np.ndarray, rgb: Optional[np.ndarray], acc: np.ndarray,
                          previous: np.ndarray, window: float,
                          max_alpha: float = 0.5) -> np.ndarray:
    """Re-estimate the background layer from what the current fit leaves uncovered.

    Where the accumulated alpha ``acc (H, W)`` of the Gaussians is below
    ``max_alpha``, the background is seen directly: ``(image - rgb) / (1 - acc)``
    (the fitted Gaussians' own colour removed). These estimates, weighted by
    ``(1 - acc)^2``, are smoothed into the covered pixels (normalised Gaussian, coarse
    to fine: std ``window``, ``window/2``, ``/4``, ``/8`` px, each finer level
    overriding where it has enough support); where none is near, ``previous`` is kept.
    The per-pixel steps run as in-place float32 torch operations (torch's threads).

    Args: ``image``, ``rgb`` (the Gaussians alone, sum-composited; ``None``: nothing
    fitted), ``previous``: ``(H, W, 3)`` float [0, 1]; ``acc``: ``(H, W)``;
    ``window``: object-spacing scale in px.
    Returns ``(H, W, 3)`` float32.
    """
    acc_t = torch.from_numpy(np.ascontiguousarray(acc, np.float32))
    vis = acc_t.neg().add_(1.0).clamp_(0.0, 1.0)
    weight = torch.where(acc_t < max_alpha, vis * vis, torch.zeros(()))
    unmixed = torch.from_numpy(np.ascontiguousarray(image, np.float32))
    if rgb is not None:  # a new tensor either way: the caller's image is not written to
        unmixed = unmixed.sub(torch.from_numpy(np.ascontiguousarray(rgb, np.float32)))
        unmixed.div_(vis.clamp_(min=1e-3)[..., None])
    else:
        unmixed = unmixed.div(vis.clamp_(min=1e-3)[..., None])
    unmixed.clamp_(0.0, 1.0)
    num = unmixed.mul_(weight[..., None]).numpy()  # the weighted values, once for all levels
    den = weight.numpy()
    est = torch.from_numpy(np.ascontiguousarray(previous, np.float32))
    for div in (1.0, 2.0, 4.0, 8.0):  # coarse to fine: large gaps filled from far away
        smooth, trust = _smooth(num, den, max(1.0, window / div))
        trust.div_(0.05).clamp_(0.0, 1.0)
        # trust * smooth + (1 - trust) * est, the same operations in the same order
        est = smooth.mul_(trust).add_(est * trust.neg_().add_(1.0))
    return est.numpy()
