"""Differentiable 2D Gaussian splatting with gsplat's rendering conventions.

Conventions shared by every backend (gsplat 1.5.3 ``rasterize_to_pixels``):

* the centre of pixel ``(row i, col j)`` is ``(j + 0.5, i + 0.5)`` px;
* a Gaussian's conic is the upper triangle ``(a, b, c)`` of ``Sigma^-1``;
  ``q = 0.5 * (a dx^2 + c dy^2) + b dx dy`` with ``(dx, dy) = mean - pixel centre``;
* ``alpha = min(0.999, opacity * exp(-q))``; pairs with ``q < 0`` or
  ``alpha < 1/255`` are skipped, so a Gaussian reaches at most
  ``sqrt(2 ln(255 * opacity))`` (3.33 for opacity 1) standard deviations (its *cut-off*
  radius);
* ``alpha`` compositing is front to back in index order and stops before the
  transmittance would drop to ``1e-4`` or below; ``sum`` compositing adds
  ``alpha * colour`` (no occlusion; used by the fit);
* a background (image or colour) is composited behind: ``out += (1 - A) * bg`` with
  ``A`` the accumulated alpha (clamped to 1 for ``sum``).

Backends: ``torch`` (CPU/CUDA) evaluates only the pixels inside each Gaussian's
cut-off window (gather + ``index_add``), ``gsplat`` calls gsplat's CUDA rasteriser,
``dense`` evaluates every Gaussian at every pixel (``O(N H W)``; reference for tests).

Compiled CPU kernel: for ``sum`` compositing on the CPU in float32 or float64 (the
fit's hot path) the ``torch`` backend runs a C++/OpenMP kernel
(``csrc/sum_splat.cpp``) instead of the gathers and scatters: the same values and
gradients (means, conics, colours, opacities, and the background it composites
itself) to float rounding, ~10x faster per pixel pair. It walks the row spans of the
same pixel windows (:attr:`PixelPairs.spans`), skipping the columns of a span that
cannot reach ``alpha >= 1/255``, recomputes the pair values in the backward instead of
storing them, and splits the work by image rows (forward) and by Gaussians (backward),
so results do not depend on the thread count. It is built ahead of time by
``tools/setup_env.sh`` (:mod:`gst_mm.splatting._compiled`) and only loaded here, never
compiled; when it is missing or fails to load the pure-torch path is used and the reason
logged once (logger ``gst_mm``). ``GST_MM_NO_EXT=1`` forces the pure-torch path (read
at every call, for comparisons); CUDA tensors, ``alpha`` compositing and other dtypes
always use it.
"""
from __future__ import annotations

import functools
import logging
import math
import os
from typing import Optional, Tuple, Union

import torch

from .gaussians import Gaussians2D

ALPHA_THRESHOLD = 1.0 / 255.0
ALPHA_MAX = 0.999
TRANSMITTANCE_MIN = 1e-4
BACKENDS = ('auto', 'torch', 'gsplat', 'dense')
COMPOSITING = ('alpha', 'sum')


def cutoff_radius(opacity: float = 1.0) -> float:
    """Mahalanobis radius beyond which ``alpha < 1/255`` (3.33 for opacity 1)."""
    return math.sqrt(2.0 * math.log(max(opacity, ALPHA_THRESHOLD) / ALPHA_THRESHOLD))


def conics_from_covariances(covariances: torch.Tensor) -> torch.Tensor:
    """``(N, 3)`` conics ``(a, b, c)`` = upper triangle of ``Sigma^-1`` for
    ``covariances (N, 2, 2)`` px^2 (differentiable)."""
    sxx, sxy, syy = covariances[:, 0, 0], 0.5 * (covariances[:, 0, 1] + covariances[:, 1, 0]), \
        covariances[:, 1, 1]
    det = sxx * syy - sxy * sxy
    return torch.stack([syy / det, -sxy / det, sxx / det], -1)


