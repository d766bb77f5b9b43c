"""Synthetic scenes of Gaussian-profile ellipses with known covariance (pure numpy).

Used by the ground-truth-recovery test and ``tools/benchmark/splatting.py``: each
object is a 2D Gaussian blob ``alpha = exp(-d_M^2 / 2)`` of a random colour, composited
("over", object 0 in front) on a smooth textured background. Object centres are the
annotation points; the true stds, angles and covariances are returned with the image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np


@dataclass
class SyntheticScene:
    """A synthetic image and the ground truth of its objects.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        points: ``(N, 2)`` float32 object centres, px (x, y), pixel centre = +0.5.
        scales: ``(N, 2)`` true stds px ``(major, minor)``.
        angles: ``(N,)`` major-axis angle in [0, pi) from +x.
        covariances: ``(N, 2, 2)`` px^2.
        colors: ``(N, 3)`` in [0, 1].
        background: ``(H, W, 3)`` float [0, 1] texture behind the objects.
    """
    image: np.ndarray
    points: np.ndarray
    scales: np.ndarray
    angles: np.ndarray
    covariances: np.ndarray
    colors: np.ndarray
    background: np.ndarray


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


def _covariance(major: float, minor: float, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    R = np.array([[c, -s], [s, c]])
    return R @ np.diag([major ** 2, minor ** 2]) @ R.T


def make_scene(height: int, width: int, num_objects: int, *,
               std_range: Tuple[float, float] = (2.0, 16.0),
               max_aspect: float = 1.5, min_separation: float = 1.2, seed: int = 0,
               max_tries: int = 200) -> SyntheticScene:
    """Draw a scene of ``num_objects`` ellipses.

    Stds: minor ~ log-uniform in ``[lo, hi / aspect]``, aspect ~ U[1, max_aspect],
    major = minor * aspect (so both in ``std_range``); angles ~ U[0, pi); colours ~
    U[0, 1]^3. Centres are rejection-sampled so two objects are at least
    ``min_separation * (major_i + major_j)`` apart (cores distinct, tails overlap
    partially) and at least ``1.5 * major`` from the border; an object that does not
    fit after ``max_tries`` draws is shrunk by 10 % and retried.
    """
    rng = np.random.default_rng(seed)
    lo, hi = std_range
    background = smooth_background(height, width, rng)
    canvas = background.copy()
    pts, majors, minors, angs, cols = [], [], [], [], []
    for _ in range(num_objects):
        aspect = rng.uniform(1.0, max_aspect)
        minor = math.exp(rng.uniform(math.log(lo), math.log(hi / aspect)))
        placed = False
        while not placed:
            major = minor * aspect
            margin = 1.5 * major
            if 2 * margin >= min(height, width):
                minor *= 0.9
                continue
            for _ in range(max_tries):
                c = rng.uniform([margin, margin], [width - margin, height - margin])
                if pts:
                    d = np.linalg.norm(np.asarray(pts) - c, axis=1)
                    if np.any(d < min_separation * (np.asarray(majors) + major)):
                        continue
                placed = True
                break
            if not placed:
                if minor <= 0.5 * lo:
                    raise ValueError(f'cannot place {num_objects} objects in a '
                                     f'{width}x{height} scene')
                minor *= 0.9
        pts.append(c)
        majors.append(major)
        minors.append(minor)
        angs.append(rng.uniform(0.0, math.pi))
        cols.append(rng.uniform(0.0, 1.0, size=3))
    covs = np.stack([_covariance(a, b, t) for a, b, t in zip(majors, minors, angs)]) \
        if pts else np.zeros((0, 2, 2))
    # composite back to front ("over"), last object first, so object 0 is in front as
    # in gsplat's front-to-back index order; each object within its 3.33-sigma box
    for c, cov, col in reversed(list(zip(pts, covs, cols))):
        r = 3.33 * np.sqrt(np.diag(cov))
        x0, x1 = max(int(c[0] - r[0]), 0), min(int(c[0] + r[0]) + 1, width)
        y0, y1 = max(int(c[1] - r[1]), 0), min(int(c[1] + r[1]) + 1, height)
        xs = np.arange(x0, x1) + 0.5 - c[0]
        ys = np.arange(y0, y1) + 0.5 - c[1]
        inv = np.linalg.inv(cov)
        q = 0.5 * (inv[0, 0] * xs[None, :] ** 2 + inv[1, 1] * ys[:, None] ** 2) \
            + inv[0, 1] * xs[None, :] * ys[:, None]
        a = np.exp(-q)[..., None]
        canvas[y0:y1, x0:x1] = a * col + (1 - a) * canvas[y0:y1, x0:x1]
    image = np.clip(np.round(canvas * 255), 0, 255).astype(np.uint8)
    return SyntheticScene(
        image=image,
        points=np.asarray(pts, np.float32).reshape(-1, 2),
        scales=(np.stack([majors, minors], 1).astype(np.float32) if pts
                else np.zeros((0, 2), np.float32)),
        angles=np.asarray(angs, np.float32),
        covariances=covs.astype(np.float32),
        colors=np.asarray(cols, np.float32).reshape(-1, 3),
        background=background.astype(np.float32))


def recovery_errors(true_scales: np.ndarray, true_angles: np.ndarray, fit_scales: np.ndarray,
                    fit_angles: np.ndarray, min_aspect: float = 1.3) -> dict:
    """Ground-truth recovery errors of fitted Gaussians.

    Args:
        true_scales, fit_scales: ``(N, 2)`` stds px ``(major, minor)``.
        true_angles, fit_angles: ``(N,)`` major-axis angles (radians, mod pi).
        min_aspect: objects with true aspect >= this count for the orientation error.

    Returns:
        ``{'std_rel_err': median |s_fit - s_true| / s_true over both axes,
        'angle_err_deg': median orientation error of elongated objects (nan if none),
        'n_elongated': count}``.
    """
    rel = np.abs(fit_scales - true_scales) / true_scales
    elong = true_scales[:, 0] / true_scales[:, 1] >= min_aspect
    d = np.abs(fit_angles - true_angles) % np.pi
    d = np.minimum(d, np.pi - d)
    ang = float(np.degrees(np.median(d[elong]))) if elong.any() else float('nan')
    return {'std_rel_err': float(np.median(rel)), 'angle_err_deg': ang,
            'n_elongated': int(elong.sum())}
