"""The parts of one fit, each testable alone (composed by :func:`.fit.fit_gaussians`).

* :class:`Level` — one resolution of the image (target, means, pixel size);
  :func:`make_level` builds it, :func:`coarse_factor` picks the schedule's first level.
* :class:`GaussianParams` — the fitted stds (log or linear), angles and colour logits,
  with the growth bounds that stop Gaussians ballooning into textureless regions.
* :class:`Splatter` — renders the Gaussians at a level, reusing pixel windows.
* :func:`objective` — L1 reconstruction + deformity elimination (method.md 3), the L1
  by :func:`l1_distance` (one-pass backward).
* :func:`converged` — the early-stop rule.
* :func:`postprocess` — "process distorted Gaussians" (method.md 3) after a fit.
* :func:`params_to_gaussians` — fitted parameters to :class:`Gaussians2D` (post-processed),
  shared by the pinned fit and the soft plan's free fit.

Units: px of the level being fitted unless stated; means ``(x, y)``, pixel centres
at +0.5.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

from .gaussians import Gaussians2D, covariances_from_scales_angles
from .render import PixelPairs, build_pairs, cutoff_radius, render

#: levels are never made smaller than this (px, short side)
MIN_LEVEL_SIDE = 48


@dataclass
class Level:
    """One resolution of the fit.

    Attributes:
        height, width: level size px.
        target: ``(H, W, 3)`` float tensor in [0, 1] (the image at this level).
        target_np: the same as a numpy array.
        means: ``(N, 2)`` float32 tensor, the points in level px.
        px_scale: working-resolution px per level px (1 at full working resolution).
    """
    height: int
    width: int
    target: torch.Tensor
    target_np: np.ndarray
    means: torch.Tensor
    px_scale: float


def make_level(target_np: np.ndarray, points: np.ndarray, factor: int,
               device: torch.device) -> Level:
    """The level of ``target_np (H, W, 3)`` float shrunk by ``factor`` (area
    averaging) with ``points (N, 2)`` working px mapped onto it."""
    h, w = target_np.shape[:2]
    if factor == 1:
        tl, pl, scale = target_np, points, 1.0
    else:
        import cv2
        hl, wl = max(1, round(h / factor)), max(1, round(w / factor))
        sx, sy = w / wl, h / hl
        tl = cv2.resize(target_np, (wl, hl), interpolation=cv2.INTER_AREA)
        pl, scale = points / np.array([sx, sy]), math.sqrt(sx * sy)
    return Level(tl.shape[0], tl.shape[1], torch.as_tensor(tl, device=device), tl,
                 torch.as_tensor(pl, dtype=torch.float32, device=device), scale)


def coarse_factor(height: int, width: int, coarse: int, background_updates: int,
                  log_stds: bool) -> int:
    """Shrink factor of the schedule's first level: ``coarse`` while the background is
    re-estimated (log stds only), 1 when there are no updates or the shrunk image
    would be under :data:`MIN_LEVEL_SIDE` px."""
    c = int(coarse) if (background_updates and log_stds) else 1
    return c if c > 1 and min(height, width) / c >= MIN_LEVEL_SIDE else 1


class GaussianParams:
    """Fitted parameters of ``N`` Gaussians with pinned means.

    Args:
        init_std: ``(N,)`` initial std px (isotropic start).
        angles: ``(N,)`` initial angles, radians.
        colors: ``(N, 3)`` initial colours in (0, 1).
        log_stds: stds as ``exp(param)`` (else ``|param|``).
        bounds: ``(lower (N,), upper (N,))`` std px, enforced after every step
            (``None``: unbounded).
        device: torch device.
    """

    def __init__(self, init_std: np.ndarray, angles: torch.Tensor, colors: torch.Tensor,
                 log_stds: bool = True, bounds: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                 device: torch.device = torch.device('cpu')) -> None:
        s0 = torch.as_tensor(np.asarray(init_std), dtype=torch.float32, device=device)
        s0 = s0[:, None].repeat(1, 2)
        self.log_stds = log_stds
        self.std = torch.nn.Parameter(s0.log() if log_stds else s0.clone())
        self.angle = torch.nn.Parameter(angles.to(device))
        c = colors.to(device).clamp(0.02, 0.98)
        self.color = torch.nn.Parameter(torch.log(c / (1 - c)))
        self.bounds = None
        if bounds is not None:
            lo, hi = (torch.as_tensor(np.asarray(b), dtype=torch.float32, device=device)[:, None]
                      for b in bounds)
            self.bounds = (lo, hi)

    def scales(self) -> torch.Tensor:
        """``(N, 2)`` stds px (differentiable)."""
        return self.std.exp() if self.log_stds else self.std.abs().clamp_min(1e-3)

    def gaussians(self, means: torch.Tensor) -> Gaussians2D:
        """The Gaussians at ``means (N, 2)`` (differentiable)."""
        cov = covariances_from_scales_angles(self.scales(), self.angle)
        return Gaussians2D(means, cov, torch.sigmoid(self.color))

    def optimizer(self, lr: float, scale_lr: float) -> torch.optim.Optimizer:
        """Adam with ``scale_lr`` on the stds and ``lr`` on angles and colours."""
        return torch.optim.Adam([{'params': [self.std], 'lr': scale_lr},
                                 {'params': [self.angle, self.color], 'lr': lr}])

    @torch.no_grad()
    def rescale(self, factor: float) -> None:
        """Multiply stds (and bounds) by ``factor`` (a change of level: log stds only)."""
        self.std.add_(math.log(factor)) if self.log_stds else self.std.mul_(factor)
        if self.bounds is not None:
            self.bounds = (self.bounds[0] * factor, self.bounds[1] * factor)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Keep every std within its bounds."""
        if self.bounds is None:
            return
        lo, hi = self.bounds
        if self.log_stds:
            self.std.copy_(torch.maximum(torch.minimum(self.std, hi.log()), lo.log()))
        else:
            self.std.copy_(torch.maximum(torch.minimum(self.std.abs(), hi), lo))