@functools.lru_cache(maxsize=1)
def gsplat_status() -> Tuple[bool, str]:
    """``(usable, reason)``: gsplat's CUDA rasteriser can be used, else why not
    (no CUDA, gsplat not installed, or the import / JIT error)."""
    if not torch.cuda.is_available():
        return False, 'CUDA is not available'
    try:
        from gsplat import isect_offset_encode, isect_tiles, rasterize_to_pixels  # noqa: F401
    except ModuleNotFoundError:
        return False, 'gsplat is not installed'
    except Exception as e:  # noqa: BLE001 - any import/JIT failure means "not usable"
        return False, f'gsplat failed to load ({type(e).__name__}: {e})'
    return True, 'gsplat works'


def gsplat_available() -> bool:
    """True when CUDA is available and gsplat's rasteriser imports."""
    return gsplat_status()[0]


_ANNOUNCED: set = set()


def _announce(choice: str, compositing: str, reason: str) -> None:
    """Log the ``'auto'`` backend choice once per process (a warning when an
    installed gsplat had to be passed over)."""
    key = (choice, compositing)
    if key in _ANNOUNCED:
        return
    _ANNOUNCED.add(key)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    msg = (f"gst_mm splatting: backend 'auto' -> {choice} on {device} "
           f'({compositing} compositing; {reason})')
    if choice != 'gsplat' and compositing == 'alpha' and 'failed' in reason:
        import warnings
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
    else:
        logging.getLogger('gst_mm').info(msg)


def resolve_backend(backend: str, compositing: str = 'alpha') -> str:
    """Map ``'auto'`` to a renderer and validate explicit names.

    ``'auto'``: gsplat if it works and ``compositing == 'alpha'`` (the only mode it
    draws), else the torch renderer (on CUDA when present, see
    :func:`gst_mm.splatting.fit.default_device`). The choice, with the reason when
    gsplat is passed over, is logged once per process."""
    if backend not in BACKENDS:
        raise ValueError(f'unknown splatting backend {backend!r}; expected one of {BACKENDS}')
    if compositing not in COMPOSITING:
        raise ValueError(f'unknown compositing {compositing!r}; expected one of {COMPOSITING}')
    if backend != 'auto':
        return backend
    if compositing != 'alpha':
        _announce('torch', compositing, 'gsplat only draws alpha compositing')
        return 'torch'
    ok, reason = gsplat_status()
    choice = 'gsplat' if ok else 'torch'
    _announce(choice, compositing, reason)
    return choice


