"""Object scale read from the image: the scale-space initial std of the fit.

For a Gaussian blob of std ``s`` the scale-normalised Laplacian of Gaussian at its
centre, ``R(sigma) = sigma^2 |(nabla^2 G_sigma * I)(p)|``, is proportional to
``sigma^2 / (sigma^2 + s^2)^2`` and peaks at ``sigma = s`` (Lindeberg's automatic scale
selection); for an elongated blob the peak lies between its two stds. So the std of
the object at an annotation point ``p`` is read from the image as the ``sigma`` that
maximises ``R`` at ``p``, searched over a geometric range of scales.

The spacing of the annotations only **bounds** the search (a Gaussian much wider than
the distance to its nearest neighbour would take the neighbours in, and the response
of a cluster of objects peaks at the cluster's size): ``sigma <= nn_factor * d_1``
(``d_1`` = distance to the nearest other point); an image with one point is bounded
by the image size only. See docs/fit_scale.md for the measurements behind the
defaults.

Computation (all ``N`` points at once, ``O(H W)`` per octave): the image is shrunk by
2 per octave (area averaging) so each scale is evaluated as a 4-8 px blur on its
octave's image; the responses are sampled at the points bilinearly and the peak is
refined by a parabola in ``log sigma``. Colour images: the response is the L2 norm of
the three channels' responses (a blob of another hue but equal brightness counts).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np


def scale_grid(sigma_min: float, sigma_max: float, per_octave: int = 4) -> np.ndarray:
    """``(S,)`` geometric scales from ``sigma_min`` to at least ``sigma_max`` px,
    ``per_octave`` per doubling."""
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f'need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}')
    n = int(math.ceil(per_octave * math.log2(sigma_max / sigma_min))) + 1
    return sigma_min * 2.0 ** (np.arange(n) / per_octave)


def _sample(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples ``(N, C)`` of ``img (h, w, C)`` at ``xy (N, 2)`` px (x, y),
    pixel centres at +0.5; coordinates clamped to the image."""
    h, w = img.shape[:2]
    x = np.clip(xy[:, 0] - 0.5, 0, w - 1)
    y = np.clip(xy[:, 1] - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1])
            + fy * ((1 - fx) * img[y1, x0] + fx * img[y1, x1]))


