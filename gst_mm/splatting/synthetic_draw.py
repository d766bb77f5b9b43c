"""Drawing primitives of the synthetic scenes (numpy; OpenCV imported where used).

Backgrounds, Gaussian blobs, distractor textures and occluders, shared by the scene
generators of :mod:`.synthetic` and the synthetic pose set
(:mod:`gst_mm.datasets.synthetic_pose`). Canvases are float ``(H, W, C)``; pixel
``(row i, column j)`` has its centre at ``(x, y) = (j + 0.5, i + 0.5)`` px. Every
function draws from the ``rng`` it is given in a fixed order, so a scene is a pure
function of its seed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def to_uint8(canvas: np.ndarray) -> np.ndarray:
    """Quantise a float canvas in [0, 255]: round to nearest, clip, ``uint8``."""
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------
# backgrounds
# ----------------------------------------------------------------------------
def smooth_background(height: int, width: int, rng: np.random.Generator, *,
                      max_freq: int = 6, contrast: float = 0.25) -> np.ndarray:
    """``(H, W, 3)`` float smooth colour texture in about [0.2, 0.8]: a random sum of
    low-frequency Fourier modes (periods >= 1/max_freq of the image side)."""
    spec = np.zeros((3, height, width // 2 + 1), np.complex128)
    fy = np.fft.fftfreq(height) * height
    fx = np.arange(width // 2 + 1)
    mask = (np.abs(fy)[:, None] <= max_freq) & (fx[None, :] <= max_freq)
    mask[0, 0] = False
    k = int(mask.sum())
    coef = rng.normal(size=(3, k)) + 1j * rng.normal(size=(3, k))
    radial = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)[mask]
    spec[:, mask] = coef / (1.0 + radial)
    tex = np.fft.irfft2(spec, s=(height, width), axes=(1, 2))
    tex = tex / (np.abs(tex).max(axis=(1, 2), keepdims=True) + 1e-12)
    base = rng.uniform(0.35, 0.65, size=(3, 1, 1))
    return np.clip(base + contrast * tex, 0.0, 1.0).transpose(1, 2, 0)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    """Zero-mean unit-std smooth noise ``(H, W)`` (blurred white noise)."""
    import cv2
    n = rng.standard_normal((h, w)).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    return (n - n.mean()) / (n.std() + 1e-6)


def textured_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth coloured ground with multi-scale texture, float ``(H, W, 3)``
    RGB in [0, 255]."""
    base = rng.uniform(60, 190, size=3)
    grad = rng.uniform(-40, 40, size=3)
    yy = np.linspace(0, 1, h)[:, None, None]
    img = np.broadcast_to(base + grad * yy, (h, w, 3)).astype(np.float64).copy()
    for sigma, amp in ((max(h, w) / 8, 25.0), (6.0, 10.0), (1.5, 5.0)):
        tint = rng.uniform(0.5, 1.0, size=3)
        img += amp * _smooth_noise(rng, h, w, sigma)[..., None] * tint
    return img