# ---------------------------------------------------------------------- pixel windows
class PixelPairs:
    """Sparse (pixel, Gaussian) pairs: the pixel centres inside each Gaussian's
    window ellipse ``d^T window_cov^-1 d <= extent^2``.

    Stored as row *spans* (one run of consecutive columns per Gaussian and row); the
    flat per-pair lists are built on first access (the compiled renderer never needs
    them), so pairs made by :func:`build_pairs` cost ``O(spans)`` memory until then.

    Attributes:
        pix: ``(P,)`` flat pixel index ``row * width + col``.
        gid: ``(P,)`` Gaussian index.
        px, py: ``(P,)`` pixel-centre coordinates (px).
        seg_start: ``(P,)`` index of the first pair of the same pixel (pixel-major
            order only, else ``None``); needed by alpha compositing.
        window_cov: ``(N, 2, 2)`` px^2 covariances the windows were built from
            (``margin^2 * Sigma``). extent: their Mahalanobis radius.
        height, width: image size in pixels.
        spans: ``(S, 4)`` int32 rows ``(gaussian, row, first column, count)``
            (derived from ``pix``/``gid`` on first use when not given).
        anchor_means: ``(N, 2)`` means the windows are centred on (set by
            :func:`build_pairs`; needed by :meth:`covers` with ``means``).
    """

    def __init__(self, pix: Optional[torch.Tensor], gid: Optional[torch.Tensor],
                 px: Optional[torch.Tensor], py: Optional[torch.Tensor],
                 seg_start: Optional[torch.Tensor], window_cov: torch.Tensor, extent: float,
                 height: int, width: int, *, spans: Optional[torch.Tensor] = None,
                 dtype: Optional[torch.dtype] = None,
                 anchor_means: Optional[torch.Tensor] = None):
        if pix is None and spans is None:
            raise ValueError('PixelPairs needs pix/gid or spans')
        self._pix, self._gid, self._px, self._py = pix, gid, px, py
        self.seg_start = seg_start
        self.window_cov = window_cov
        self.extent = extent
        self.height, self.width = height, width
        self._spans = spans
        self.anchor_means = anchor_means
        self._dtype = dtype if dtype is not None else (
            px.dtype if px is not None else window_cov.dtype)

    def _materialize(self) -> None:
        """Expand the spans into the flat per-pair lists (Gaussian-major order)."""
        sp = self._spans.to(torch.long)
        device = sp.device
        g, row, c0, cnt = sp.unbind(1)
        item = torch.repeat_interleave(torch.arange(sp.shape[0], device=device), cnt)
        off = torch.cumsum(cnt, 0) - cnt
        col = c0[item] + torch.arange(item.numel(), device=device) - off[item]
        row = row[item]
        self._gid = g[item]
        self._pix = row * self.width + col
        self._px = col.to(self._dtype) + 0.5
        self._py = row.to(self._dtype) + 0.5

    @property
    def pix(self) -> torch.Tensor:
        if self._pix is None:
            self._materialize()
        return self._pix

    @property
    def gid(self) -> torch.Tensor:
        if self._gid is None:
            self._materialize()
        return self._gid

    @property
    def px(self) -> torch.Tensor:
        if self._px is None:
            self._materialize()
        return self._px

    @property
    def py(self) -> torch.Tensor:
        if self._py is None:
            self._materialize()
        return self._py

    @property
    def spans(self) -> torch.Tensor:
        """``(S, 4)`` int32 ``(gaussian, row, first column, count)`` runs of pairs."""
        if self._spans is None:
            self._spans = _spans_from_pairs(self._pix, self._gid, self.height, self.width)
        return self._spans

    def __len__(self) -> int:
        if self._pix is not None:
            return int(self._pix.numel())
        return int(self._spans[:, 3].sum()) if self._spans.numel() else 0

    def __repr__(self) -> str:
        return (f'PixelPairs({len(self)} pairs, {self.height}x{self.width}, '
                f'extent={self.extent:.3f})')

    def covers(self, covariances: torch.Tensor, extent: float,
               means: Optional[torch.Tensor] = None) -> bool:
        """True if every Gaussian's cut-off ellipse (``extent``) still lies inside its
        window, i.e. ``extent^2 Sigma <= self.extent^2 window_cov`` (Loewner order:
        largest eigenvalue of ``window^-1 Sigma`` at most the squared ratio).

        With ``means`` (Gaussians whose means move, :mod:`.free_fit`), the ellipse
        centred at the moved mean must lie in the window centred at
        ``anchor_means``: ``|W^-1/2 (mu - mu_0)| + extent sqrt(lambda_max) <=
        self.extent`` (a sufficient condition)."""
        w = self.window_cov.double()
        c = covariances.detach().double()
        det_w = w[:, 0, 0] * w[:, 1, 1] - w[:, 0, 1] * w[:, 1, 0]
        # M = adj(W) C / det(W); its eigenvalues are real and positive for SPD W, C
        m00 = (w[:, 1, 1] * c[:, 0, 0] - w[:, 0, 1] * c[:, 1, 0]) / det_w
        m11 = (w[:, 0, 0] * c[:, 1, 1] - w[:, 1, 0] * c[:, 0, 1]) / det_w
        m01 = (w[:, 1, 1] * c[:, 0, 1] - w[:, 0, 1] * c[:, 1, 1]) / det_w
        m10 = (w[:, 0, 0] * c[:, 1, 0] - w[:, 1, 0] * c[:, 0, 0]) / det_w
        tr, det = m00 + m11, m00 * m11 - m01 * m10
        lam = tr / 2 + torch.sqrt((tr * tr / 4 - det).clamp_min(0))
        lam = torch.nan_to_num(lam, nan=math.inf)
        if means is None:
            return bool((lam <= (self.extent / extent) ** 2).all())
        if self.anchor_means is None:
            return False
        d = means.detach().double() - self.anchor_means.double()
        shift = torch.sqrt((w[:, 1, 1] * d[:, 0] ** 2 - 2 * w[:, 0, 1] * d[:, 0] * d[:, 1]
                            + w[:, 0, 0] * d[:, 1] ** 2) / det_w)
        ok = torch.nan_to_num(shift, nan=math.inf) + extent * lam.sqrt() <= self.extent
        return bool(ok.all())


