"""Fit one anisotropic 2D Gaussian per annotation point (method.md sections 3, 3b).

Each Gaussian's mean is pinned at its point; its stds, angle and colour are fitted so
that the splatted Gaussians reconstruct the image (L1), with the deformity-elimination
term ``beta * max_n relu(max(s1/s2, s2/s1) - delta)``.

Two presets (``mode``):

* ``'default'`` (measured in method.md 3b): log-std parameterisation, kNN-fraction
  init (``0.3 * d_knn``), an estimated **background layer behind the Gaussians**
  (median-filtered image, re-estimated ``bg_updates`` = 6 times, every 25 steps, from
  the pixels the current fit leaves uncovered, with the fit's own colour removed);
  that phase runs on the image shrunk 2x, then the fit converges at full resolution
  with an early stop (at most 300 steps; typically 170-200). Images whose objects are
  all large (pose photos) are fitted shrunk (``downsample='auto'``).
* ``'reference'`` (the authors' implementation): linear stds initialised at
  ``1 + max(ln d_knn, 2)``, the image pasted only into the background mask (nothing
  behind the Gaussians in foreground pixels), 4000 iterations, no early stop.

Any explicit keyword overrides the preset.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from .gaussians import Gaussians2D, covariances_from_scales_angles
from .render import build_pairs, cutoff_radius, render, resolve_backend

MODES: Dict[str, Dict[str, Any]] = {
    'default': dict(iterations=300, init='knn', background='estimate', scale_param='log',
                    early_stop=True, downsample='auto', coarse=2),
    'reference': dict(iterations=4000, init='reference', background='reference',
                      scale_param='linear', early_stop=False, downsample=1, coarse=1),
}
WINDOW_CAP = 4.0  # background window <= max(H, W) / WINDOW_CAP px
BACKGROUNDS = ('estimate', 'median', 'reference', 'none')


@dataclass
class FitInfo:
    """Diagnostics of one fit.

    Attributes:
        iterations: optimiser steps run. seconds: wall time.
        losses: loss after each step. kept: ``(N,)`` bool, points that were fitted
            (False only for points dropped with ``drop_outside=True``).
        settings: the resolved settings (json-serialisable).
        fit_key: :func:`fit_settings_key` of ``settings`` (stored in the cache).
        num_distorted, num_nonfinite: Gaussians fixed by post-processing.
    """
    iterations: int = 0
    seconds: float = 0.0
    losses: List[float] = field(default_factory=list)
    kept: Optional[np.ndarray] = None
    settings: Dict[str, Any] = field(default_factory=dict)
    fit_key: str = ''
    num_distorted: int = 0
    num_nonfinite: int = 0


# ---------------------------------------------------------------------- inputs
def to_rgb_uint8(image: np.ndarray, name: str = 'image') -> np.ndarray:
    """Normalise an image to ``(H, W, 3)`` uint8 RGB.

    Grayscale ``(H, W)`` / ``(H, W, 1)`` is replicated, RGBA drops alpha, 16-bit and
    float ([0, 1]) images are rescaled. Raises ``ValueError`` naming ``name`` otherwise.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f'{name}: expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) '
                         f'image, got shape {img.shape}')
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 4:
        img = img[..., :3]
    if img.dtype == np.uint8:
        return np.ascontiguousarray(img)
    if img.dtype == np.uint16:
        return (img // 257).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        if not np.isfinite(img).all():
            raise ValueError(f'{name}: image has non-finite values')
        return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    raise ValueError(f'{name}: unsupported image dtype {img.dtype}')


def check_points(points: np.ndarray, height: int, width: int, *, name: str = 'image',
                 drop_outside: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Validate ``(N, 2)`` points px (x, y) against an image of ``height x width``.

    A point is inside when ``0 <= x <= width`` and ``0 <= y <= height``. Points outside
    (or non-finite) raise ``ValueError`` naming ``name``, or are dropped with a warning
    when ``drop_outside``. Returns ``(points float64 (M, 2), kept bool (N,))``.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        return pts.reshape(0, 2), np.zeros(0, bool)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f'{name}: points must have shape (N, 2), got {pts.shape}')
    inside = (np.isfinite(pts).all(1) & (pts[:, 0] >= 0) & (pts[:, 0] <= width)
              & (pts[:, 1] >= 0) & (pts[:, 1] <= height))
    if not inside.all():
        bad = np.flatnonzero(~inside)
        x, y = (float(v) for v in pts[bad[0]])
        msg = (f'{name}: {bad.size} of {len(pts)} points lie outside the {width}x{height} '
               f'image (first: index {bad[0]} at ({x:.2f}, {y:.2f}))')
        if not drop_outside:
            raise ValueError(msg + '; pass drop_outside=True to drop them')
        warnings.warn(msg + '; dropped', stacklevel=3)
    return pts[inside], inside


def knn_distance(points: np.ndarray, k: int = 3, single: float = 8.0,
                 floor: float = 1.0) -> np.ndarray:
    """``(N,)`` mean distance (px) to the ``k`` nearest other points (``single`` when
    there is one point), floored at ``floor`` px so duplicate points never give zero
    scales."""
    n = len(points)
    if n == 0:
        return np.zeros(0)
    if n == 1:
        return np.full(1, single)
    from scipy.spatial import cKDTree
    kk = min(k, n - 1)
    d, _ = cKDTree(points).query(points, k=kk + 1)
    return np.maximum(d[:, 1:].mean(1), floor)


# ---------------------------------------------------------------------- background
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


# ---------------------------------------------------------------------- settings
def _resolve(mode: str, **overrides) -> Dict[str, Any]:
    if mode not in MODES:
        raise ValueError(f'unknown fit mode {mode!r}; expected one of {tuple(MODES)}')
    cfg = dict(MODES[mode])
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(cfg['background'], np.ndarray):
        cfg['background_image'], cfg['background'] = cfg['background'], 'given'
    elif cfg['background'] not in BACKGROUNDS:
        raise ValueError(f"unknown background {cfg['background']!r}; expected {BACKGROUNDS}")
    if cfg['init'] not in ('knn', 'reference'):
        raise ValueError(f"unknown init {cfg['init']!r}; expected 'knn' or 'reference'")
    if cfg['scale_param'] not in ('log', 'linear'):
        raise ValueError(f"unknown scale_param {cfg['scale_param']!r}")
    return cfg


def _resolve_settings(mode: str, *, lr: float, delta: float, beta: float, backend: str,
                      compositing: Optional[str], knn_fraction: float,
                      scale_lr: Optional[float], **rest) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``(cfg, settings)``: the preset with its overrides (``cfg``, may hold a given
    background image) and every setting of a fit that does not depend on the image
    (json-serialisable ``settings``; see :func:`fit_settings_key`).

    Compositing defaults to ``'sum'`` whatever the renderer (so the default fit is
    the same fit on every machine); ``backend='auto'`` then resolves by
    :func:`.render.resolve_backend` (gsplat only draws alpha compositing)."""
    preset = {k: rest.pop(k) for k in ('iterations', 'init', 'background', 'scale_param',
                                       'early_stop', 'downsample', 'coarse')}
    cfg = _resolve(mode, **preset)
    if compositing is None:
        compositing = 'alpha' if backend == 'gsplat' else 'sum'
    backend = resolve_backend(backend, compositing)
    if backend == 'gsplat' and compositing != 'alpha':
        raise ValueError('the gsplat backend only does alpha compositing')
    if scale_lr is None:
        scale_lr = 5 * lr if cfg['scale_param'] == 'log' else lr
    settings = dict({k: v for k, v in cfg.items() if k != 'background_image'}, lr=lr,
                    delta=delta, beta=beta, backend=backend, compositing=compositing,
                    knn_fraction=knn_fraction, scale_lr=scale_lr, mode=mode, **rest)
    return cfg, settings


#: bumped when the fit's algorithm changes its result for the same settings
FIT_VERSION = 1
#: settings recorded per image (outcomes, not inputs): not part of the key
_PER_IMAGE = ('downsample_factor', 'coarse_factor')
#: arguments of :func:`fit_gaussians` that are not fit settings
_NOT_SETTINGS = ('image', 'points', 'device', 'name', 'return_info', 'window_margin')


def fit_settings(**fit_cfg) -> Dict[str, Any]:
    """The resolved settings a :func:`fit_gaussians` call with ``fit_cfg`` would use
    (preset, defaults and ``backend='auto'`` resolved), without fitting anything.

    Raises ``TypeError`` naming unknown keys (a typo in a config's ``fit_cfg``)."""
    import inspect
    params = inspect.signature(fit_gaussians).parameters
    unknown = sorted((set(fit_cfg) - set(params)) | (set(fit_cfg) & {'image', 'points'}))
    if unknown:
        raise TypeError(f'unknown fit setting(s) {unknown}; fit_gaussians takes '
                        f'{sorted(k for k in params if k not in _NOT_SETTINGS)}')
    args = {k: p.default for k, p in params.items() if k not in _NOT_SETTINGS}
    args.update({k: v for k, v in fit_cfg.items() if k not in _NOT_SETTINGS})
    return _resolve_settings(args.pop('mode'), **args)[1]


def fit_settings_key(settings: Dict[str, Any]) -> str:
    """16-hex-digit key of the settings that change a fit's result: every resolved
    setting (mode, compositing, iterations, background, init, backend family, rates,
    seed...) plus :data:`FIT_VERSION`; not the device nor per-image outcomes.
    ``settings`` is :func:`fit_settings`'s result or a :class:`FitInfo`'s."""
    import hashlib
    import json
    core = {k: v for k, v in settings.items() if k not in _PER_IMAGE}
    core['fit_version'] = FIT_VERSION
    text = json.dumps(core, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def default_device() -> str:
    """Device of a fit: CUDA when present (torch or gsplat renderer), else CPU."""
    return 'cuda' if torch.cuda.is_available() else 'cpu'


# ---------------------------------------------------------------------- fit
def init_scales(knn: np.ndarray, init: str, knn_fraction: float) -> np.ndarray:
    """``(N,)`` initial std px: *(ref)* ``1 + max(ln d_knn, 2)`` or
    ``knn_fraction * d_knn`` (>= 1 px)."""
    if init == 'reference':
        return 1.0 + np.maximum(np.log(np.maximum(knn, 1e-12)), 2.0)
    return np.maximum(knn_fraction * knn, 1.0)


def postprocess(scales: torch.Tensor, angles: torch.Tensor, knn: np.ndarray,
                delta: float) -> Tuple[torch.Tensor, int, int]:
    """Process distorted Gaussians: aspect > ``delta`` -> isotropic at the minor std;
    non-finite (or non-positive) stds -> isotropic ``max(knn/6, 1)`` px.
    Returns ``(scales (N, 2), num_distorted, num_nonfinite)``."""
    s = scales.clone()
    bad = ~(torch.isfinite(s).all(1) & (s > 0).all(1) & torch.isfinite(angles))
    fallback = torch.as_tensor(np.maximum(knn / 6.0, 1.0), dtype=s.dtype)
    s[bad] = fallback[bad, None].expand(-1, 2)
    lo, hi = s.min(1).values, s.max(1).values
    distorted = (~bad) & (hi / lo > delta)
    s[distorted] = lo[distorted, None].expand(-1, 2)
    return s, int(distorted.sum()), int(bad.sum())


def _downsample_factor(downsample, init_std: np.ndarray, min_std_px: float) -> int:
    """Resolve ``downsample`` (``'auto'`` or a number >= 1) to an integer factor."""
    if downsample == 'auto':
        if len(init_std) == 0:
            return 1
        return int(np.clip(np.floor(np.quantile(init_std, 0.1) / min_std_px), 1, 8))
    factor = float(downsample)
    if not factor >= 1:
        raise ValueError(f'downsample must be >= 1 or "auto", got {downsample!r}')
    return int(round(factor))


def fit_gaussians(image: np.ndarray, points: np.ndarray, *, iterations: Optional[int] = None,
                  lr: float = 0.01, delta: float = 1.5, beta: float = 0.2,
                  backend: str = 'auto', mode: str = 'default', init: Optional[str] = None,
                  background: Optional[str] = None, scale_param: Optional[str] = None,
                  early_stop: Optional[bool] = None, compositing: Optional[str] = None,
                  knn_fraction: float = 0.3, scale_lr: Optional[float] = None,
                  bg_updates: int = 6, bg_interval: int = 25, tol: float = 5e-3,
                  patience: int = 10,
                  window_margin: float = 1.15, downsample=None, coarse: Optional[int] = None,
                  min_std_px: float = 4.0,
                  seed: int = 0, drop_outside: bool = False,
                  device: Optional[str] = None, name: str = 'image',
                  return_info: bool = False):
    """Fit one Gaussian per point, mean pinned at the point.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (grayscale, RGBA, uint16 and float [0, 1] are
            converted, see :func:`to_rgb_uint8`).
        points: ``(N, 2)`` px (x, y), pixel centres at +0.5.
        iterations: maximum Adam steps (preset: 300 default / 4000 reference).
        lr: Adam learning rate (colour, angle; stds too unless ``scale_lr``).
        delta, beta: deformity elimination threshold and weight.
        backend: renderer, ``'auto'`` | ``'torch'`` | ``'gsplat'`` | ``'dense'`` (the
            exact ``O(N H W)`` reference, for agreement tests); ``'auto'`` is
            gsplat when it works and compositing is alpha, else the torch renderer
            (:func:`.render.resolve_backend`; the choice is logged once).
        mode: preset, ``'default'`` or ``'reference'`` (module doc).
        init: ``'knn'`` (``knn_fraction * d_knn``) or ``'reference'``.
        background: ``'estimate'`` | ``'median'`` | ``'reference'`` | ``'none'``, or a
            fixed ``(H, W, 3)`` float [0, 1] background layer (ablations).
        scale_param: ``'log'`` or ``'linear'`` stds.
        early_stop: stop once the mean loss of the last ``patience`` steps is less
            than ``tol`` (relative) below the mean of the ``patience`` steps before.
        compositing: ``'sum'`` (default on every renderer, so a GPU box and a CPU
            box fit the same Gaussians) or ``'alpha'`` (the only one gsplat draws;
            default when ``backend='gsplat'`` is asked for explicitly).
        scale_lr: learning rate of the std parameters (default ``5 * lr`` for log stds,
            i.e. 5 % per step, ``lr`` for linear).
        bg_updates, bg_interval: re-estimate the background ``bg_updates`` times, every
            ``bg_interval`` steps (``'estimate'`` only); the early stop applies after
            the last re-estimate.
        window_margin: slack of the torch renderer's reused pixel windows.
        downsample: fit on the image shrunk by this factor (area averaging) and map the
            Gaussians back; ``'auto'`` (default preset) picks
            ``floor(q10(initial std) / min_std_px)`` clamped to [1, 8], so only images
            whose objects are all large (pose images) are shrunk; 1 = full resolution
            (reference preset).
        coarse: run the background re-estimation phase on the image shrunk by this
            factor (4x fewer pixel pairs per step for 2) and converge at full resolution
            afterwards (default preset 2, reference 1; only with ``'estimate'`` and log
            stds; skipped when the shrunk image would be under 48 px).
        seed: seeds the random initial angles (the fit is deterministic for a seed).
        drop_outside: drop points outside the image with a warning instead of raising.
        device: torch device (default: CUDA when present, else CPU).
        name: names the image in error messages.
        return_info: also return a :class:`FitInfo`.

    Returns:
        :class:`Gaussians2D` on CPU (float32) for the kept points, in input order
        (and the :class:`FitInfo`).
    """
    t0 = time.perf_counter()
    cfg, settings = _resolve_settings(
        mode, iterations=iterations, init=init, background=background,
        scale_param=scale_param, early_stop=early_stop, downsample=downsample, coarse=coarse,
        lr=lr, delta=delta, beta=beta, backend=backend, compositing=compositing,
        knn_fraction=knn_fraction, scale_lr=scale_lr, bg_updates=bg_updates,
        bg_interval=bg_interval, tol=tol, patience=patience, seed=seed, min_std_px=min_std_px,
        drop_outside=drop_outside)
    backend, compositing, scale_lr = settings['backend'], settings['compositing'], \
        settings['scale_lr']
    img8 = to_rgb_uint8(image, name)
    H, W = img8.shape[:2]
    pts, kept = check_points(points, H, W, name=name, drop_outside=drop_outside)
    info = FitInfo(kept=kept, settings=settings, fit_key=fit_settings_key(settings))
    n = len(pts)
    if n == 0:
        info.seconds = time.perf_counter() - t0
        return (Gaussians2D.empty(), info) if return_info else Gaussians2D.empty()

    dev = torch.device(device if device is not None else default_device())
    gen = torch.Generator().manual_seed(int(seed))
    knn = knn_distance(pts)
    full_pts, sx, sy = pts, 1.0, 1.0
    factor = _downsample_factor(cfg['downsample'], init_scales(knn, cfg['init'], knn_fraction),
                                min_std_px)
    settings['downsample_factor'] = factor
    if factor > 1:
        import cv2
        hs, ws = max(1, round(H / factor)), max(1, round(W / factor))
        sx, sy = W / ws, H / hs
        img8 = cv2.resize(img8, (ws, hs), interpolation=cv2.INTER_AREA)
        if 'background_image' in cfg:
            cfg['background_image'] = cv2.resize(np.asarray(cfg['background_image'], np.float32),
                                                 (ws, hs), interpolation=cv2.INTER_AREA)
        H, W = hs, ws
        pts = pts / np.array([sx, sy])
        knn = knn_distance(pts)
    window = float(np.clip(2.0 * np.median(knn), 15.0, max(15.0, max(H, W) / WINDOW_CAP)))
    target_np = img8.astype(np.float32) / 255.0

    bg_mode = cfg['background']
    fg_count = H * W
    if bg_mode == 'reference':
        bgmask = background_mask(pts, knn, H, W)
        bg_np = target_np * bgmask[..., None]
        fg_count = max(int((~bgmask).sum()), 1)
    elif bg_mode in ('estimate', 'median'):
        bg_np = median_background(img8, window)
    elif bg_mode == 'given':
        bg_np = np.asarray(cfg['background_image'], np.float32).reshape(H, W, 3)
    else:
        bg_np = np.zeros_like(target_np)

    # parameters (stds in working-resolution px)
    s0 = torch.as_tensor(init_scales(knn, cfg['init'], knn_fraction), dtype=torch.float32)
    s0 = s0[:, None].repeat(1, 2).to(dev)
    log_param = cfg['scale_param'] == 'log'
    n_updates = bg_updates if bg_mode == 'estimate' else 0
    # coarse level: the background re-estimation phase runs on the image shrunk by
    # `coarse` (4x fewer pixel pairs), the final convergence at working resolution
    coarse = int(cfg['coarse']) if (n_updates and log_param) else 1
    if coarse > 1 and min(H, W) / coarse < 48:
        coarse = 1
    settings['coarse_factor'] = coarse

    def level(f: int):
        """(height, width, target (H, W, 3) float, means (N, 2), px scale) at 1/f."""
        if f == 1:
            return H, W, target_np, pts, 1.0
        import cv2
        hl, wl = max(1, round(H / f)), max(1, round(W / f))
        sxl, syl = W / wl, H / hl
        tl = cv2.resize(target_np, (wl, hl), interpolation=cv2.INTER_AREA)
        return hl, wl, tl, pts / np.array([sxl, syl]), math.sqrt(sxl * syl)

    Hl, Wl, target_l, pts_l, px_scale = level(coarse)
    if coarse > 1:
        import cv2
        bg_np = cv2.resize(bg_np, (Wl, Hl), interpolation=cv2.INTER_AREA)
        s0 = s0 / px_scale
    target = torch.as_tensor(target_l, device=dev)
    bg = torch.as_tensor(bg_np, device=dev)
    means = torch.as_tensor(pts_l, dtype=torch.float32, device=dev)
    scale_p = torch.nn.Parameter(s0.log() if log_param else s0.clone())
    theta = torch.nn.Parameter((torch.rand(n, generator=gen) * math.pi).to(dev))
    xi = np.clip(np.floor(pts[:, 0]).astype(int), 0, W - 1)
    yi = np.clip(np.floor(pts[:, 1]).astype(int), 0, H - 1)
    c0 = torch.as_tensor(target_np[yi, xi], device=dev).clamp(0.02, 0.98)
    color_p = torch.nn.Parameter(torch.log(c0 / (1 - c0)))
    opt = torch.optim.Adam([{'params': [scale_p], 'lr': scale_lr},
                            {'params': [theta, color_p], 'lr': lr}])

    def current_scales() -> torch.Tensor:
        return scale_p.exp() if log_param else scale_p.abs().clamp_min(1e-3)

    extent = cutoff_radius(1.0)
    pairs = None

    def splat(return_alpha: bool = False):
        nonlocal pairs
        s = current_scales()
        cov = covariances_from_scales_angles(s, theta)
        g = Gaussians2D(means, cov, torch.sigmoid(color_p))
        if backend == 'torch':
            if pairs is None or not pairs.covers(cov, extent):
                pairs = build_pairs(means, cov, Hl, Wl, extent=extent, margin=window_margin,
                                    pixel_major=compositing == 'alpha')
        return render(g, Hl, Wl, backend, compositing=compositing, background=bg, pairs=pairs,
                      return_alpha=return_alpha), s

    def update_background() -> None:
        """Re-estimate the background from what the current fit leaves uncovered."""
        nonlocal bg, bg_np
        with torch.no_grad():
            bg_keep, bg = bg, None
            (rgb_fg, acc), _ = splat(return_alpha=True)
            bg = bg_keep
        bg_np = reestimate_background(target_l, rgb_fg.cpu().numpy(), acc.cpu().numpy(),
                                      bg_np, window / px_scale)
        bg = torch.as_tensor(bg_np, device=dev)

    max_iter = int(cfg['iterations'])
    last_update = 0
    for step in range(1, max_iter + 1):
        (out, _acc), s = splat(return_alpha=True)
        rec = (out - target).abs().sum() / (3 * fg_count * (Hl * Wl) / (H * W))
        ratio = torch.exp((s[:, 0].log() - s[:, 1].log()).abs())
        shape = torch.relu(ratio - delta).max()
        loss = rec + beta * shape
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        info.losses.append(float(loss.detach()))
        info.iterations = step
        if n_updates and step % bg_interval == 0:
            n_updates -= 1
            last_update = step
            if n_updates == 0 and coarse > 1:
                # switch to working resolution: stds scale by the pixel size
                import cv2
                with torch.no_grad():
                    scale_p.add_(math.log(px_scale))
                Hl, Wl, target_l, pts_l, px_scale = level(1)
                target = torch.as_tensor(target_l, device=dev)
                means = torch.as_tensor(pts_l, dtype=torch.float32, device=dev)
                bg_np = cv2.resize(bg_np, (Wl, Hl), interpolation=cv2.INTER_LINEAR)
                bg = torch.as_tensor(bg_np, device=dev)
                pairs = None
            update_background()
        elif (cfg['early_stop'] and not n_updates and step - last_update >= 2 * patience):
            last = float(np.mean(info.losses[-patience:]))
            prev = float(np.mean(info.losses[-2 * patience:-patience]))
            if prev - last < tol * last:  # converged: < tol relative gain per window
                break
    if coarse > 1 and n_updates:  # stopped on the coarse level (tiny iteration budget)
        with torch.no_grad():
            scale_p.add_(math.log(px_scale))
        means = torch.as_tensor(pts, dtype=torch.float32, device=dev)

    with torch.no_grad():
        s = current_scales().detach().cpu().float()
        ang = theta.detach().cpu().float() % math.pi
        s, info.num_distorted, info.num_nonfinite = postprocess(s, ang, knn, delta)
        ang = torch.where(torch.isfinite(ang), ang, torch.zeros_like(ang))
        colors = torch.sigmoid(color_p.detach().cpu().float())
        colors = torch.nan_to_num(colors, nan=0.5)
        result = Gaussians2D.from_scales_angles(means.cpu(), s, ang, colors)
        if factor > 1:  # back to input pixels; means exactly the input points
            scale = torch.tensor([[sx, 0.0], [0.0, sy]])
            result = Gaussians2D(torch.as_tensor(full_pts, dtype=torch.float32),
                                 scale @ result.covariances @ scale, colors)
    info.seconds = time.perf_counter() - t0
    return (result, info) if return_info else result
