"""Nearest-neighbour distances of annotation points (the one kNN query): a scipy
KD-tree, or, where scipy is not installed (a bare GPU box with only torch, numpy,
h5py and OpenCV: ``tools/benchmark/gpu.py``), a chunked numpy search with the same
distances.

Used by the fit's kNN initialisation and background mask (:mod:`.fit`), the
neighbourhood boxes of the crop-area rule
(:func:`gst_mm.datasets.transforms.geometry.neighbourhood_sizes`) and
``tools/visualize_gaussians.py``. Points are ``(x, y)`` in input pixels; distances
are Euclidean, px.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

#: queries per block of the numpy fallback (block x points float64 distances)
_CHUNK = 1024


def _nearest(p: np.ndarray, q: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """``k`` nearest rows of ``p`` for every row of ``q``: ``(distances, indices)``,
    nearest first (scipy's KD-tree when it imports, else blockwise numpy)."""
    try:
        from scipy.spatial import cKDTree
    except ImportError:
        cKDTree = None
    if cKDTree is not None:
        d, i = cKDTree(p).query(q, k=k)
        return np.asarray(d).reshape(len(q), k), np.asarray(i, np.int64).reshape(len(q), k)
    ds, idx = [], []
    for a in range(0, len(q), _CHUNK):
        block = q[a:a + _CHUNK]
        d2 = ((block[:, None, :] - p[None, :, :]) ** 2).sum(-1)
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < len(p) else np.tile(
            np.arange(len(p)), (len(block), 1))
        dk = np.take_along_axis(d2, part, 1)
        order = np.argsort(dk, axis=1, kind='stable')
        idx.append(np.take_along_axis(part, order, 1))
        ds.append(np.sqrt(np.take_along_axis(dk, order, 1)))
    return np.concatenate(ds), np.concatenate(idx).astype(np.int64)


def knn_distances(points: np.ndarray, k: int) -> np.ndarray:
    """Distances to the ``k`` nearest *other* points, nearest first.

    Args:
        points: ``(N, 2)`` px (any float dtype; duplicates allowed: distance 0).
        k: neighbours wanted, ``>= 1``; with fewer other points all ``N - 1`` are
            returned.

    Returns:
        float64 ``(N, min(k, N - 1))`` px (``(N, 0)`` when ``N <= 1``).
    """
    if k < 1:
        raise ValueError(f'k must be >= 1, got {k}')
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = len(p)
    if n <= 1:
        return np.zeros((n, 0))
    kk = min(k, n - 1)
    d, _ = _nearest(p, p, kk + 1)  # column 0: the point itself (distance 0)
    return d[:, 1:]


def knn_distance(points: np.ndarray, k: int = 3, single: float = 8.0,
                 floor: float = 1.0) -> np.ndarray:
    """Mean distance (px) of each point to its ``k`` nearest other points.

    Args:
        points: ``(N, 2)`` px.
        k: neighbours averaged (fewer when there are fewer other points).
        single: the value of a lone point (``N == 1``), returned as is.
        floor: lower bound px, so duplicate points never give zero (ignored for a
            lone point).

    Returns:
        float64 ``(N,)`` px (``(0,)`` for no points).
    """
    n = len(points)
    if n == 0:
        return np.zeros(0)
    if n == 1:
        return np.full(1, single)
    return np.maximum(knn_distances(points, k).mean(1), floor)


def knn_query(points: np.ndarray, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest ``points`` of every query (a KD-tree over ``points``).

    Args:
        points: ``(N, 2)`` px. queries: ``(M, 2)`` px. k: neighbours wanted (``>= 1``;
            at most ``N`` are returned).

    Returns:
        ``(distances float64 (M, min(k, N)), indices int64 (M, min(k, N)))``, nearest
        first (``(M, 0)`` arrays when ``N == 0``).
    """
    if k < 1:
        raise ValueError(f'k must be >= 1, got {k}')
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    q = np.asarray(queries, dtype=np.float64).reshape(-1, 2)
    kk = min(k, len(p))
    if kk == 0 or len(q) == 0:
        return np.zeros((len(q), kk)), np.zeros((len(q), kk), np.int64)
    return _nearest(p, q, kk)
