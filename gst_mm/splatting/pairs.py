"""Pixel windows of the torch renderer: the sparse (pixel, Gaussian) pairs each
Gaussian can reach (:class:`PixelPairs`, built by :func:`build_pairs`), stored as row
spans so the compiled kernel walks them directly and a fit can reuse them while its
Gaussians stay inside (:meth:`PixelPairs.covers`)."""
from __future__ import annotations

import math
from typing import Optional

import torch

from .conventions import cutoff_radius


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
