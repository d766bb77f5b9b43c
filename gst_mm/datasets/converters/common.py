"""Shared pieces of the per-data-set readers and listers.

:class:`SourceSample` (one image of a source data set) and the helpers every
``read_<format>`` / ``list_<format>`` uses: points as ``(N, 2)`` float64 (x, y)
px, MAT files (scipy; h5py for MATLAB v7.3), image files of a folder.
"""
from __future__ import annotations

import glob
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..layout import LayoutError

IMAGE_EXTENSIONS: Tuple[str, ...] = ('.jpg', '.jpeg', '.png', '.bmp')
# what a reader returns: points (N, 2) float64 (x, y) px, covariances (N, 2, 2) px^2 or None
PointsAndCov = Tuple[np.ndarray, Optional[np.ndarray]]


@dataclass
class SourceSample:
    """One image of a source data set.

    Attributes:
        name: output sample name (``<source split>_<image stem>``).
        split: ``train`` / ``val`` / ``test`` (the source's own split).
        image_path: source image file.
        ann_path: source annotation file; ``None`` for an unlabelled image
            (NWPU-Crowd test), which gets an empty annotation.
        fmt: key of :data:`gst_mm.datasets.converters.READERS`.
    """
    name: str
    split: str
    image_path: str
    ann_path: Optional[str]
    fmt: str


def _as_points(array, source: str) -> np.ndarray:
    """``array`` as float64 ``(N, 2)`` (x, y); extra columns are ignored."""
    try:
        a = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise LayoutError(f'{source}: points are not numeric ({e})') from None
    if a.size == 0:
        return np.zeros((0, 2), np.float64)
    if a.ndim != 2 or a.shape[1] < 2:
        raise LayoutError(f'{source}: points must be an (N, 2) array, got shape {a.shape}')
    return a[:, :2].copy()


def _load_mat(path: str) -> dict:
    """Variables of a MAT file (scipy for v4-v7.2; h5py for v7.3 top-level arrays,
    transposed back to MATLAB's row/column order)."""
    import scipy.io
    if not osp.isfile(path):
        raise LayoutError(f'annotation file not found: {path}')
    try:
        return scipy.io.loadmat(path)
    except NotImplementedError:  # MATLAB v7.3 = HDF5
        try:
            import h5py
            with h5py.File(path, 'r') as f:
                return {k: np.asarray(v).T for k, v in f.items() if isinstance(v, h5py.Dataset)}
        except Exception as e:  # noqa: BLE001 - any decoding problem names the file
            raise LayoutError(f'corrupt MAT file {path}: {e}') from None
    except Exception as e:  # noqa: BLE001 - scipy raises many types on bad files
        raise LayoutError(f'corrupt MAT file {path}: {e}') from None


def _images_in(folder: str) -> List[str]:
    """Sorted image files (:data:`IMAGE_EXTENSIONS`, any case) directly in ``folder``."""
    files = [p for p in glob.glob(osp.join(folder, '*'))
             if osp.splitext(p)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(files)


def _stem(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]


def _require_dirs(root: str, dirs: Sequence[str], what: str) -> None:
    """:class:`LayoutError` unless ``root`` exists and holds one of ``dirs``."""
    if not osp.isdir(root):
        raise LayoutError(f'{what} source folder not found: {root}')
    if not any(osp.isdir(osp.join(root, d)) for d in dirs):
        raise LayoutError(f'{root} is not a {what} folder: none of '
                          f'{", ".join(dirs)} found in it')
