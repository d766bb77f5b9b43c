"""Fit one anisotropic 2D Gaussian per annotation point (method.md sections 3, 3b).

Each Gaussian's mean is pinned at its point; its stds, angle and colour are fitted so
that the splatted Gaussians reconstruct the image (L1), with the deformity-elimination
term ``beta * max_n relu(max(s1/s2, s2/s1) - delta)``.

Two presets (``mode``, :mod:`.fit_config`):

* ``'default'``: log-std parameterisation, **initial stds read from the image**
  (scale-normalised LoG scale selection at each point, bounded by the distance to
  the nearest other point, :mod:`.scale`, read a second time with the background seen
  between the objects subtracted, ``init_mask``; docs/fit_scale.md), each std kept
  within ``max_growth`` = 3x of its initial value (no ballooning into textureless
  regions), an estimated **background layer behind the Gaussians** (started from that
  masked background, re-estimated ``bg_updates`` = 6 times, every 25 steps, from the
  pixels the current fit leaves uncovered, with the fit's own colour removed,
  :mod:`.background`); that
  phase runs on the image shrunk 2x, then the fit converges at full resolution with
  an early stop (at most 300 steps). Images whose objects are all large (by the
  image-derived scale) are fitted shrunk (``downsample='auto'``).
* ``'reference'`` (the authors' implementation): linear stds initialised at
  ``1 + max(ln d_knn, 2)``, the image pasted only into the background mask (nothing
  behind the Gaussians in foreground pixels), 4000 iterations, no early stop.

``init='knn'`` (``knn_fraction * d_knn``, the spacing heuristic) stays for ablations.
Any explicit keyword overrides the preset. The parts of a fit (levels, parameters,
renderer, objective, early stop) are in :mod:`.fit_steps`.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from . import free_fit
from .background import background_mask, median_background, reestimate_background
from .fit_config import (
    FitSettings,
    default_device,
    fit_cfg_key,
    fit_settings,
    fit_settings_key,
)
from .fit_steps import (
    GaussianParams,
    Level,
    Splatter,
    coarse_factor,
    converged,
    make_level,
    objective,
    params_to_gaussians,
    postprocess,
)
from .gaussians import Gaussians2D
from .initial_scale import background_window, initial_stds
from .knn import knn_distance
from .scale import scale_bounds

__all__ = ['FitInfo', 'FitSettings', 'fit_gaussians', 'fit_cfg_key', 'fit_settings',
           'fit_settings_key', 'initial_stds', 'knn_distance', 'postprocess', 'to_rgb_uint8',
           'check_points', 'median_background']


@dataclass
class FitInfo:
    """Diagnostics of one fit.

    Attributes:
        iterations: optimiser steps run. seconds: wall time.
        losses: loss after each step. kept: ``(N,)`` bool, points that were fitted
            (False only for points dropped with ``drop_outside=True``).
        settings: the resolved settings (json-serialisable).
        fit_key: :func:`fit_settings_key` of ``settings`` (stored in the cache).
        init_std: ``(N,)`` initial stds px of the input image.
        num_distorted, num_nonfinite: Gaussians fixed by post-processing.
        num_bounded: Gaussians that ended on a growth bound.
        soft_stats: the soft plan's counts (components, densified, refine steps, ...).
    """
    iterations: int = 0
    seconds: float = 0.0
    losses: List[float] = field(default_factory=list)
    kept: Optional[np.ndarray] = None
    settings: Dict[str, Any] = field(default_factory=dict)
    fit_key: str = ''
    init_std: Optional[np.ndarray] = None
    num_distorted: int = 0
    num_nonfinite: int = 0
    num_bounded: int = 0
    soft_stats: Dict[str, Any] = field(default_factory=dict)


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


# ---------------------------------------------------------------------- init
def _downsample_factor(downsample, init_std: np.ndarray, min_std_px: float) -> int:
    """Resolve ``downsample`` (``'auto'`` or a number >= 1) to an integer factor:
    ``'auto'`` = ``floor(q10(init_std) / min_std_px)`` in [1, 8], so the smallest
    objects keep at least ``min_std_px`` px of std after shrinking."""
    if downsample == 'auto':
        if len(init_std) == 0:
            return 1
        return int(np.clip(np.floor(np.quantile(init_std, 0.1) / min_std_px), 1, 8))
    factor = float(downsample)
    if not factor >= 1:
        raise ValueError(f'downsample must be >= 1 or "auto", got {downsample!r}')
    return int(round(factor))


def _background_layer(bg_mode: str, img8: np.ndarray, target_np: np.ndarray,
                      pts: np.ndarray, knn: np.ndarray, window: float,
                      given: Optional[np.ndarray],
                      masked: Optional[np.ndarray]) -> Tuple[np.ndarray, int]:
    """``(background (H, W, 3) float, reconstruction pixel count)`` the fit starts with:
    for ``'estimate'`` the scale init's masked background when there is one, else
    (and for ``'median'``) the median-filtered image."""
    h, w = target_np.shape[:2]
    if bg_mode == 'reference':
        mask = background_mask(pts, knn, h, w)
        return target_np * mask[..., None], max(int((~mask).sum()), 1)
    if bg_mode == 'estimate' and masked is not None:
        return masked, h * w
    if bg_mode in ('estimate', 'median'):
        return median_background(img8, window), h * w
    if bg_mode == 'given':
        return np.asarray(given, np.float32).reshape(h, w, 3), h * w
    return np.zeros_like(target_np), h * w


# ---------------------------------------------------------------------- fit
@dataclass
class WorkingImage:
    """The image and points a fit works on (after the optional ``downsample``).

    Attributes:
        img8: ``(H, W, 3)`` uint8 RGB at the working resolution; target_np: as float.
        pts: ``(N, 2)`` working px; full_pts: the input points (input px).
        knn: ``(N,)`` kNN distance px (working); init_std: ``(N,)`` initial stds px.
        shrink: input px per working px ``(x, y)``; factor: the downsample factor.
        window: the background's median window px.
        bg_np, fg_count: the background layer and the reconstruction's pixel count.
        device: torch device of the fit.
    """
    img8: np.ndarray
    target_np: np.ndarray
    pts: np.ndarray
    full_pts: np.ndarray
    knn: np.ndarray
    init_std: np.ndarray
    shrink: Tuple[float, float]
    factor: int
    window: float
    bg_np: np.ndarray
    fg_count: int
    device: torch.device


def working_image(img8: np.ndarray, pts: np.ndarray, cfg: Dict[str, Any], fs: FitSettings,
                  info: FitInfo) -> WorkingImage:
    """Initial stds, the working resolution (shrink images whose objects are all large)
    and the background layer of a fit (records ``downsample_factor`` in ``info``)."""
    H, W = img8.shape[:2]
    knn = knn_distance(pts)
    init_std, masked = initial_stds(img8, pts, knn, cfg['init'], fs.knn_fraction, fs.init_mask)
    info.init_std = init_std
    full_pts, sx, sy = pts, 1.0, 1.0
    factor = _downsample_factor(cfg['downsample'], init_std, fs.min_std_px)
    info.settings['downsample_factor'] = factor
    given = cfg.get('background_image')
    if factor > 1:
        import cv2
        hs, ws = max(1, round(H / factor)), max(1, round(W / factor))
        sx, sy = W / ws, H / hs
        img8 = cv2.resize(img8, (ws, hs), interpolation=cv2.INTER_AREA)
        if given is not None:
            given = cv2.resize(np.asarray(given, np.float32), (ws, hs),
                               interpolation=cv2.INTER_AREA)
        if masked is not None:
            masked = cv2.resize(masked, (ws, hs), interpolation=cv2.INTER_AREA)
        H, W = hs, ws
        pts = pts / np.array([sx, sy])
        knn = knn_distance(pts)
        init_std = init_std / np.sqrt(sx * sy)
    # the background's median window spans the objects (their image scale) and their gaps
    window = background_window(knn, init_std, H, W)
    target_np = img8.astype(np.float32) / 255.0
    bg_np, fg_count = _background_layer(cfg['background'], img8, target_np, pts, knn, window,
                                        given, masked)
    dev = torch.device(fs.device if fs.device is not None else default_device())
    return WorkingImage(img8, target_np, pts, full_pts, knn, init_std, (sx, sy), factor,
                        window, bg_np, fg_count, dev)


def pinned_fit(work: WorkingImage, cfg: Dict[str, Any], fs: FitSettings,
               info: FitInfo) -> Tuple[GaussianParams, np.ndarray]:
    """The Adam fit of the pinned Gaussians (method.md 3, 3b): the background phase on
    the coarse level with its re-estimates, then the full working resolution until the
    early stop. Returns the parameters (working px) and the final background layer."""
    import cv2
    s = info.settings
    H, W = work.target_np.shape[:2]
    n, pts, dev = len(work.pts), work.pts, work.device
    gen = torch.Generator().manual_seed(int(fs.seed))
    log_stds = cfg['scale_param'] == 'log'
    n_updates = fs.bg_updates if cfg['background'] == 'estimate' else 0
    coarse_f = coarse_factor(H, W, cfg['coarse'], n_updates, log_stds)
    s['coarse_factor'] = coarse_f
    level = make_level(work.target_np, pts, coarse_f, dev)
    bg_np = work.bg_np
    if coarse_f > 1:
        bg_np = cv2.resize(bg_np, (level.width, level.height), interpolation=cv2.INTER_AREA)
    bg = torch.as_tensor(bg_np, device=dev)
    xi = np.clip(np.floor(pts[:, 0]).astype(int), 0, W - 1)
    yi = np.clip(np.floor(pts[:, 1]).astype(int), 0, H - 1)
    growth = cfg['max_growth']
    bounds = None if growth is None or math.isinf(growth) else tuple(
        b / level.px_scale for b in scale_bounds(work.init_std, float(growth)))
    params = GaussianParams(work.init_std / level.px_scale, torch.rand(n, generator=gen) * np.pi,
                            torch.as_tensor(work.target_np[yi, xi]), log_stds, bounds, dev)
    opt = params.optimizer(fs.lr, s['scale_lr'])
    splat = Splatter(s['backend'], s['compositing'], fs.window_margin)

    def update_background(level: Level) -> torch.Tensor:
        """Re-estimate the background from what the current fit leaves uncovered."""
        nonlocal bg_np
        with torch.no_grad():
            rgb_fg, acc = splat(params.gaussians(level.means), level, None)
        bg_np = reestimate_background(level.target_np, rgb_fg.cpu().numpy(), acc.cpu().numpy(),
                                      bg_np, work.window / level.px_scale)
        return torch.as_tensor(bg_np, device=dev)

    last_update = 0
    for step in range(1, int(cfg['iterations']) + 1):
        out, _ = splat(params.gaussians(level.means), level, bg)
        loss = objective(out, level.target, params.scales(), fs.delta, fs.beta,
                         3 * work.fg_count * (level.height * level.width) / (H * W))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        params.clamp_()
        info.losses.append(float(loss.detach()))
        info.iterations = step
        if n_updates and step % fs.bg_interval == 0:
            n_updates -= 1
            last_update = step
            if n_updates == 0 and coarse_f > 1:  # to working resolution: stds scale by px
                params.rescale(level.px_scale)
                level = make_level(work.target_np, pts, 1, dev)
                bg_np = cv2.resize(bg_np, (W, H), interpolation=cv2.INTER_LINEAR)
                bg = torch.as_tensor(bg_np, device=dev)
                splat.reset()
            bg = update_background(level)
        elif (cfg['early_stop'] and not n_updates and step - last_update >= 2 * fs.patience
              and converged(info.losses, fs.patience, fs.tol)):
            break
    if level.px_scale != 1.0:  # stopped on the coarse level (tiny iteration budget)
        params.rescale(level.px_scale)
        bg_np = cv2.resize(bg_np, (W, H), interpolation=cv2.INTER_LINEAR)
    return params, bg_np


def finish(params: GaussianParams, work: WorkingImage, delta: float,
           info: FitInfo) -> Gaussians2D:
    """Post-process the fitted parameters into :class:`Gaussians2D` of the input image
    (means exactly the input points)."""
    if params.bounds is not None:
        s = params.scales().detach().cpu().float()
        hi = params.bounds[1].detach().cpu()
        info.num_bounded = int((s >= hi * (1 - 1e-4)).any(1).sum())
    result, info.num_distorted, info.num_nonfinite = params_to_gaussians(
        params, torch.as_tensor(work.pts, dtype=torch.float32), work.knn, delta)
    if work.factor > 1:  # back to input pixels; means exactly the input points
        scale = torch.tensor([[work.shrink[0], 0.0], [0.0, work.shrink[1]]])
        result = Gaussians2D(torch.as_tensor(work.full_pts, dtype=torch.float32),
                             scale @ result.covariances @ scale, result.colors)
    return result


def fit_gaussians(image: np.ndarray, points: np.ndarray,
                  settings: Optional[FitSettings] = None, *, name: str = 'image',
                  return_info: bool = False, **fit_cfg: Any):
    """Fit one Gaussian per point, mean pinned at the point.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (grayscale, RGBA, uint16 and float [0, 1] are
            converted, see :func:`to_rgb_uint8`).
        points: ``(N, 2)`` px (x, y), pixel centres at +0.5.
        settings: a :class:`.fit_config.FitSettings` (its docstring lists every
            field); keywords (``fit_cfg``, a config's ``fit_cfg``) override its fields
            or, without it, build one (``TypeError`` naming unknown keys).
        name: names the image in error messages.
        return_info: also return a :class:`FitInfo`.

    Returns:
        :class:`Gaussians2D` on CPU (float32) for the kept points, in input order
        (a :class:`.soft_gaussians.SoftGaussians` for ``plan='soft'``), and the
        :class:`FitInfo` with ``return_info``.
    """
    t0 = time.perf_counter()
    if settings is None:
        fs = FitSettings.from_cfg(fit_cfg)
    else:
        FitSettings.from_cfg(fit_cfg)  # unknown keys: TypeError naming them
        fs = dataclasses.replace(settings, **fit_cfg)
    cfg, resolved = fs.resolve()
    img8 = to_rgb_uint8(image, name)
    pts, kept = check_points(points, *img8.shape[:2], name=name, drop_outside=fs.drop_outside)
    info = FitInfo(kept=kept, settings=resolved, fit_key=fit_settings_key(resolved))
    if len(pts) == 0:
        result = Gaussians2D.empty()
        if fs.plan == 'soft':
            from .soft_gaussians import SoftGaussians
            result = SoftGaussians.hard(result)
    else:
        work = working_image(img8, pts, cfg, fs, info)
        params, bg_np = pinned_fit(work, cfg, fs, info)
        result = finish(params, work, fs.delta, info)
        if fs.plan == 'soft':
            pinned = free_fit.PinnedFit(
                result, params, work.pts, work.img8, work.target_np, bg_np, work.fg_count,
                work.init_std, work.shrink, work.device, resolved['backend'],
                resolved['compositing'], fs.window_margin)
            result = free_fit.fit_soft(pinned, resolved['soft'], fs.delta, fs.beta, fs.lr, info)
    info.seconds = time.perf_counter() - t0
    return (result, info) if return_info else result