def _spans_from_pairs(pix: torch.Tensor, gid: torch.Tensor, height: int,
                      width: int) -> torch.Tensor:
    """``(S, 4)`` int32 spans of arbitrary pair lists: sorted by (Gaussian, pixel),
    a new span wherever the Gaussian or row changes or a column is skipped (a
    repeated pair starts a new span, so it still counts twice)."""
    pix, gid = pix.long().cpu(), gid.long().cpu()
    if pix.numel() == 0:
        return torch.zeros(0, 4, dtype=torch.int32)
    key = gid * max(height * width, 1) + pix
    if bool((key[1:] < key[:-1]).any()):
        order = torch.argsort(key, stable=True)
        pix, gid = pix[order], gid[order]
    row, col = pix // width, pix % width
    new = torch.ones_like(pix, dtype=torch.bool)
    new[1:] = (gid[1:] != gid[:-1]) | (row[1:] != row[:-1]) | (col[1:] != col[:-1] + 1)
    start = torch.nonzero(new).flatten()
    count = torch.diff(start, append=torch.tensor([pix.numel()]))
    return torch.stack([gid[start], row[start], col[start], count], 1).to(torch.int32)


def window_radii(covariances: torch.Tensor, extent: float) -> torch.Tensor:
    """``(N, 2)`` half-extents (px) in x and y of the ellipse ``q <= extent^2 / 2``
    (``extent * sqrt(Sigma_xx)``, ``extent * sqrt(Sigma_yy)``); non-finite -> 0."""
    diag = torch.stack([covariances[:, 0, 0], covariances[:, 1, 1]], -1).detach()
    r = extent * diag.clamp_min(0).sqrt()
    return torch.nan_to_num(r, nan=0.0, posinf=0.0)


def build_pairs(means: torch.Tensor, covariances: torch.Tensor, height: int, width: int, *,
                extent: float = cutoff_radius(1.0), margin: float = 1.0,
                pixel_major: bool = False) -> PixelPairs:
    """Enumerate the pixels whose centres lie in each Gaussian's window ellipse
    ``d^T (margin^2 Sigma)^-1 d <= extent^2``, row by row (exact ellipse spans, not
    bounding boxes). With ``extent`` the cut-off radius and ``margin >= 1`` this holds
    every pixel with ``alpha >= 1/255``.

    Args:
        means: ``(N, 2)`` px (x, y). covariances: ``(N, 2, 2)`` px^2.
        height, width: image size in pixels.
        extent: Mahalanobis radius; margin: factor >= 1 of slack (a fit reuses the
            windows while the Gaussians change, see :meth:`PixelPairs.covers`).
        pixel_major: sort pairs by (pixel, Gaussian index) and fill ``seg_start``.
    """
    device = means.device
    n = means.shape[0]
    cov_w = (covariances.detach() * margin ** 2)
    c = cov_w.double()
    m = means.detach().double()
    det = c[:, 0, 0] * c[:, 1, 1] - c[:, 0, 1] * c[:, 1, 0]
    good = (torch.isfinite(m).all(1) & torch.isfinite(c).flatten(1).all(1) & (det > 0)
            & (c[:, 0, 0] > 0))
    c = torch.where(good[:, None, None], c, torch.eye(2, dtype=c.dtype, device=device))
    m = torch.where(good[:, None], m, torch.zeros_like(m))
    det = torch.where(good, det, torch.ones_like(det))
    ca, cb, cc = c[:, 1, 1] / det, -c[:, 0, 1] / det, c[:, 0, 0] / det  # conic of window
    r2 = extent * extent  # q_w = 0.5 d^T C^-1 d <= extent^2 / 2
    ry = extent * c[:, 1, 1].sqrt()
    eps = 1e-6
    y0 = torch.ceil(m[:, 1] - ry - 0.5 - eps).clamp(0, height).long()
    y1 = torch.floor(m[:, 1] + ry - 0.5 + eps).clamp(-1, height - 1).long()
    nrows = torch.where(good, (y1 - y0 + 1).clamp_min(0), torch.zeros_like(y0))
    # one item per (Gaussian, row): its column span
    rg = torch.repeat_interleave(torch.arange(n, device=device), nrows)
    roff = torch.cumsum(nrows, 0) - nrows
    row = y0[rg] + torch.arange(rg.numel(), device=device) - roff[rg]
    dy = m[rg, 1] - (row.double() + 0.5)          # mean - pixel centre (gsplat's delta)
    a, b = ca[rg], cb[rg]
    disc = (b * dy) ** 2 - a * (cc[rg] * dy * dy - r2)
    sq = disc.clamp_min(0).sqrt()
    dx_lo, dx_hi = (-b * dy - sq) / a, (-b * dy + sq) / a
    mx = m[rg, 0]
    c0 = torch.ceil(mx - dx_hi - 0.5 - eps).clamp(0, width).long()
    c1 = torch.floor(mx - dx_lo - 0.5 + eps).clamp(-1, width - 1).long()
    ncols = torch.where(disc >= 0, (c1 - c0 + 1).clamp_min(0), torch.zeros_like(c0))
    keep = ncols > 0
    spans = torch.stack([rg[keep], row[keep], c0[keep], ncols[keep]], 1).to(torch.int32)
    pairs = PixelPairs(None, None, None, None, None, window_cov=cov_w, extent=extent,
                       height=height, width=width, spans=spans, dtype=means.dtype,
                       anchor_means=means.detach().clone())
    if pixel_major:
        pix, gid = pairs.pix, pairs.gid
        if pix.numel():
            order = torch.argsort(pix * max(n, 1) + gid)
            pix, gid = pix[order], gid[order]
            first = torch.ones_like(pix, dtype=torch.bool)
            first[1:] = pix[1:] != pix[:-1]
            idx = torch.arange(pix.numel(), device=device)
            seg_start = torch.cummax(torch.where(first, idx, torch.zeros_like(idx)), 0).values
        else:
            seg_start = torch.zeros_like(pix)
        row, col = pix // width, pix % width
        pairs = PixelPairs(pix, gid, col.to(means.dtype) + 0.5, row.to(means.dtype) + 0.5,
                           seg_start, window_cov=cov_w, extent=extent, height=height,
                           width=width, spans=spans, anchor_means=pairs.anchor_means)
    return pairs