class Splatter:
    """Renders Gaussians on a level, reusing the torch renderer's pixel windows until
    a Gaussian outgrows them (``margin`` slack) or, with ``moving_means`` (the free
    fit), moves out of them."""

    def __init__(self, backend: str, compositing: str, margin: float = 1.15,
                 moving_means: bool = False) -> None:
        self.backend, self.compositing, self.margin = backend, compositing, margin
        self.moving_means = moving_means
        self.extent = cutoff_radius(1.0)
        self.pairs: Optional[PixelPairs] = None

    def reset(self) -> None:
        """Forget the windows (the level changed)."""
        self.pairs = None

    def __call__(self, g: Gaussians2D, level: Level,
                 background: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(rgb (H, W, 3), accumulated alpha (H, W))`` of ``g`` over ``background``."""
        means = g.means if self.moving_means else None
        if self.backend == 'torch' and (self.pairs is None or not self.pairs.covers(
                g.covariances, self.extent, means)):
            self.pairs = build_pairs(g.means, g.covariances, level.height, level.width,
                                     extent=self.extent, margin=self.margin,
                                     pixel_major=self.compositing == 'alpha')
        return render(g, level.height, level.width, self.backend, compositing=self.compositing,
                      background=background, pairs=self.pairs, return_alpha=True)


class _L1Distance(torch.autograd.Function):
    """``sum |rendered - target|`` (a 0-dim tensor) with a backward that is one in-place
    pass over the saved residual (``sign(d) * g``, what autograd's abs / sum chain
    computes, bit for bit, with fewer full-size passes and temporaries; issue 23's
    profile). ``target`` gets no gradient. One backward per forward."""

    @staticmethod
    def forward(ctx, rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        residual = rendered.detach() - target
        ctx.save_for_backward(residual)
        return residual.abs().sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (residual,) = ctx.saved_tensors
        return residual.sign_().mul_(grad), None  # the residual is not needed again


def l1_distance(rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``sum |rendered - target|`` of two same-shape tensors (differentiable in
    ``rendered``; :class:`_L1Distance`)."""
    if rendered.shape != target.shape:
        raise ValueError(f'l1_distance: rendered {tuple(rendered.shape)} and target '
                         f'{tuple(target.shape)} differ')
    return _L1Distance.apply(rendered, target)


def objective(rendered: torch.Tensor, target: torch.Tensor, scales: torch.Tensor,
              delta: float, beta: float, norm: float) -> torch.Tensor:
    """``|rendered - target|_1 / norm + beta * max_n relu(aspect_n - delta)``: the
    reconstruction and deformity-elimination loss (method.md 3); ``aspect_n =
    max(s1/s2, s2/s1)`` of ``scales (N, 2)``."""
    rec = l1_distance(rendered, target) / norm
    aspect = torch.exp((scales[:, 0].log() - scales[:, 1].log()).abs())
    return rec + beta * torch.relu(aspect - delta).max()


def converged(losses: List[float], patience: int, tol: float) -> bool:
    """True when the mean loss of the last ``patience`` steps is less than ``tol``
    (relative) below the mean of the ``patience`` steps before."""
    if len(losses) < 2 * patience:
        return False
    last = float(np.mean(losses[-patience:]))
    prev = float(np.mean(losses[-2 * patience:-patience]))
    return prev - last < tol * last


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


@torch.no_grad()
def params_to_gaussians(params: GaussianParams, means: torch.Tensor, knn: np.ndarray,
                        delta: float) -> Tuple[Gaussians2D, int, int]:
    """``(Gaussians2D on CPU float32, num_distorted, num_nonfinite)`` of fitted
    ``params`` at ``means (N, 2)`` px: angles mod pi, :func:`postprocess` with the
    ``knn`` fallback, non-finite angles / colours replaced (0 rad, grey)."""
    s = params.scales().detach().cpu().float()
    ang = params.angle.detach().cpu().float() % np.pi
    s, num_distorted, num_nonfinite = postprocess(s, ang, knn, delta)
    ang = torch.where(torch.isfinite(ang), ang, torch.zeros_like(ang))
    colors = torch.nan_to_num(torch.sigmoid(params.color.detach().cpu().float()), nan=0.5)
    g = Gaussians2D.from_scales_angles(torch.as_tensor(means).detach().cpu().float(), s, ang,
                                       colors)
    return g, num_distorted, num_nonfinite
