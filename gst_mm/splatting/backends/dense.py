"""The dense reference renderer: every Gaussian at every pixel (``O(N H W)``), for
agreement tests of the windowed renderers."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..conventions import ALPHA_MAX, ALPHA_THRESHOLD, TRANSMITTANCE_MIN, conics_from_covariances
from ..gaussians import Gaussians2D


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
