"""Heatmaps read as densities: non-negativity maps, keypoint scores and decoders.

Pure torch (no OpenMMLab imports). A density head's raw output ``h (B, J, h, w)``
becomes mass per heatmap cell ``d = nonneg(beta * h)`` (:func:`nonnegative`); the
per-joint transport loss that trains it is in :mod:`gst_mm.transport.joint_plan`.
Keypoints are read off ``d`` (:func:`decode_cells`): MMPose's argmax, refined by the
mass centroid near the peak or by a Newton step on the log density (DARK without
the blur). Coordinates are heatmap cells ``(x, y)`` in MMPose's convention (cell
index ``k`` <-> input pixel index ``stride * k``).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

#: non-negativity maps; the first is the default (docs/pose.md, "Loss, density
#: and keypoint scores", has the measurements behind the choice).
NONNEG_MODES = ('softmax', 'softplus', 'relu', 'abs')
DEFAULT_NONNEG = NONNEG_MODES[0]


def mass_offset(num_cells: int, init_mass: float) -> float:
    """Raw-output offset ``c`` with ``num_cells * softplus(c) = init_mass``: a
    channel whose raw output is 0 everywhere holds ``init_mass`` in total."""
    if num_cells <= 0 or init_mass <= 0:
        raise ValueError(f'need num_cells > 0 and init_mass > 0, got {num_cells}, {init_mass}')
    return math.log(math.expm1(init_mass / num_cells))


def nonnegative(heatmaps: Tensor, mode: str = DEFAULT_NONNEG,
                init_mass: Optional[float] = 1.0, beta: float = 1.0) -> Tensor:
    """Map raw heatmaps ``(..., h, w)`` to a non-negative density ``d`` (mass per cell).

    Args:
        heatmaps: raw network output, any shape ending in ``(h, w)``; it is multiplied
            by ``beta`` first.
        mode: ``'softmax'`` (default): a spatial softmax per channel, so every
            channel is a distribution over the heatmap cells (unit mass, the
            source ``P_X`` of the paper's Theorem 1) and the per-joint loss
            becomes ``2 (1 - sum K_fg d)``: it cannot lose its mass, has no
            uniform "lower everything" direction, and keeps the raw argmax.
            ``'softplus'``: ``d = softplus(raw + c)`` with ``c`` from
            :func:`mass_offset`, so a raw output near 0 (every freshly
            initialised MMPose head) holds ``init_mass`` per channel, spread
            evenly, and the map is smooth and strictly increasing: it never
            stops passing gradient and keeps the raw heatmap's argmax, but from
            random init it drifts to a low-mass plateau (docs/pose.md).
            ``'relu'``: negative cells count as zero mass; from random init the
            background term pushes every cell below 0 within a few steps and the
            loss then has no gradient (a dead channel, see docs/pose.md).
            ``'abs'``: the counting model's choice (method.md 1); a large
            negative peak satisfies the loss while the decoder ignores it.
        init_mass: channel mass at raw output 0 for ``'softplus'``; ``None`` =
            plain ``softplus(raw)`` (``0.69`` per cell). Ignored by the others
            (``'softmax'`` always has unit mass).
        beta: inverse temperature (MMPose's integral / DSNT heads' ``beta``):
            ``softmax(beta * h)``. An MSE-trained head (peak ~1, background ~0) puts
            1-5 % of a softmax's mass on a joint's kernel at ``beta = 1`` and most of
            it at ``beta = 8`` (docs/pose.md).

    Returns:
        Tensor of the same shape, ``>= 0``.
    """
    if beta != 1.0:
        heatmaps = heatmaps * beta
    if mode == 'softmax':
        flat = heatmaps.flatten(-2)
        return torch.softmax(flat, -1).reshape(heatmaps.shape)
    if mode == 'softplus':
        if init_mass is None:
            return F.softplus(heatmaps)
        cells = heatmaps.shape[-1] * heatmaps.shape[-2]
        return F.softplus(heatmaps + mass_offset(cells, init_mass))
    if mode == 'relu':
        return torch.relu(heatmaps)
    if mode == 'abs':
        return heatmaps.abs()
    raise ValueError(f'unknown non-negativity mode {mode!r}; choose one of {NONNEG_MODES}')


def peak_mass(density: Tensor, radius: int = 2) -> Tensor:
    """Mass within ``radius`` cells (a ``(2r+1)^2`` window) of each channel's
    maximum: a keypoint score on MMPose's scale (a confident joint holds ~1,
    like an MSE heatmap's peak value; an uncertain one spreads its mass out).

    Args:
        density: ``(B, J, h, w)`` non-negative mass per cell.
        radius: window half-size in heatmap cells.

    Returns:
        ``(B, J)`` scores.
    """
    b, j, h, w = density.shape
    window = F.avg_pool2d(density.reshape(b * j, 1, h, w), 2 * radius + 1, stride=1,
                          padding=radius, count_include_pad=True) * (2 * radius + 1) ** 2
    flat = density.reshape(b * j, -1).argmax(-1)
    return window.reshape(b * j, -1).gather(1, flat[:, None]).reshape(b, j)


#: keypoint decoders of a density head: MMPose's codec on the density (argmax + its
#: quarter-cell shift), the mass centroid around the argmax, a Newton step on the log
#: density at the argmax (DARK's refinement without its blur)
DECODE_MODES = ('codec', 'centroid', 'dark')


def peak_cells(density: Tensor) -> Tensor:
    """``(B, J, 2)`` long ``(x, y)`` cell of each channel's maximum of ``(B, J, h, w)``."""
    w = density.shape[-1]
    flat = density.flatten(2).argmax(-1)
    return torch.stack([flat % w, torch.div(flat, w, rounding_mode='floor')], -1)


def centroid_refine(density: Tensor, radius: int = 1) -> Tensor:
    """Mass centroid of each channel in the ``(2r+1)^2`` window around its maximum.

    Args:
        density: ``(B, J, h, w)`` non-negative mass per cell.
        radius: window half-size in cells (cells outside the grid are left out).

    Returns:
        ``(B, J, 2)`` float ``(x, y)`` in cells (the argmax where the window is empty).
    """
    b, j, h, w = density.shape
    peak = peak_cells(density)
    r = torch.arange(-int(radius), int(radius) + 1, device=density.device)
    oy, ox = torch.meshgrid(r, r, indexing='ij')
    xs = peak[..., 0, None] + ox.reshape(-1)                    # (B, J, (2r+1)^2)
    ys = peak[..., 1, None] + oy.reshape(-1)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    idx = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1))
    mass = density.flatten(2).gather(-1, idx) * inside.to(density.dtype)
    total = mass.sum(-1)
    safe = total.clamp_min(torch.finfo(density.dtype).tiny)
    cx = (mass * xs.to(density.dtype)).sum(-1) / safe
    cy = (mass * ys.to(density.dtype)).sum(-1) / safe
    out = torch.stack([cx, cy], -1)
    return torch.where((total > 0)[..., None], out, peak.to(density.dtype))


