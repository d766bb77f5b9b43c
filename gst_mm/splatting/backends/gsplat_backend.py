"""gsplat's CUDA rasteriser as a backend (optional: gsplat cannot render on a CPU)."""
from __future__ import annotations

import functools
from typing import Tuple

import torch

from ..conventions import ALPHA_THRESHOLD, conics_from_covariances
from ..gaussians import Gaussians2D


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
