"""Fit one anisotropic 2D Gaussian per annotation point (method.md sections 3, 3b).

Each Gaussian's mean is pinned at its point; its stds, angle and colour are fitted so
that the splatted Gaussians reconstruct the image (L1), with the deformity-elimination
term ``beta * max_n relu(max(s1/s2, s2/s1) - delta)``.

Two presets (``mode``, :mod:`.fit_config`):

* ``'default'``: log-std parameterisation, **initial stds read from the image**
  (scale-normalised LoG scale selection at each point, bounded by the distance to
  the nearest other point, :mod:`.scale`; docs/fit_scale.md), each std kept within
  ``max_growth`` = 3x of its initial value (no ballooning into textureless regions),
  an estimated **background layer behind the Gaussians** (median-filtered image,
  re-estimated ``bg_updates`` = 6 times, every 25 steps, from the pixels the current
  fit leaves uncovered, with the fit's own colour removed, :mod:`.background`); that
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

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from .background import background_mask, median_background, reestimate_background
from .fit_config import (
    NOT_SETTINGS,
    WINDOW_CAP,
    default_device,
    fit_settings_key,
    resolve_settings,
)
from .fit_steps import GaussianParams, Splatter, coarse_factor, converged, make_level, objective
from .gaussians import Gaussians2D
from .knn import knn_distance
from .scale import scale_bounds, scale_space_std

__all__ = ['FitInfo', 'fit_gaussians', 'fit_cfg_key', 'fit_settings', 'fit_settings_key',
           'initial_stds', 'knn_distance', 'postprocess', 'to_rgb_uint8', 'check_points',
           'median_background']


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
def initial_stds(image: np.ndarray, points: np.ndarray, knn: np.ndarray, init: str,
                 knn_fraction: float = 0.3) -> np.ndarray:
    """``(N,)`` initial std px of the Gaussians at ``points (N, 2)`` of ``image``:

    * ``'scale'``: read from the image (:func:`.scale.scale_space_std`);
    * ``'knn'``: ``knn_fraction * d_knn`` (>= 1 px), the spacing heuristic;
    * ``'reference'``: the authors' ``1 + max(ln d_knn, 2)``.
    """
    if init == 'scale':
        return scale_space_std(image, points)
    if init == 'reference':
        return 1.0 + np.maximum(np.log(np.maximum(knn, 1e-12)), 2.0)
    return np.maximum(knn_fraction * knn, 1.0)


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
                      given: Optional[np.ndarray]) -> Tuple[np.ndarray, int]:
    """``(background (H, W, 3) float, reconstruction pixel count)`` the fit starts with."""
    h, w = target_np.shape[:2]
    if bg_mode == 'reference':
        mask = background_mask(pts, knn, h, w)
        return target_np * mask[..., None], max(int((~mask).sum()), 1)
    if bg_mode in ('estimate', 'median'):
        return median_background(img8, window), h * w
    if bg_mode == 'given':
        return np.asarray(given, np.float32).reshape(h, w, 3), h * w
    return np.zeros_like(target_np), h * w


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


# ---------------------------------------------------------------------- fit
def fit_gaussians(image: np.ndarray, points: np.ndarray, *, iterations: Optional[int] = None,
                  lr: float = 0.01, delta: float = 1.5, beta: float = 0.2,
                  backend: str = 'auto', mode: str = 'default', init: Optional[str] = None,
                  background: Optional[str] = None, scale_param: Optional[str] = None,
                  early_stop: Optional[bool] = None, compositing: Optional[str] = None,
                  knn_fraction: float = 0.3, scale_lr: Optional[float] = None,
                  bg_updates: int = 6, bg_interval: int = 25, tol: float = 5e-3,
                  patience: int = 10,
                  window_margin: float = 1.15, downsample=None, coarse: Optional[int] = None,
                  min_std_px: float = 4.0, max_growth: Optional[float] = None,
                  seed: int = 0, drop_outside: bool = False, plan: str = 'hard',
                  soft: Optional[Dict[str, Any]] = None,
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
        init: ``'scale'`` (default preset: read from the image, :mod:`.scale`),
            ``'knn'`` (``knn_fraction * d_knn``) or ``'reference'``.
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
            whose objects are all large (by the initial, image-derived std) are
            shrunk; 1 = full resolution (reference preset).
        coarse: run the background re-estimation phase on the image shrunk by this
            factor (4x fewer pixel pairs per step for 2) and converge at full resolution
            afterwards (default preset 2, reference 1; only with ``'estimate'`` and log
            stds; skipped when the shrunk image would be under 48 px).
        max_growth: every std stays within ``[init / max_growth, init * max_growth]``
            (default preset 3; reference unbounded; ``math.inf`` = unbounded):
            Gaussians cannot balloon into textureless regions (docs/fit_scale.md).
        seed: seeds the random initial angles (the fit is deterministic for a seed).
        drop_outside: drop points outside the image with a warning instead of raising.
        device: torch device (default: CUDA when present, else CPU).
        name: names the image in error messages.
        plan: ``'hard'`` (the paper: one pinned Gaussian per point) or ``'soft'``
            (the pinned fit, then free Gaussians reduced onto the points,
            :mod:`.free_fit`, docs/soft_kernel.md).
        soft: settings of the soft plan (:data:`.free_fit.SOFT_DEFAULTS`); only with
            ``plan='soft'``.
        return_info: also return a :class:`FitInfo`.

    Returns:
        :class:`Gaussians2D` on CPU (float32) for the kept points, in input order
        (a :class:`.soft_gaussians.SoftGaussians` for ``plan='soft'``), and the
        :class:`FitInfo` with ``return_info``.
    """
    t0 = time.perf_counter()
    _check_plan(plan, soft)
    cfg, settings = resolve_settings(
        mode, iterations=iterations, init=init, background=background,
        scale_param=scale_param, early_stop=early_stop, downsample=downsample, coarse=coarse,
        max_growth=max_growth, lr=lr, delta=delta, beta=beta, backend=backend,
        compositing=compositing, knn_fraction=knn_fraction, scale_lr=scale_lr,
        bg_updates=bg_updates, bg_interval=bg_interval, tol=tol, patience=patience, seed=seed,
        min_std_px=min_std_px, drop_outside=drop_outside)
    backend, compositing = settings['backend'], settings['compositing']
    img8 = to_rgb_uint8(image, name)
    H, W = img8.shape[:2]
    pts, kept = check_points(points, H, W, name=name, drop_outside=drop_outside)
    _add_plan(settings, plan, soft)
    info = FitInfo(kept=kept, settings=settings, fit_key=fit_settings_key(settings))
    n = len(pts)
    if n == 0:
        info.seconds = time.perf_counter() - t0
        empty = Gaussians2D.empty()
        if plan == 'soft':
            from .soft_gaussians import SoftGaussians
            empty = SoftGaussians.hard(empty)
        return (empty, info) if return_info else empty

    dev = torch.device(device if device is not None else default_device())
    gen = torch.Generator().manual_seed(int(seed))
    knn = knn_distance(pts)
    init_std = initial_stds(img8, pts, knn, cfg['init'], knn_fraction)
    info.init_std = init_std
    # working resolution: shrink images whose objects are all large
    full_pts, sx, sy = pts, 1.0, 1.0
    factor = _downsample_factor(cfg['downsample'], init_std, min_std_px)
    settings['downsample_factor'] = factor
    given = cfg.get('background_image')
    if factor > 1:
        import cv2
        hs, ws = max(1, round(H / factor)), max(1, round(W / factor))
        sx, sy = W / ws, H / hs
        img8 = cv2.resize(img8, (ws, hs), interpolation=cv2.INTER_AREA)
        if given is not None:
            given = cv2.resize(np.asarray(given, np.float32), (ws, hs),
                               interpolation=cv2.INTER_AREA)
        H, W = hs, ws
        pts = pts / np.array([sx, sy])
        knn = knn_distance(pts)
        init_std = init_std / np.sqrt(sx * sy)
    # the background's median window spans the objects (their image scale) and their gaps
    window = float(np.clip(max(2.0 * np.median(knn), 6.0 * np.median(init_std)), 15.0,
                           max(15.0, max(H, W) / WINDOW_CAP)))
    target_np = img8.astype(np.float32) / 255.0
    bg_np, fg_count = _background_layer(cfg['background'], img8, target_np, pts, knn, window,
                                        given)

    log_stds = cfg['scale_param'] == 'log'
    n_updates = bg_updates if cfg['background'] == 'estimate' else 0
    coarse_f = coarse_factor(H, W, cfg['coarse'], n_updates, log_stds)
    settings['coarse_factor'] = coarse_f
    level = make_level(target_np, pts, coarse_f, dev)
    if coarse_f > 1:
        import cv2
        bg_np = cv2.resize(bg_np, (level.width, level.height), interpolation=cv2.INTER_AREA)
    bg = torch.as_tensor(bg_np, device=dev)
    xi = np.clip(np.floor(pts[:, 0]).astype(int), 0, W - 1)
    yi = np.clip(np.floor(pts[:, 1]).astype(int), 0, H - 1)
    growth = cfg['max_growth']
    bounds = None if growth is None or math.isinf(growth) else tuple(b / level.px_scale
                                               for b in scale_bounds(init_std, float(growth)))
    params = GaussianParams(init_std / level.px_scale, torch.rand(n, generator=gen) * np.pi,
                            torch.as_tensor(target_np[yi, xi]), log_stds, bounds, dev)
    opt = params.optimizer(lr, settings['scale_lr'])
    splat = Splatter(backend, compositing, window_margin)

    def update_background() -> None:
        """Re-estimate the background from what the current fit leaves uncovered."""
        nonlocal bg, bg_np
        with torch.no_grad():
            rgb_fg, acc = splat(params.gaussians(level.means), level, None)
        bg_np = reestimate_background(level.target_np, rgb_fg.cpu().numpy(), acc.cpu().numpy(),
                                      bg_np, window / level.px_scale)
        bg = torch.as_tensor(bg_np, device=dev)

    last_update = 0
    for step in range(1, int(cfg['iterations']) + 1):
        out, _ = splat(params.gaussians(level.means), level, bg)
        loss = objective(out, level.target, params.scales(), delta, beta,
                         3 * fg_count * (level.height * level.width) / (H * W))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        params.clamp_()
        info.losses.append(float(loss.detach()))
        info.iterations = step
        if n_updates and step % bg_interval == 0:
            n_updates -= 1
            last_update = step
            if n_updates == 0 and coarse_f > 1:  # to working resolution: stds scale by px
                import cv2
                params.rescale(level.px_scale)
                level = make_level(target_np, pts, 1, dev)
                bg_np = cv2.resize(bg_np, (W, H), interpolation=cv2.INTER_LINEAR)
                bg = torch.as_tensor(bg_np, device=dev)
                splat.reset()
            update_background()
        elif (cfg['early_stop'] and not n_updates and step - last_update >= 2 * patience
              and converged(info.losses, patience, tol)):
            break
    if level.px_scale != 1.0:  # stopped on the coarse level (tiny iteration budget)
        import cv2
        params.rescale(level.px_scale)
        bg_np = cv2.resize(bg_np, (W, H), interpolation=cv2.INTER_LINEAR)
    hard = _finish(params, pts, full_pts, knn, delta, factor, (sx, sy), info, t0, True)[0]
    if plan == 'soft':
        from .free_fit import PinnedFit, fit_soft
        pinned = PinnedFit(hard, params, pts, img8, target_np, bg_np, fg_count, init_std,
                           (sx, sy), dev, backend, compositing, window_margin)
        result = fit_soft(pinned, settings['soft'], delta, beta, lr, info)
        info.seconds = time.perf_counter() - t0
        return (result, info) if return_info else result
    return (hard, info) if return_info else hard