def dark_refine(log_density: Tensor, max_shift: float = 0.5) -> Tensor:
    """Newton step ``-H^-1 g`` on the log density at each channel's maximum (central
    differences; the maximum of a log-quadratic is found exactly).

    Args:
        log_density: ``(B, J, h, w)`` log of the density up to a per-channel constant
            (for a softmax head: ``beta * raw``).
        max_shift: the step is clamped to ``+-max_shift`` cells per axis; it is 0 on
            the grid's border and where the log density is not concave.

    Returns:
        ``(B, J, 2)`` float ``(x, y)`` in cells.
    """
    b, j, h, w = log_density.shape
    peak = peak_cells(log_density)
    x, y = peak[..., 0], peak[..., 1]
    inner = (x >= 1) & (x <= w - 2) & (y >= 1) & (y <= h - 2)
    xc, yc = x.clamp(1, max(w - 2, 1)), y.clamp(1, max(h - 2, 1))
    flat = log_density.flatten(2)

    def at(dx: int, dy: int) -> Tensor:
        xi = (xc + dx).clamp(0, w - 1)
        yi = (yc + dy).clamp(0, h - 1)
        return flat.gather(-1, (yi * w + xi)[..., None])[..., 0]

    c = at(0, 0)
    gx, gy = 0.5 * (at(1, 0) - at(-1, 0)), 0.5 * (at(0, 1) - at(0, -1))
    hxx, hyy = at(1, 0) - 2 * c + at(-1, 0), at(0, 1) - 2 * c + at(0, -1)
    hxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = hxx * hyy - hxy * hxy
    ok = inner & (det > 0) & (hxx < 0) & torch.isfinite(det)
    safe = torch.where(ok, det, torch.ones_like(det))
    sx = -(hyy * gx - hxy * gy) / safe
    sy = -(hxx * gy - hxy * gx) / safe
    shift = torch.stack([sx, sy], -1).clamp(-max_shift, max_shift)
    shift = torch.where(ok[..., None], shift, torch.zeros_like(shift))
    return peak.to(log_density.dtype) + shift


def decode_cells(raw: Tensor, density: Tensor, mode: str, radius: int = 1,
                 beta: float = 1.0, nonneg: str = DEFAULT_NONNEG) -> Tensor:
    """Keypoints ``(B, J, 2)`` ``(x, y)`` in cells by ``mode`` ``'centroid'`` or
    ``'dark'`` (``'codec'`` is MMPose's codec, run by the head).

    Args:
        raw: ``(B, J, h, w)`` raw head output (``'dark'`` on a softmax head reads
            ``beta * raw``, the log density up to a constant).
        density: ``nonnegative(raw, nonneg, beta=beta)``.
        radius: window half-size of ``'centroid'``, cells.
    """
    if mode == 'centroid':
        return centroid_refine(density, radius)
    if mode == 'dark':
        log_d = raw * beta if nonneg == 'softmax' else torch.log(
            density.clamp_min(torch.finfo(density.dtype).tiny))
        return dark_refine(log_d)
    raise ValueError(f"decode_cells: mode must be 'centroid' or 'dark' ('codec' is the "
                     f'head\'s), got {mode!r}')
