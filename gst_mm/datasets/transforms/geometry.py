"""Affine bookkeeping shared by every geometric augmentation (crowd and pose).

Pure module (numpy, :mod:`gst_mm.splatting.knn` and duck-typed
:class:`gst_mm.splatting.Gaussians2D`; no mmengine / mmcv imports), so it can be
unit-tested without OpenMMLab.

Conventions
-----------
* Coordinates are ``(x, y)`` in **input pixels** with pixel centres at ``+0.5``:
  the centre of pixel ``(row i, column j)`` is ``(j + 0.5, i + 0.5)``.
* A geometric transform is one 3x3 homogeneous matrix ``M`` (float64) acting on
  column vectors: ``[x', y', 1]^T = M [x, y, 1]^T``; ``A = M[:2, :2]``,
  ``t = M[:2, 2]``.
* Under ``x -> A x + t``: points ``p -> A p + t``, Gaussian means likewise,
  covariances ``Sigma -> A Sigma A^T`` (method.md section 4), axis-aligned
  neighbourhood boxes -> bounding box of their transformed corners.

In this convention image resizing by ``cv2.resize`` (half-pixel aligned) is a
pure scaling ``diag(w'/w, h'/h)``, an integer crop at ``(x0, y0)`` is the
translation ``(-x0, -y0)`` and a horizontal flip of a width-``W`` image is
``x -> W - x``.

The one entry point that moves a whole sample is :func:`transform_results`; it
updates every per-point field of an MMCV-style ``results`` dict and records the
composed matrix in ``results['gst_affine']``. :func:`select_points` drops points
(and their Gaussians, boxes, targets) consistently.
"""
from __future__ import annotations

from typing import Any, MutableMapping, Optional, Sequence, Tuple

import numpy as np

from gst_mm.splatting.knn import knn_distance

#: Per-point array fields of a results dict (first axis = point index).
POINT_KEYS: Tuple[str, ...] = ('points', 'point_targets', 'neighbourhood_boxes',
                               'gt_covariances')
#: Results key holding a ``Gaussians2D`` (one Gaussian per point, same order).
GAUSSIANS_KEY = 'gaussians'
#: Results key of the composed 3x3 affine (original image -> current image).
AFFINE_KEY = 'gst_affine'
#: Results key of the axis-aligned neighbourhood boxes (N, 4) x1, y1, x2, y2 px.
BOXES_KEY = 'neighbourhood_boxes'


# ----------------------------------------------------------------------------
# elementary matrices
# ----------------------------------------------------------------------------
def identity() -> np.ndarray:
    """The 3x3 identity (float64)."""
    return np.eye(3, dtype=np.float64)


def translation(tx: float, ty: float) -> np.ndarray:
    """``x -> x + (tx, ty)`` in pixels."""
    m = identity()
    m[0, 2], m[1, 2] = float(tx), float(ty)
    return m


def scaling(sx: float, sy: Optional[float] = None) -> np.ndarray:
    """``x -> (sx * x, sy * y)`` about the image origin (top-left corner)."""
    m = identity()
    m[0, 0] = float(sx)
    m[1, 1] = float(sx if sy is None else sy)
    return m


def hflip(width: float) -> np.ndarray:
    """Horizontal flip of an image ``width`` pixels wide: ``x -> width - x``."""
    m = identity()
    m[0, 0] = -1.0
    m[0, 2] = float(width)
    return m


def rotation(angle: float, center: Sequence[float] = (0.0, 0.0)) -> np.ndarray:
    """Rotation by ``angle`` radians (counter-clockwise in (x, y) maths axes,
    i.e. clockwise on screen since y points down) about ``center`` (x, y) px."""
    c, s = np.cos(angle), np.sin(angle)
    r = identity()
    r[:2, :2] = [[c, -s], [s, c]]
    cx, cy = float(center[0]), float(center[1])
    return translation(cx, cy) @ r @ translation(-cx, -cy)


