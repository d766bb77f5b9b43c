"""The torch renderer: pair gathers / scatters with a hand-written backward
(:class:`_SumSplat`), alpha compositing over pixel-major pairs, and the compiled CPU
kernel for sum compositing (:class:`_SumSplatCompiled`, ``csrc/sum_splat.cpp``: the same
values and gradients to float rounding, ~10x faster per pixel pair; built ahead of
time by ``tools/setup_env.sh``, :mod:`gst_mm.splatting._compiled`, only loaded here;
``GST_MM_NO_EXT=1`` forces the pure-torch path, read at every call)."""
from __future__ import annotations

import logging
import math
import os
from typing import Optional, Tuple

import torch

from ..conventions import (
    ALPHA_MAX,
    ALPHA_THRESHOLD,
    TRANSMITTANCE_MIN,
    conics_from_covariances,
    cutoff_radius,
)
from ..gaussians import Gaussians2D
from ..pairs import PixelPairs, build_pairs


def _pair_alphas(means: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor,
                 pairs: PixelPairs) -> torch.Tensor:
    """``(P,)`` alpha of every pair, zero where gsplat skips it."""
    g = pairs.gid
    dx = means[g, 0] - pairs.px
    dy = means[g, 1] - pairs.py
    con = conics[g]
    q = 0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) + con[:, 1] * dx * dy
    alpha = (opacities[g] * torch.exp(-q)).clamp(max=ALPHA_MAX)
    keep = (q >= 0) & (alpha >= ALPHA_THRESHOLD)
    return torch.where(keep, alpha, torch.zeros_like(alpha))


