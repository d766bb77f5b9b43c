"""Pure drawing helpers for transport maps and density maps (numpy + OpenCV, RGB uint8).

The transport map follows the paper's Figure 5: every annotation gets its own
colour, each density cell is painted with the colours of the annotations it is
transported to, weighted by the kernel entries (brightness = kernel weight),
and the share going to the virtual background is left black (blank).

All images here are RGB ``uint8`` ``(H, W, 3)``; points are ``(x, y)`` input px.
"""
from __future__ import annotations

import colorsys
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

GOLDEN_RATIO_CONJUGATE = 0.618033988749895


def annotation_colors(num: int, seed: int = 0) -> np.ndarray:
    """``num`` well-separated saturated colours, ``(num, 3)`` uint8 RGB.

    Hues step by the golden ratio (neighbouring indices far apart on the colour
    wheel); ``seed`` shifts the starting hue.
    """
    start = (seed * 0.1234567) % 1.0
    colors = np.empty((num, 3), dtype=np.uint8)
    for n in range(num):
        hue = (start + n * GOLDEN_RATIO_CONJUGATE) % 1.0
        sat = 0.75 + 0.25 * ((n * 7) % 3) / 2
        r, g, b = colorsys.hsv_to_rgb(hue, sat, 1.0)
        colors[n] = (round(r * 255), round(g * 255), round(b * 255))
    return colors


def transport_map(kernel, colors: Optional[np.ndarray] = None) -> np.ndarray:
    """Colour each density cell by the annotations its mass is transported to.

    Args:
        kernel: a :class:`gst_mm.transport.TransportKernel` (sparse ``rows``,
            ``cols``, ``values``), or a dense ``(h * w, N [+ 1])`` matrix together
            with ``kernel.grid_shape`` — for a dense array pass
            ``(matrix, (h, w))``.
        colors: ``(N, 3)`` uint8 RGB per annotation (default :func:`annotation_colors`).

    Returns:
        ``(h, w, 3)`` uint8: ``sum_n K[i, n] * colour_n``; background share black.
    """
    if isinstance(kernel, tuple):
        matrix, grid_shape = kernel
        matrix = torch.as_tensor(np.asarray(matrix), dtype=torch.float64)
        num_points = None
    else:
        grid_shape = kernel.grid_shape
        num_points = kernel.num_points
        matrix = None
    h, w = int(grid_shape[0]), int(grid_shape[1])
    if matrix is not None:
        num_points = matrix.shape[1] if colors is None else len(colors)
        matrix = matrix[:, :num_points]
    if colors is None:
        colors = annotation_colors(num_points)
    colors = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
    if len(colors) < num_points:
        raise ValueError(f'transport_map: {len(colors)} colours for {num_points} annotations')
    col = torch.as_tensor(colors[:num_points], dtype=torch.float64)
    if matrix is not None:
        flat = matrix @ col
    else:
        rows = kernel.rows.detach().cpu().long()
        cols = kernel.cols.detach().cpu().long()
        vals = kernel.values.detach().cpu().to(torch.float64)
        flat = torch.zeros(h * w, 3, dtype=torch.float64)
        flat.index_add_(0, rows, vals[:, None] * col[cols])
    return np.clip(flat.numpy().reshape(h, w, 3), 0, 255).round().astype(np.uint8)


def colorize_density(density, vmax: Optional[float] = None,
                     colormap: int = cv2.COLORMAP_INFERNO) -> np.ndarray:
    """Density map ``(h, w)`` (or ``(1, h, w)``) -> ``(h, w, 3)`` uint8 RGB heat map.

    Args:
        density: non-negative density per cell.
        vmax: value shown at full brightness (default: the map's maximum).
        colormap: an OpenCV colormap id.
    """
    if hasattr(density, 'detach'):
        density = density.detach().cpu().numpy()
    d = np.asarray(density, dtype=np.float64)
    d = d.reshape(d.shape[-2:])
    top = float(d.max()) if vmax is None else float(vmax)
    scaled = np.zeros_like(d) if top <= 0 else np.clip(d / top, 0, 1)
    bgr = cv2.applyColorMap((scaled * 255).round().astype(np.uint8), colormap)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def upsample(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize to ``size = (H, W)`` (cells stay crisp squares)."""
    return cv2.resize(image, (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST)


def draw_points(image: np.ndarray, points, colors=(255, 40, 40), radius: int = 2,
                outline: bool = True) -> np.ndarray:
    """Copy of ``image`` (RGB uint8) with a filled dot at each ``(x, y)`` point.

    Args:
        points: ``(N, 2)`` input px (pixel centres at +0.5).
        colors: one RGB colour for all points, or ``(N, 3)`` per point.
        radius: dot radius, px.
        outline: draw a dark outline so dots read on any background.
    """
    out = np.ascontiguousarray(image.copy())
    pts = np.asarray(points.detach().cpu() if hasattr(points, 'detach') else points,
                     dtype=np.float64).reshape(-1, 2)
    per_point = np.asarray(colors).ndim == 2
    for n, (x, y) in enumerate(pts):
        centre = (int(np.floor(x)), int(np.floor(y)))
        color = tuple(int(v) for v in (colors[n] if per_point else colors))
        if outline:
            cv2.circle(out, centre, radius + 1, (0, 0, 0), -1, lineType=cv2.LINE_AA)
        cv2.circle(out, centre, radius, color, -1, lineType=cv2.LINE_AA)
    return out


def blend(base: np.ndarray, overlay: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``(1 - alpha) * base + alpha * overlay`` (same-size RGB uint8)."""
    mixed = (1 - alpha) * base.astype(np.float64) + alpha * overlay.astype(np.float64)
    return np.clip(mixed, 0, 255).round().astype(np.uint8)


def compose_panels(panels: Sequence[Tuple[str, np.ndarray]], height: int = 320,
                   gap: int = 6) -> np.ndarray:
    """Side-by-side panels with a title bar each, resized to a common ``height``.

    Args:
        panels: ``[(title, RGB uint8 image), ...]``.
        height: image height in the figure, px.
        gap: white space between panels, px.

    Returns:
        One RGB uint8 image.
    """
    bar = 28
    columns = []
    for title, image in panels:
        img = np.asarray(image)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        width = max(1, round(img.shape[1] * height / img.shape[0]))
        interp = cv2.INTER_NEAREST if img.shape[0] < height else cv2.INTER_AREA
        img = cv2.resize(img, (width, height), interpolation=interp)
        head = np.full((bar, width, 3), 255, np.uint8)
        cv2.putText(head, str(title), (4, bar - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    lineType=cv2.LINE_AA)
        columns.append(np.concatenate([head, img], axis=0))
        columns.append(np.full((height + bar, gap, 3), 255, np.uint8))
    return np.concatenate(columns[:-1], axis=1)


def save_rgb(path: str, image: np.ndarray) -> None:
    """Write an RGB uint8 image (PNG/JPEG by extension); raises naming the path on failure."""
    if not cv2.imwrite(path, cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)):
        raise OSError(f'could not write image {path}')