def from_2x3(matrix: Any, pixel_index_coords: bool = False) -> np.ndarray:
    """3x3 matrix from a 2x3 affine (e.g. the ``warp_mat`` given to
    ``cv2.warpAffine``).

    Args:
        matrix: (2, 3) affine.
        pixel_index_coords: set ``True`` when ``matrix`` maps *pixel-index*
            coordinates (pixel centres at integers, OpenCV's ``warpAffine``
            convention) to convert it to our centre-at-``+0.5`` convention:
            ``M' = T(+0.5) M T(-0.5)``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f'expected a (2, 3) affine, got shape {m.shape}')
    out = identity()
    out[:2] = m
    if pixel_index_coords:
        out = translation(0.5, 0.5) @ out @ translation(-0.5, -0.5)
    return out


def compose(*matrices: np.ndarray) -> np.ndarray:
    """Compose affines in the order they are *applied*:
    ``compose(M1, M2)`` = first ``M1`` then ``M2`` = ``M2 @ M1``."""
    out = identity()
    for m in matrices:
        out = np.asarray(m, dtype=np.float64) @ out
    return out


# ----------------------------------------------------------------------------
# applying a matrix
# ----------------------------------------------------------------------------
def apply_to_points(matrix: np.ndarray, points: Any) -> np.ndarray:
    """Move points ``(N, 2)`` (x, y) px; returns float32 ``(N, 2)``."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(matrix, dtype=np.float64)
    return (p @ m[:2, :2].T + m[:2, 2]).astype(np.float32)


def apply_to_covariances(matrix: np.ndarray, covariances: Any) -> np.ndarray:
    """``Sigma -> A Sigma A^T`` for ``(N, 2, 2)`` px^2; returns float32."""
    c = np.asarray(covariances, dtype=np.float64).reshape(-1, 2, 2)
    a = np.asarray(matrix, dtype=np.float64)[:2, :2]
    return np.einsum('ij,njk,lk->nil', a, c, a).astype(np.float32)


def apply_to_boxes(matrix: np.ndarray, boxes: Any) -> np.ndarray:
    """Axis-aligned boxes ``(N, 4)`` (x1, y1, x2, y2) -> bounding boxes of their
    transformed corners (exact for scalings, flips and shifts)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], 1)
    moved = apply_to_points(matrix, corners.reshape(-1, 2)).reshape(-1, 4, 2)
    return np.concatenate([moved.min(1), moved.max(1)], axis=1).astype(np.float32)


def apply_to_gaussians(matrix: np.ndarray, gaussians: Any) -> Any:
    """Move a ``Gaussians2D`` with ``gaussians.transform(A, t)``
    (``mu -> A mu + t``, ``Sigma -> A Sigma A^T``; colours unchanged)."""
    m = np.asarray(matrix, dtype=np.float64)
    a = m[:2, :2].astype(np.float32)
    t = m[:2, 2].astype(np.float32)
    return gaussians.transform(a, t)


# ----------------------------------------------------------------------------
# neighbourhood boxes and the 30 % rule (method.md section 1)
# ----------------------------------------------------------------------------
def neighbourhood_sizes(points: Any, k: int = 3, min_size: float = 4.0,
                        max_size: float = 128.0,
                        single_size: float = 8.0) -> np.ndarray:
    """Side length (px) of each point's square neighbourhood: the mean distance
    to its ``k`` nearest other points, clipped to ``[min_size, max_size]``
    (Bayesian-loss convention). With fewer than ``k`` other points the mean is
    over those present; a lone point gets ``single_size``. Returns ``(N,)``."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    d = knn_distance(p, k, single=single_size, floor=min_size)
    return np.clip(d, min_size, max_size).astype(np.float32)