def _composite_pairs(alpha: torch.Tensor, colors: torch.Tensor, pairs: PixelPairs,
                     compositing: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Accumulate pair alphas into ``(H*W, 3)`` colour and ``(H*W,)`` alpha."""
    hw = pairs.height * pairs.width
    if compositing == 'alpha':
        if pairs.seg_start is None:
            raise ValueError('alpha compositing needs pixel-major pairs (pixel_major=True)')
        la = torch.log1p(-alpha).double()  # alpha <= 0.999, finite
        cs = torch.cumsum(la, 0)
        base = cs[pairs.seg_start] - la[pairs.seg_start]
        log_t_after = cs - base
        log_t_before = log_t_after - la
        include = log_t_after > math.log(TRANSMITTANCE_MIN)
        weight = alpha * torch.exp(log_t_before).to(alpha.dtype)
        weight = torch.where(include, weight, torch.zeros_like(weight))
    else:
        weight = alpha
    rgb = torch.zeros(hw, colors.shape[1], dtype=colors.dtype, device=colors.device)
    rgb = rgb.index_add(0, pairs.pix, weight[:, None] * colors[pairs.gid])
    acc = torch.zeros(hw, dtype=alpha.dtype, device=alpha.device).index_add(0, pairs.pix, weight)
    return rgb, acc


def _scatter_add(values: torch.Tensor, idx: torch.Tensor, size: int) -> torch.Tensor:
    """1D ``values (P,)`` summed into ``(size,)`` at ``idx (P,)``."""
    return values.new_zeros(size).index_add_(0, idx, values)


class _SumSplat(torch.autograd.Function):
    """Sum compositing over pixel pairs with a hand-written backward: 1D gathers
    (``index_select``) and scatters (``index_add_``) per channel, which on CPU are
    several times faster than autograd through advanced indexing.
    Returns ``(rgb (H*W, C), acc (H*W,))``."""

    @staticmethod
    def forward(ctx, means, conics, colors, opacities, pairs: PixelPairs):
        g, pix = pairs.gid, pairs.pix
        hw = pairs.height * pairs.width
        dx = means[:, 0].index_select(0, g).sub_(pairs.px)
        dy = means[:, 1].index_select(0, g).sub_(pairs.py)
        # q = 0.5 a dx^2 + b dx dy + 0.5 c dy^2, in place to limit (P,) temporaries
        q = conics[:, 0].index_select(0, g).mul_(dx).mul_(0.5)
        q.add_(conics[:, 1].index_select(0, g).mul_(dy)).mul_(dx)
        q.add_(conics[:, 2].index_select(0, g).mul_(dy).mul_(dy).mul_(0.5))
        valid = q >= 0
        raw = q.neg_().exp_().mul_(opacities.index_select(0, g))  # q is overwritten
        valid &= raw >= ALPHA_THRESHOLD
        # d alpha / d q = -alpha where alpha is neither skipped nor clamped
        dalpha = raw * (valid & (raw <= ALPHA_MAX))
        alpha = raw.clamp_(max=ALPHA_MAX).mul_(valid)
        chans = [_scatter_add(colors[:, k].index_select(0, g).mul_(alpha), pix, hw)
                 for k in range(colors.shape[1])]
        acc = _scatter_add(alpha, pix, hw)
        ctx.pairs = pairs
        ctx.save_for_backward(means, conics, colors, opacities, alpha, dalpha, dx, dy)
        return torch.stack(chans, 1), acc

    @staticmethod
    def backward(ctx, g_rgb, g_acc):
        means, conics, colors, opacities, alpha, dalpha, dx, dy = ctx.saved_tensors
        pairs = ctx.pairs
        g, pix = pairs.gid, pairs.pix
        n = means.shape[0]
        g_alpha = g_acc.index_select(0, pix)
        gr = []
        for k in range(colors.shape[1]):
            grk = g_rgb[:, k].index_select(0, pix)
            gr.append(grk)
            g_alpha.addcmul_(grk, colors[:, k].index_select(0, g))
        grads = [None] * 5
        if ctx.needs_input_grad[2]:
            grads[2] = torch.stack([_scatter_add(grk.mul_(alpha), g, n) for grk in gr], 1)
        gq = g_alpha.mul(dalpha).neg_()  # dL/dq
        if ctx.needs_input_grad[1]:
            hx = gq * dx
            hy = gq * dy
            grads[1] = torch.stack([_scatter_add(hx * dx, g, n).mul_(0.5),
                                    _scatter_add(hx.mul_(dy), g, n),
                                    _scatter_add(hy.mul_(dy), g, n).mul_(0.5)], 1)
        if ctx.needs_input_grad[0]:
            ca, cb, cc = (conics[:, k].index_select(0, g) for k in range(3))
            grads[0] = torch.stack([_scatter_add((ca * dx + cb * dy) * gq, g, n),
                                    _scatter_add((cc * dy + cb * dx) * gq, g, n)], 1)
        if ctx.needs_input_grad[3]:
            grads[3] = _scatter_add(dalpha / opacities.index_select(0, g) * g_alpha, g, n)
        return tuple(grads)


class _SumSplatCompiled(torch.autograd.Function):
    """:class:`_SumSplat` by the compiled CPU kernel (``csrc/sum_splat.cpp``): the
    same inputs, outputs and gradients (means, conics, colours, opacities), computed
    per row span of the pairs; the pair values are recomputed in the backward instead
    of stored. With a ``background`` (``(H*W, C)`` image or ``(C,)`` colour) the kernel
    also composites it as :func:`render` does, ``rgb + (1 - min(acc, 1)) * bg``
    (its gradient, when it requires one, is computed here). Returns
    ``(out (H*W, C), acc (H*W,))``. Not twice differentiable."""

    @staticmethod
    def forward(ctx, means, conics, colors, opacities, background, spans, height, width,
                kernel):
        args = [t.detach().contiguous() for t in (means, conics, colors, opacities)]
        bg = background.detach().contiguous() if background is not None else None
        out, acc = kernel.forward(*args, spans, height, width, bg)
        ctx.kernel, ctx.size = kernel, (height, width)
        ctx.bg_shape = None if background is None else background.shape
        ctx.save_for_backward(*args, spans, bg, acc)
        return out, acc

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_acc):
        means, conics, colors, opacities, spans, bg, acc = ctx.saved_tensors
        g_out, g_acc = g_out.contiguous(), g_acc.contiguous()
        grads = ctx.kernel.backward(means, conics, colors, opacities, spans, *ctx.size,
                                    g_out, g_acc, bg, acc if bg is not None else None)
        g_bg = None
        if ctx.needs_input_grad[4]:
            g_bg = g_out * (1 - acc.clamp(max=1))[:, None]
            g_bg = g_bg.sum(0) if len(ctx.bg_shape) == 1 else g_bg.view(ctx.bg_shape)
        return tuple(gr if need else None
                     for gr, need in zip(grads, ctx.needs_input_grad[:4])) + (g_bg,) + (None,) * 4


_COMPILED_DTYPES = (torch.float32, torch.float64)
_KERNEL_NOTED: set = set()


def _note_kernel(key: str, msg: str, level: int) -> None:
    """Log ``msg`` once per process and ``key``."""
    if key not in _KERNEL_NOTED:
        _KERNEL_NOTED.add(key)
        logging.getLogger('gst_mm').log(level, 'gst_mm splatting: %s', msg)


def compiled_kernel_disabled() -> bool:
    """True when ``GST_MM_NO_EXT`` is set to anything but ``''`` / ``'0'`` (read at
    every call, so a test or benchmark can switch it at run time)."""
    return os.environ.get('GST_MM_NO_EXT', '') not in ('', '0')


def compiled_kernel_status() -> Tuple[bool, str]:
    """``(usable, reason)`` of the compiled CPU sum-compositing kernel (loading it
    does not compile; see :mod:`gst_mm.splatting._compiled`)."""
    if compiled_kernel_disabled():
        return False, 'disabled by GST_MM_NO_EXT'
    from .. import _compiled
    module, reason = _compiled.load()
    return module is not None, reason


def _sum_kernel(g: Gaussians2D, opacities: torch.Tensor):
    """The compiled kernel if it applies (CPU, float32/float64, one dtype, built and
    not disabled), else ``None``; why not is logged once."""
    tensors = (g.means, g.covariances, g.colors, opacities)
    if any(t.device.type != 'cpu' for t in tensors):
        return None
    dtype = g.means.dtype
    if dtype not in _COMPILED_DTYPES or any(t.dtype != dtype for t in tensors):
        return None
    if compiled_kernel_disabled():
        _note_kernel('disabled', 'compiled CPU renderer disabled by GST_MM_NO_EXT; '
                     'using the torch renderer', logging.INFO)
        return None
    from .. import _compiled
    module, reason = _compiled.load()
    if module is None:
        _note_kernel('missing', f'compiled CPU renderer not used: {reason}; using the '
                     'torch renderer (several times slower)', logging.WARNING)
    else:
        _note_kernel('loaded', f'compiled CPU renderer: {reason}', logging.DEBUG)
    return module


def _fusable_background(background: Optional[torch.Tensor], height: int, width: int,
                        channels: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
    """``background`` as the kernel takes it (``(H*W, C)`` or ``(C,)``, CPU, ``dtype``),
    or ``None`` when its shape is another broadcastable one (composited in Python)."""
    if background is None or background.device.type != 'cpu':
        return None
    bg = background.to(dtype)
    if bg.shape == (height, width, channels):
        return bg.reshape(height * width, channels)
    if bg.shape == (channels,):
        return bg
    return None


def _render_torch(g: Gaussians2D, opacities: torch.Tensor, height: int, width: int,
                  compositing: str, pairs: Optional[PixelPairs],
                  background: Optional[torch.Tensor] = None):
    """``(rgb, acc, composited)``: the torch renderer, by the compiled kernel for CPU
    sum compositing when it is available (then also compositing ``background`` when
    its shape allows: ``composited`` True)."""
    kernel = _sum_kernel(g, opacities) if compositing == 'sum' else None
    if pairs is None:
        max_opacity = float(opacities.detach().max()) if len(g) else 1.0
        pairs = build_pairs(g.means, g.covariances, height, width,
                            extent=cutoff_radius(max_opacity), pixel_major=compositing == 'alpha')
    conics = conics_from_covariances(g.covariances)
    composited = False
    spans = pairs.spans if kernel is not None else None
    if spans is not None and spans.device.type == 'cpu':
        bg = _fusable_background(background, height, width, g.colors.shape[1], g.means.dtype)
        composited = bg is not None
        rgb, acc = _SumSplatCompiled.apply(g.means, conics, g.colors, opacities, bg,
                                           spans.contiguous(), height, width, kernel)
    elif compositing == 'sum':
        rgb, acc = _SumSplat.apply(g.means, conics, g.colors, opacities, pairs)
    else:
        alpha = _pair_alphas(g.means, conics, opacities, pairs)
        rgb, acc = _composite_pairs(alpha, g.colors, pairs, compositing)
    return rgb.view(height, width, -1), acc.view(height, width), composited