def _finish(params: GaussianParams, pts: np.ndarray, full_pts: np.ndarray, knn: np.ndarray,
            delta: float, factor: int, shrink: Tuple[float, float], info: FitInfo, t0: float,
            return_info: bool):
    """Post-process the fitted parameters into :class:`Gaussians2D` of the input image."""
    with torch.no_grad():
        s = params.scales().detach().cpu().float()
        if params.bounds is not None:
            hi = params.bounds[1].detach().cpu()
            info.num_bounded = int((s >= hi * (1 - 1e-4)).any(1).sum())
        ang = params.angle.detach().cpu().float() % np.pi
        s, info.num_distorted, info.num_nonfinite = postprocess(s, ang, knn, delta)
        ang = torch.where(torch.isfinite(ang), ang, torch.zeros_like(ang))
        colors = torch.nan_to_num(torch.sigmoid(params.color.detach().cpu().float()), nan=0.5)
        result = Gaussians2D.from_scales_angles(torch.as_tensor(pts, dtype=torch.float32), s,
                                                ang, colors)
        if factor > 1:  # back to input pixels; means exactly the input points
            scale = torch.tensor([[shrink[0], 0.0], [0.0, shrink[1]]])
            result = Gaussians2D(torch.as_tensor(full_pts, dtype=torch.float32),
                                 scale @ result.covariances @ scale, colors)
    info.seconds = time.perf_counter() - t0
    return (result, info) if return_info else result