def neighbourhood_boxes(points: Any, **kwargs: Any) -> np.ndarray:
    """Square boxes ``(N, 4)`` (x1, y1, x2, y2) centred on the points with sides
    :func:`neighbourhood_sizes` (``kwargs`` are passed on)."""
    p = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    half = neighbourhood_sizes(p, **kwargs)[:, None] / 2.0
    return np.concatenate([p - half, p + half], axis=1).astype(np.float32)


def inside_fraction(boxes: Any, width: float, height: float) -> np.ndarray:
    """Fraction of each box's area inside the image ``[0, width] x [0, height]``
    (the crop-area target of method.md section 1). Degenerate boxes count as
    inside iff their centre is. Returns float32 ``(N,)`` in [0, 1]."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(b[:, 2], width) - np.maximum(b[:, 0], 0.0), 0, None)
    ih = np.clip(np.minimum(b[:, 3], height) - np.maximum(b[:, 1], 0.0), 0, None)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    with np.errstate(divide='ignore', invalid='ignore'):
        frac = np.where(area > 0, iw * ih / np.where(area > 0, area, 1.0), 0.0)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    centre_in = (cx >= 0) & (cx <= width) & (cy >= 0) & (cy <= height)
    frac = np.where(area > 0, frac, centre_in.astype(np.float64))
    return np.clip(frac, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------
# the one bookkeeping helper used by every geometric transform
# ----------------------------------------------------------------------------
def ensure_neighbourhood_boxes(results: MutableMapping[str, Any]) -> None:
    """Add ``results['neighbourhood_boxes']`` from the current points if absent.

    Called before the first geometric transform, so the neighbourhoods are
    those of the full (uncropped) annotation set."""
    if 'points' in results and BOXES_KEY not in results:
        results[BOXES_KEY] = neighbourhood_boxes(results['points'])


def transform_results(results: MutableMapping[str, Any], matrix: np.ndarray,
                      img_shape: Optional[Tuple[int, int]] = None) -> None:
    """Move every geometric per-point field of ``results`` by ``matrix`` (3x3).

    Updates in place, when present: ``points`` (N, 2), ``gaussians``
    (``Gaussians2D``), ``gt_covariances`` (N, 2, 2), ``neighbourhood_boxes``
    (N, 4; created from the points first if missing), and composes
    ``results['gst_affine'] = matrix @ results['gst_affine']``. The image itself
    is warped by the caller; ``img_shape`` (h, w) of the new image is recorded
    when given. Point order and count are unchanged.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f'expected a 3x3 affine, got shape {m.shape}')
    ensure_neighbourhood_boxes(results)
    if 'points' in results:
        results['points'] = apply_to_points(m, results['points'])
    if results.get('gt_covariances') is not None:
        results['gt_covariances'] = apply_to_covariances(m, results['gt_covariances'])
    if results.get(BOXES_KEY) is not None:
        results[BOXES_KEY] = apply_to_boxes(m, results[BOXES_KEY])
    if results.get(GAUSSIANS_KEY) is not None:
        results[GAUSSIANS_KEY] = apply_to_gaussians(m, results[GAUSSIANS_KEY])
    prev = results.get(AFFINE_KEY)
    prev = identity() if prev is None else np.asarray(prev, dtype=np.float64)
    results[AFFINE_KEY] = m @ prev
    if img_shape is not None:
        results['img_shape'] = (int(img_shape[0]), int(img_shape[1]))


def select_points(results: MutableMapping[str, Any], keep: Any) -> None:
    """Keep only the points selected by ``keep`` (bool mask (N,) or indices),
    in every per-point field and in ``results['gaussians']``."""
    keep = np.asarray(keep)
    idx = np.flatnonzero(keep) if keep.dtype == bool else keep.astype(np.int64)
    for key in POINT_KEYS:
        if results.get(key) is not None:
            results[key] = np.asarray(results[key])[idx]
    if results.get(GAUSSIANS_KEY) is not None:
        import torch
        results[GAUSSIANS_KEY] = results[GAUSSIANS_KEY].subset(
            torch.as_tensor(idx, dtype=torch.long))
