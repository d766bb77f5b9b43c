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

Backends (:mod:`.backends`): ``torch`` (CPU/CUDA) evaluates only the pixels inside each
Gaussian's cut-off window (:mod:`.pairs`; on the CPU, sum compositing in float32/64 runs
the compiled C++/OpenMP kernel, the fit's hot path, results independent of the thread
count; ``GST_MM_NO_EXT=1`` forces the pure-torch path), ``gsplat`` calls gsplat's CUDA
rasteriser, ``dense`` evaluates every Gaussian at every pixel (``O(N H W)``; reference
for tests). The conventions' constants are in :mod:`.conventions`.

Layout: :mod:`.conventions` (constants, cut-off, conics), :mod:`.pairs` (pixel windows),
:mod:`.backends` (the renderers), this module (backend choice and :func:`render`, which
checks its inputs' shapes at entry).
"""
from __future__ import annotations

import logging
from typing import Optional, Tuple, Union

import torch

from .backends import (  # noqa: F401 (public names of the renderer, kept importable here)
    _render_dense,
    _render_gsplat,
    _render_torch,
    _SumSplat,
    _SumSplatCompiled,
    compiled_kernel_disabled,
    compiled_kernel_status,
    gsplat_available,
    gsplat_status,
)
from .conventions import (  # noqa: F401
    ALPHA_MAX,
    ALPHA_THRESHOLD,
    BACKENDS,
    COMPOSITING,
    TRANSMITTANCE_MIN,
    conics_from_covariances,
    cutoff_radius,
)
from .gaussians import Gaussians2D
from .pairs import PixelPairs, _spans_from_pairs, build_pairs, window_radii  # noqa: F401

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

    Raises:
        ValueError: naming the argument whose shape or value is wrong (as gsplat
            asserts at entry): ``height``/``width`` not positive integers,
            ``opacities`` not a scalar or ``(N,)``, ``background`` not ``(H, W, C)``
            / ``(C,)`` (or broadcastable to ``(H, W, C)``), ``rows`` outside the image.
    """
    backend = resolve_backend(backend, compositing)
    g = gaussians
    n = len(g)
    _check_inputs(g, height, width, opacities, background, rows)
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


def _check_inputs(g: Gaussians2D, height: int, width: int, opacities, background,
                  rows: Optional[Tuple[int, int]]) -> None:
    """Shapes at entry (see :func:`render`'s Raises)."""
    if not isinstance(g, Gaussians2D):
        raise ValueError(f'render: gaussians must be a Gaussians2D, got {type(g).__name__}')
    for name, v in (('height', height), ('width', width)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f'render: {name} must be a positive int, got {v!r}')
    n, channels = len(g), g.colors.shape[1]
    if isinstance(opacities, torch.Tensor) and opacities.dim() > 0 \
            and tuple(opacities.shape) != (n,):
        raise ValueError(f'render: opacities must be a scalar or ({n},) for {n} Gaussians, '
                         f'got shape {tuple(opacities.shape)}')
    if rows is not None and not (0 <= rows[0] < rows[1] <= height):
        raise ValueError(f'render: rows must satisfy 0 <= r0 < r1 <= height={height}, '
                         f'got {tuple(rows)}')
    if background is not None:
        if not isinstance(background, torch.Tensor):
            raise ValueError(f'render: background must be a tensor, got '
                             f'{type(background).__name__}')
        full = (height, width, channels)
        ok = tuple(background.shape) in (full, (channels,))
        if not ok and background.dim() <= 3:
            try:
                ok = torch.broadcast_shapes(tuple(background.shape), full) == full
            except RuntimeError:
                ok = False
        if not ok:
            raise ValueError(f'render: background must be ({height}, {width}, {channels}) or '
                             f'({channels},), got shape {tuple(background.shape)}')
