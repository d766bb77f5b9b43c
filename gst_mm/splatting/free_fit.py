"""The soft plan's fit: free Gaussians seeded by the pinned fit, densified where the
reconstruction error is high, then reduced onto the annotations
(docs/soft_kernel.md).

Steps (after :func:`.fit.fit_gaussians`' pinned fit, at its working resolution):

1. **Seeds**: the ``N`` pinned Gaussians (one per click, as fitted).
2. **Densify**: the residual ``|render - image|`` (channel mean) is smoothed at the
   objects' scale; its local maxima above ``residual`` within
   ``reach * max(major std, d_nn / 2)`` px of a click (``d_nn``: distance to the
   nearest other click) become new components (at most ``densify * N``), with the
   image-derived std of :func:`.scale.scale_space_std` and the image colour.
3. **Free fit**: all ``M`` components (means, stds, angles, colours) are refined
   for at most ``refine_iters`` Adam steps against the same background layer and
   objective (L1 + deformity, method.md 3); means move at ``mean_lr`` px per step and
   stay in the image; stds keep growth bounds like the pinned fit's.
4. **Reduce** onto the pens (:func:`.reduction.reduce_onto_pens`). An annotation
   that received no mass keeps its pinned Gaussian as its only component.

Units: working px inside the fit (the pinned fit's, after its ``downsample``),
input px in the result; means ``(x, y)``, pixel centres at +0.5.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .fit_steps import (
    GaussianParams,
    Splatter,
    converged,
    make_level,
    objective,
    params_to_gaussians,
)
from .gaussians import Gaussians2D
from .reduction import reduce_onto_pens
from .scale import scale_space_std
from .soft_gaussians import SoftGaussians


@dataclass
class PinnedFit:
    """What the soft plan takes over from :func:`.fit.fit_gaussians`' pinned fit."""
    hard: Gaussians2D              # input px, one per kept point
    params: GaussianParams         # at the working resolution (level 1)
    pts: np.ndarray                # (N, 2) working px
    image: np.ndarray              # (H, W, 3) uint8 RGB, working resolution
    target_np: np.ndarray          # the same as float [0, 1]
    bg_np: np.ndarray              # (H, W, 3) background layer at working resolution
    fg_count: int                  # pixels of the reconstruction term
    init_std: np.ndarray           # (N,) working px
    shrink: Tuple[float, float]    # input px per working px (x, y)
    device: torch.device
    backend: str
    compositing: str
    window_margin: float


def densify_sites(residual: np.ndarray, pts: np.ndarray, reach: np.ndarray, scale: float,
                  threshold: float, budget: int) -> np.ndarray:
    """``(K, 2)`` px (x, y, pixel centres) of new components: local maxima of
    ``residual (H, W)`` smoothed at ``scale`` px that exceed ``threshold`` and lie
    within ``reach (N,)`` px of a point of ``pts (N, 2)``; the ``budget`` highest."""
    if budget <= 0 or len(pts) == 0:
        return np.zeros((0, 2))
    import cv2
    from scipy.ndimage import maximum_filter

    from .knn import knn_query
    sm = cv2.GaussianBlur(residual.astype(np.float32), (0, 0), max(scale, 0.5))
    size = 2 * int(math.ceil(max(scale, 1.0))) + 1
    peak = (sm == maximum_filter(sm, size=size)) & (sm > threshold)
    ys, xs = np.nonzero(peak)
    if len(xs) == 0:
        return np.zeros((0, 2))
    sites = np.stack([xs + 0.5, ys + 0.5], 1)
    dist, idx = knn_query(pts, sites, 1)
    near = dist[:, 0] <= reach[idx[:, 0]]
    sites, val = sites[near], sm[ys[near], xs[near]]
    return sites[np.argsort(-val, kind='stable')[:budget]]


class FreeParams:
    """:class:`.fit_steps.GaussianParams` plus free means (``(M, 2)`` px, kept in the
    ``width x height`` image)."""

    def __init__(self, base: GaussianParams, means: np.ndarray, width: int,
                 height: int) -> None:
        self.base = base
        self.mean = torch.nn.Parameter(torch.as_tensor(means, dtype=torch.float32,
                                                       device=base.std.device).clone())
        self.size = (float(width), float(height))

    def gaussians(self) -> Gaussians2D:
        return self.base.gaussians(self.mean)

    def scales(self) -> torch.Tensor:
        return self.base.scales()

    def optimizer(self, lr: float, scale_lr: float, mean_lr: float) -> torch.optim.Optimizer:
        opt = self.base.optimizer(lr, scale_lr)
        opt.add_param_group({'params': [self.mean], 'lr': mean_lr})
        return opt

    @torch.no_grad()
    def clamp_(self) -> None:
        self.base.clamp_()
        self.mean[:, 0].clamp_(0.0, self.size[0])
        self.mean[:, 1].clamp_(0.0, self.size[1])