# ----------------------------------------------------------------------------
# clutter
# ----------------------------------------------------------------------------
def add_distractors(rng: np.random.Generator, img: np.ndarray) -> None:
    """Draw unannotated textures in place on a [0, 255] canvas: striped patches,
    checker patches and random line segments (none of them blob-like)."""
    import cv2
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(2, 6))):
        pw, ph = int(rng.integers(w // 10, w // 3)), int(rng.integers(h // 10, h // 3))
        x0, y0 = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
        yy, xx = np.mgrid[0:ph, 0:pw]
        kind = rng.integers(0, 2)
        if kind == 0:
            period, ang = rng.uniform(4, 12), rng.uniform(0, np.pi)
            pattern = np.sin(2 * np.pi * (xx * np.cos(ang) + yy * np.sin(ang)) / period)
        else:
            cell = int(rng.integers(3, 9))
            pattern = ((xx // cell + yy // cell) % 2) * 2.0 - 1.0
        amp = rng.uniform(15, 40)
        tint = rng.uniform(0.3, 1.0, size=3)
        img[y0:y0 + ph, x0:x0 + pw] += amp * pattern[..., None] * tint
    for _ in range(int(rng.integers(3, 9))):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        color = tuple(float(c) for c in rng.uniform(0, 255, size=3))
        cv2.line(img, p0, p1, color, int(rng.integers(1, 3)), lineType=cv2.LINE_AA)


def add_occluders(rng: np.random.Generator, img: np.ndarray) -> None:
    """Draw a few thin semi-opaque bars (poles, railings) in place on a [0, 255]
    canvas."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(1, 4))):
        bw = int(rng.integers(2, 5))
        color = rng.uniform(20, 235, size=3)
        a = rng.uniform(0.6, 0.9)
        if rng.random() < 0.6:
            x0 = int(rng.integers(0, w - bw))
            y0 = int(rng.integers(0, h // 2))
            img[y0:, x0:x0 + bw] = (1 - a) * img[y0:, x0:x0 + bw] + a * color
        else:
            y0 = int(rng.integers(h // 3, h - bw))
            img[y0:y0 + bw, :] = (1 - a) * img[y0:y0 + bw, :] + a * color


# ----------------------------------------------------------------------------
# Gaussian blobs
# ----------------------------------------------------------------------------
def draw_gaussian_blob(canvas: np.ndarray, mean: Sequence[float], cov: np.ndarray,
                       color: Sequence[float], opacity: float = 1.0,
                       extent: float = 4.0) -> None:
    """Alpha-composite one Gaussian blob onto ``canvas`` (float ``(H, W, C)``) in
    place: ``alpha(x) = opacity * exp(-d_M^2(x) / 2)`` evaluated at pixel centres
    ``(j + 0.5, i + 0.5)`` within Mahalanobis radius ``extent``;
    ``canvas = (1 - alpha) canvas + alpha color``. ``mean`` px, ``cov`` px^2."""
    h, w = canvas.shape[:2]
    cov = np.asarray(cov, np.float64)
    r = extent * np.sqrt(np.linalg.eigvalsh(cov).max())
    mx, my = float(mean[0]), float(mean[1])
    x0, x1 = max(0, int(np.floor(mx - r))), min(w, int(np.ceil(mx + r)) + 1)
    y0, y1 = max(0, int(np.floor(my - r))), min(h, int(np.ceil(my + r)) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    xs = np.arange(x0, x1) + 0.5 - mx
    ys = np.arange(y0, y1) + 0.5 - my
    dx, dy = np.meshgrid(xs, ys)
    inv = np.linalg.inv(cov)
    q = inv[0, 0] * dx * dx + 2 * inv[0, 1] * dx * dy + inv[1, 1] * dy * dy
    alpha = np.where(q <= extent ** 2, opacity * np.exp(-0.5 * q), 0.0)[..., None]
    patch = canvas[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1] = (1 - alpha) * patch + alpha * np.asarray(color, np.float64)


def draw_gaussian_box(canvas: np.ndarray, mean: Sequence[float], cov: np.ndarray,
                      color: Sequence[float], box_sigmas: float = 3.33) -> None:
    """Composite one opaque Gaussian blob (``alpha = exp(-d_M^2 / 2)``) onto ``canvas``
    in place, like :func:`draw_gaussian_blob` with ``opacity = 1`` but evaluated over
    the axis-aligned box of ``box_sigmas`` marginal stds around ``mean`` (no
    Mahalanobis cut-off). The rasteriser of :func:`.synthetic.make_scene`, kept as is
    so that its scenes stay bit-identical (its box, the missing cut-off and its
    floating-point evaluation order differ from :func:`draw_gaussian_blob`)."""
    h, w = canvas.shape[:2]
    c = mean
    r = box_sigmas * np.sqrt(np.diag(cov))
    x0, x1 = max(int(c[0] - r[0]), 0), min(int(c[0] + r[0]) + 1, w)
    y0, y1 = max(int(c[1] - r[1]), 0), min(int(c[1] + r[1]) + 1, h)
    xs = np.arange(x0, x1) + 0.5 - c[0]
    ys = np.arange(y0, y1) + 0.5 - c[1]
    inv = np.linalg.inv(cov)
    q = 0.5 * (inv[0, 0] * xs[None, :] ** 2 + inv[1, 1] * ys[:, None] ** 2) \
        + inv[0, 1] * xs[None, :] * ys[:, None]
    a = np.exp(-q)[..., None]
    canvas[y0:y1, x0:x1] = a * color + (1 - a) * canvas[y0:y1, x0:x1]