# ---------------------------------------------------------------------- torch backend
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
    from . import _compiled
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
    from . import _compiled
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


# ---------------------------------------------------------------------- dense reference
def _render_dense(g: Gaussians2D, opacities: torch.Tensor, height: int, width: int,
                  compositing: str, rows: Optional[Tuple[int, int]] = None):
    """Every Gaussian at every pixel of rows ``[r0, r1)`` (reference, O(N H W))."""
    r0, r1 = rows if rows is not None else (0, height)
    dtype, device = g.means.dtype, g.means.device
    ys = torch.arange(r0, r1, dtype=dtype, device=device) + 0.5
    xs = torch.arange(width, dtype=dtype, device=device) + 0.5
    con = conics_from_covariances(g.covariances)
    dx = g.means[:, 0, None, None] - xs[None, None, :]          # (N, 1, W)
    dy = g.means[:, 1, None, None] - ys[None, :, None]          # (N, h, 1)
    q = 0.5 * (con[:, 0, None, None] * dx * dx + con[:, 2, None, None] * dy * dy) \
        + con[:, 1, None, None] * dx * dy                        # (N, h, W)
    alpha = (opacities[:, None, None] * torch.exp(-q)).clamp(max=ALPHA_MAX)
    alpha = torch.where((q >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
    if compositing == 'alpha':
        t_after = torch.cumprod(1 - alpha, 0)
        t_before = torch.cat([torch.ones_like(t_after[:1]), t_after[:-1]], 0)
        weight = torch.where(t_after > TRANSMITTANCE_MIN, alpha * t_before,
                             torch.zeros_like(alpha))
    else:
        weight = alpha
    rgb = torch.einsum('nhw,nc->hwc', weight, g.colors)
    return rgb, weight.sum(0)


# ---------------------------------------------------------------------- gsplat backend
def _render_gsplat(g: Gaussians2D, opacities: torch.Tensor, height: int, width: int,
                   tile_size: int = 16):
    """gsplat 1.5.3 ``rasterize_to_pixels`` on CUDA (alpha compositing only).

    Depths are ``1, 2, ..., N`` so gsplat's front-to-back order is the index order
    used by the torch backend.
    """
    from gsplat import isect_offset_encode, isect_tiles, rasterize_to_pixels
    dev = g.means.device if g.means.is_cuda else torch.device('cuda')
    means = g.means.to(dev).float().contiguous()
    cov = g.covariances.to(dev).float()
    conics = conics_from_covariances(cov).contiguous()
    colors = g.colors.to(dev).float().contiguous()
    opac = opacities.to(dev).float().contiguous()
    n = means.shape[0]
    # per-axis radius as gsplat's projection computes it (opacity-aware extent)
    extent = torch.sqrt(2.0 * torch.log(opac.detach().clamp_min(ALPHA_THRESHOLD)
                                        / ALPHA_THRESHOLD)).clamp(max=3.33)
    diag = torch.stack([cov[:, 0, 0], cov[:, 1, 1]], -1).detach().clamp_min(0)
    radii = torch.ceil(extent[:, None] * diag.sqrt())
    radii = torch.nan_to_num(radii, nan=0.0, posinf=0.0).to(torch.int32)
    depths = torch.arange(1, n + 1, device=dev, dtype=torch.float32)
    tile_w = (width + tile_size - 1) // tile_size
    tile_h = (height + tile_size - 1) // tile_size
    _, isect_ids, flatten_ids = isect_tiles(means[None], radii[None], depths[None], tile_size,
                                            tile_w, tile_h)
    offsets = isect_offset_encode(isect_ids, 1, tile_w, tile_h)
    rgb, acc = rasterize_to_pixels(means[None], conics[None], colors[None], opac[None],
                                   width, height, tile_size, offsets, flatten_ids)
    out_dev = g.means.device
    return rgb[0].to(out_dev), acc[0, ..., 0].to(out_dev)


# ---------------------------------------------------------------------- public API
def render(gaussians: Gaussians2D, height: int, width: int, backend: str = 'auto', *,
           compositing: str = 'alpha', opacities: Optional[Union[torch.Tensor, float]] = None,
           background: Optional[torch.Tensor] = None, pairs: Optional[PixelPairs] = None,
           rows: Optional[Tuple[int, int]] = None, return_alpha: bool = False):
    """Splat ``gaussians`` into an ``(height, width, 3)`` image (differentiable with
    respect to covariances — hence scales and angles — and colours).

    Args:
        gaussians: the Gaussians (means px (x, y), covariances px^2, colours).
        height, width: output size in pixels.
        backend: ``'auto'`` | ``'torch'`` | ``'gsplat'`` | ``'dense'`` (see module doc).
        compositing: ``'alpha'`` (gsplat, default) or ``'sum'`` (torch/dense only).
        opacities: ``(N,)`` or a scalar in (0, 1]; default 1.
        background: ``(H, W, 3)`` image or ``(3,)`` colour composited behind.
        pairs: precomputed :class:`PixelPairs` (torch backend; a fit reuses them).
        rows: ``(r0, r1)`` render only these rows (``dense`` only, for chunking).
        return_alpha: also return the ``(H, W)`` accumulated alpha.

    Returns:
        ``(H, W, 3)`` tensor on the Gaussians' device (and the alpha map).
    """
    backend = resolve_backend(backend, compositing)
    g = gaussians
    n = len(g)
    if opacities is None:
        opacities = 1.0
    if not isinstance(opacities, torch.Tensor) or opacities.dim() == 0:
        opacities = torch.full((n,), float(opacities), dtype=g.means.dtype, device=g.means.device)
    composited = False  # the compiled kernel composites the background itself
    if backend == 'gsplat':
        if compositing != 'alpha':
            raise ValueError("the gsplat backend only does alpha compositing")
        rgb, acc = _render_gsplat(g, opacities, height, width)
    elif backend == 'dense':
        rgb, acc = _render_dense(g, opacities, height, width, compositing, rows)
    else:
        if rows is not None:
            raise ValueError('rows= is only supported by the dense backend')
        rgb, acc, composited = _render_torch(g, opacities, height, width, compositing, pairs,
                                             background)
    if background is not None and not composited:
        bg = background.to(rgb)
        if rows is not None and bg.dim() == 3:
            bg = bg[rows[0]:rows[1]]
        rgb = rgb + (1 - acc.clamp(max=1))[..., None] * bg
    return (rgb, acc) if return_alpha else rgb