def _seed_params(pinned: PinnedFit, sites: np.ndarray, site_std: np.ndarray,
                 growth: Optional[float]) -> FreeParams:
    """Free parameters: the pinned Gaussians as fitted, then one isotropic component
    per densify site."""
    p, dev = pinned.params, pinned.device
    h, w = pinned.target_np.shape[:2]
    n, k = len(pinned.pts), len(sites)
    yi = np.clip(np.floor(sites[:, 1]).astype(int), 0, h - 1)
    xi = np.clip(np.floor(sites[:, 0]).astype(int), 0, w - 1)
    colors = torch.as_tensor(pinned.target_np[yi, xi]).reshape(k, 3)
    bounds = None
    if p.bounds is not None:
        hi = float(growth) if growth is not None and not math.isinf(growth) else 3.0
        bounds = (np.concatenate([p.bounds[0][:, 0].cpu().numpy(), site_std / hi]),
                  np.concatenate([p.bounds[1][:, 0].cpu().numpy(), site_std * hi]))
    base = GaussianParams(np.ones(n + k), torch.zeros(n + k), torch.full((n + k, 3), 0.5),
                          p.log_stds, bounds, dev)
    with torch.no_grad():
        new_std = torch.as_tensor(site_std, dtype=torch.float32, device=dev)[:, None]
        new_std = new_std.repeat(1, 2)
        base.std.copy_(torch.cat([p.std.detach(), new_std.log() if p.log_stds else new_std]))
        base.angle.copy_(torch.cat([p.angle.detach(), torch.zeros(k, device=dev)]))
        c = colors.to(dev).clamp(0.02, 0.98)
        base.color.copy_(torch.cat([p.color.detach(), torch.log(c / (1 - c))]))
    means = np.concatenate([pinned.pts, sites]).astype(np.float32)
    return FreeParams(base, means, w, h)


def fit_soft(pinned: PinnedFit, soft: Dict[str, Any], delta: float, beta: float, lr: float,
             info) -> SoftGaussians:
    """Steps 2-4 of the module docstring; ``info`` (a :class:`.fit.FitInfo`) gets
    ``soft_*`` diagnostics in its settings-free fields."""
    dev = pinned.device
    h, w = pinned.target_np.shape[:2]
    level = make_level(pinned.target_np, pinned.pts, 1, dev)
    bg = torch.as_tensor(pinned.bg_np, device=dev)
    norm = 3 * pinned.fg_count
    settings = info.settings

    # 2. densify where the pinned fit leaves a residual
    splat = Splatter(pinned.backend, pinned.compositing, pinned.window_margin)
    with torch.no_grad():
        out, _ = splat(pinned.params.gaussians(level.means), level, bg)
    residual = (out - level.target).abs().mean(-1).cpu().numpy()
    major = pinned.params.scales().detach().max(1).values.cpu().numpy().astype(np.float64)
    budget = int(math.floor(float(soft['densify']) * len(pinned.pts)))
    scale = float(np.median(pinned.init_std)) if len(pinned.init_std) else 1.0
    from .knn import knn_distances
    d1 = (knn_distances(pinned.pts, 1)[:, 0] if len(pinned.pts) > 1
          else np.full(len(pinned.pts), 4.0 * major.max(initial=1.0)))
    reach = float(soft['reach']) * np.maximum(major, 0.5 * d1)
    sites = densify_sites(residual, pinned.pts, reach, 0.5 * scale,
                          float(soft['residual']), budget)
    site_std = (scale_space_std(pinned.image, sites) if len(sites) else np.zeros(0))
    params = _seed_params(pinned, sites, np.maximum(site_std, 1.0),
                          settings.get('max_growth'))

    # 3. free fit of all components
    splat = Splatter(pinned.backend, pinned.compositing, pinned.window_margin,
                     moving_means=True)
    opt = params.optimizer(lr, settings['scale_lr'], float(soft['mean_lr']))
    losses = []
    for _ in range(int(soft['refine_iters'])):
        out, _ = splat(params.gaussians(), level, bg)
        loss = objective(out, level.target, params.scales(), delta, beta, norm)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        params.clamp_()
        losses.append(float(loss.detach()))
        if soft['early_stop'] and converged(losses, settings['patience'], settings['tol']):
            break

    # components in input px
    fallback = 6.0 * np.concatenate([pinned.init_std, np.maximum(site_std, 1.0)])
    comps = params_to_gaussians(params.base, params.mean, fallback, delta)[0]
    sx, sy = pinned.shrink
    comps = comps.transform([[sx, 0.0], [0.0, sy]])

    # 4. reduction onto the pens
    hard = pinned.hard
    anchor_cov = hard.covariances.numpy()
    if soft['click_std'] is not None:
        anchor_cov = np.broadcast_to(np.eye(2) * float(soft['click_std']) ** 2,
                                     (len(hard), 2, 2))
    red = reduce_onto_pens(comps.means.numpy(), comps.covariances.numpy(),
                           hard.means.numpy(), anchor_cov,
                           cutoff=float(soft['cutoff']), temperature=float(soft['temperature']),
                           candidates=int(soft['candidates']), min_resp=float(soft['min_resp']))
    comp, pen, weight = red.comp, red.pen, red.weight
    lonely = np.flatnonzero(red.pen_mass <= 0)
    if len(lonely):  # no component explains the click: its pinned Gaussian stands in
        m0 = len(comps)
        comps = Gaussians2D(torch.cat([comps.means, hard.means[lonely]]),
                            torch.cat([comps.covariances, hard.covariances[lonely]]),
                            torch.cat([comps.colors, hard.colors[lonely]]))
        comp = np.concatenate([comp, m0 + np.arange(len(lonely))])
        pen = np.concatenate([pen, lonely])
        weight = np.concatenate([weight, np.ones(len(lonely))])
    info.soft_stats = dict(components=len(comps), densified=int(len(sites)),
                           refine_steps=len(losses), fallback=int(len(lonely)),
                           entries=int(len(comp)),
                           background_share=float(red.background.mean()) if len(comps) else 0.0)
    return SoftGaussians(comps, hard, comp, pen, weight.astype(np.float32))