def fit_cfg_key(fit_cfg: Optional[Dict[str, Any]] = None) -> str:
    """The cache's settings key of a fit with ``fit_cfg`` (keywords of
    :func:`fit_gaussians`; ``TypeError`` naming unknown keys), without fitting."""
    return fit_settings_key(fit_settings(**dict(fit_cfg or {})))


def fit_settings(**fit_cfg) -> Dict[str, Any]:
    """The resolved settings a :func:`fit_gaussians` call with ``fit_cfg`` would use
    (preset, defaults and ``backend='auto'`` resolved), without fitting anything.

    Raises ``TypeError`` naming unknown keys (a typo in a config's ``fit_cfg``)."""
    import inspect
    params = inspect.signature(fit_gaussians).parameters
    unknown = sorted((set(fit_cfg) - set(params)) | (set(fit_cfg) & {'image', 'points'}))
    if unknown:
        raise TypeError(f'unknown fit setting(s) {unknown}; fit_gaussians takes '
                        f'{sorted(k for k in params if k not in NOT_SETTINGS)}')
    args = {k: p.default for k, p in params.items() if k not in NOT_SETTINGS}
    args.update({k: v for k, v in fit_cfg.items() if k not in NOT_SETTINGS})
    plan, soft = args.pop('plan'), args.pop('soft')
    _check_plan(plan, soft)
    settings = resolve_settings(args.pop('mode'), **args)[1]
    _add_plan(settings, plan, soft)
    return settings


def _check_plan(plan: str, soft: Optional[Dict[str, Any]]) -> None:
    if plan not in ('hard', 'soft'):
        raise ValueError(f"unknown plan {plan!r}; expected 'hard' or 'soft'")
    if soft is not None and plan != 'soft':
        raise ValueError("soft= settings need plan='soft'")


def _add_plan(settings: Dict[str, Any], plan: str, soft: Optional[Dict[str, Any]]) -> None:
    """Record the soft plan and its resolved settings in ``settings`` (the hard plan
    adds nothing, so its settings key is unchanged by the soft plan's existence)."""
    if plan == 'soft':
        from .free_fit import resolve_soft
        settings.update(plan='soft', soft=resolve_soft(soft))