def log_responses(image: np.ndarray, points: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """``(N, S)`` scale-normalised LoG magnitudes ``sigma^2 |nabla^2 L_sigma|`` at
    ``points (N, 2)`` px (x, y) for each of ``sigmas (S,)`` px.

    Args:
        image: ``(H, W, 3)`` (or ``(H, W)``) uint8 or float image.
        points: annotation points, pixel centres at +0.5.
        sigmas: increasing scales, px of ``image``.
    """
    import cv2
    img = np.asarray(image, np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if image.dtype == np.uint8:
        img = img / 255.0
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    out = np.zeros((len(pts), len(sigmas)), np.float64)
    octave_img, octave = img, 0
    blurred, blur = img, 0.0  # the octave image blurred so far, and by how much (px)
    for j, sigma in enumerate(sigmas):
        # octave o: image shrunk by 2^o, so the blur there is 4-8 px (up to 8 px at
        # o = 0); below 4 px the 3x3 Laplacian underestimates by several per cent
        want = max(0, int(math.floor(math.log2(sigma / 4.0)))) if sigma >= 8.0 else 0
        while octave < want and min(octave_img.shape[:2]) >= 8:
            h, w = octave_img.shape[:2]
            octave_img = cv2.resize(octave_img, (max(1, w // 2), max(1, h // 2)),
                                    interpolation=cv2.INTER_AREA)
            if octave_img.ndim == 2:
                octave_img = octave_img[..., None]
            octave += 1
            # area averaging blurred the octave image by a box of variance ~1/12 px^2
            blurred, blur = octave_img, math.sqrt(1.0 / 12.0)
        f = 2.0 ** octave
        s = sigma / f
        # blur incrementally: G_a * G_b = G_sqrt(a^2 + b^2) (small kernels)
        target = max(s, blur, 0.5)
        if target > blur + 1e-6:
            step = math.sqrt(target * target - blur * blur)
            blurred = cv2.GaussianBlur(blurred, (0, 0), step, borderType=cv2.BORDER_REFLECT)
            if blurred.ndim == 2:
                blurred = blurred[..., None]
            blur = target
        lap = cv2.Laplacian(blurred, cv2.CV_32F, ksize=1, borderType=cv2.BORDER_REFLECT)
        if lap.ndim == 2:
            lap = lap[..., None]
        # sigma^2 nabla^2 is dimensionless: evaluate it in octave px, at the points only
        at = _sample(lap, pts / f).astype(np.float64)
        out[:, j] = np.sqrt((at ** 2).sum(-1)) * s * s
    return out


def nearest_distance(points: np.ndarray, min_gap: float = 0.5) -> np.ndarray:
    """``(N,)`` distance px to the nearest other point farther than ``min_gap`` px
    (duplicate clicks of one object do not count; ``inf`` when there is none)."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) < 2:
        return np.full(len(pts), np.inf)
    from .knn import knn_distances
    d = knn_distances(pts, min(len(pts) - 1, 7))
    d = np.where(d > min_gap, d, np.inf)
    out = d.min(1)
    for i in np.flatnonzero(~np.isfinite(out)):  # more than 7 duplicates: look further
        far = np.linalg.norm(pts - pts[i], axis=1)
        far = far[far > min_gap]
        out[i] = far.min() if far.size else np.inf
    return out


def scale_space_std(image: np.ndarray, points: np.ndarray, *, sigma_min: float = 1.0,
                    sigma_max: Optional[float] = None, nn_factor: float = 1.0,
                    per_octave: int = 4, return_bounds: bool = False):
    """``(N,)`` std px of the object at each point, read from the image (module doc).

    Args:
        image: ``(H, W, 3)`` uint8 RGB (or float, or grey).
        points: ``(N, 2)`` px (x, y), pixel centres at +0.5.
        sigma_min: smallest scale searched, px.
        sigma_max: largest scale searched, px (default ``max(H, W) / 4``).
        nn_factor: per point the search stops at ``nn_factor * d_1`` px (``d_1`` =
            distance to the nearest other point; no bound for a lone point).
        per_octave: scales per doubling.
        return_bounds: also return the ``(N,)`` upper bounds used.

    Returns:
        ``(N,)`` float64 stds in ``[sigma_min, bound]`` (and the bounds).
    """
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    h, w = image.shape[:2]
    top = float(sigma_max if sigma_max is not None else max(h, w) / 4.0)
    top = max(top, sigma_min)
    bound = np.clip(nn_factor * nearest_distance(pts), sigma_min, top)
    if len(pts) == 0:
        empty = np.zeros(0)
        return (empty, empty) if return_bounds else empty
    sigmas = scale_grid(sigma_min, float(bound.max()), per_octave)
    resp = log_responses(image, pts, sigmas)
    resp[sigmas[None, :] > bound[:, None] * 1.0001] = -np.inf
    k = np.argmax(resp, axis=1)
    est = sigmas[k].astype(np.float64)
    # parabola through the peak and its neighbours, in log sigma
    inner = (k > 0) & (k < len(sigmas) - 1)
    idx = np.flatnonzero(inner)
    if idx.size:
        r0, r1, r2 = (resp[idx, k[idx] + d] for d in (-1, 0, 1))
        ok = np.isfinite(r0) & np.isfinite(r2)
        den = r0 - 2 * r1 + r2
        ok &= den < 0
        shift = np.where(ok, 0.5 * (r0 - r2) / np.where(ok, den, 1.0), 0.0)
        est[idx] = sigmas[k[idx]] * 2.0 ** (np.clip(shift, -0.5, 0.5) / per_octave)
    est = np.clip(est, sigma_min, bound)
    return (est, bound) if return_bounds else est


def scale_bounds(init_std: np.ndarray, growth: float) -> Tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` std bounds px of a fit started at ``init_std (N,)``:
    ``init / growth`` and ``init * growth`` (at least 0.5 px), the guard against
    Gaussians ballooning into textureless regions (or collapsing)."""
    init = np.asarray(init_std, np.float64)
    return np.maximum(init / growth, 0.5), np.maximum(init * growth, 1.0)
