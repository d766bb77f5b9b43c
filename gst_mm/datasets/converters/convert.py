"""Conversion of one source sample into the gst_mm crowd layout.

:func:`convert_sample` cleans the points of one image (clip within a tolerance,
drop further out, warn naming the file), resizes the image so its short side
lies in ``[min_short, max_short]`` (method.md 6) with points and covariances
scaled, and writes ``images/<name>.jpg`` and ``annotations/<name>.json``
atomically. :func:`convert_source_sample` reads a :class:`SourceSample` with its
format's reader (:data:`READERS`) first and never raises for bad input files.

Images are read by :func:`gst_mm.splatting.image_io.read_image_file`, the one
image reader of gst_mm (the pixels MMCV's ``LoadImageFromFile`` loads).
"""
from __future__ import annotations

import os.path as osp
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

from gst_mm.splatting.image_io import ImageReadError, read_image_file

from ..layout import (
    ANN_DIR,
    IMG_DIR,
    CrowdAnnotation,
    LayoutError,
    clean_points_report,
    read_annotation,
    resize_sample,
    short_side_size,
    write_sample,
)
from .common import PointsAndCov, SourceSample, _as_points
from .jhu_crowd import read_jhu_crowd_txt
from .nwpu_crowd import read_nwpu_crowd_json
from .shanghaitech import read_shanghaitech_mat
from .ucf_qnrf import read_ucf_qnrf_mat

# format -> annotation reader: path -> (points (N, 2) float64 (x, y) px,
# covariances (N, 2, 2) px^2 or None)
READERS: Dict[str, Callable[[str], PointsAndCov]] = {
    'shanghaitech': read_shanghaitech_mat,
    'ucf_qnrf': read_ucf_qnrf_mat,
    'jhu_crowd': read_jhu_crowd_txt,
    'nwpu_crowd': read_nwpu_crowd_json,
}


@dataclass
class ConvertedSample:
    """What :func:`convert_sample` wrote (sizes in px)."""
    name: str
    width: int
    height: int
    src_width: int
    src_height: int
    num_points: int
    dropped: int = 0
    clipped: int = 0

    @property
    def resized(self) -> bool:
        return (self.width, self.height) != (self.src_width, self.src_height)


def convert_sample(image_path: str, points, covariances, out_root: str, name: str,
                   min_short: int = 512, max_short: int = 2048, tolerance: float = 2.0,
                   quality: int = 95, source: Optional[str] = None) -> ConvertedSample:
    """Convert one image and its points into the layout under ``out_root``.

    Args:
        image_path: source image.
        points: ``(N, 2)`` (x, y) px in the source image (``N`` may be 0).
        covariances: ``(N, 2, 2)`` px^2 in the source image, or ``None``.
        out_root: layout root; writes ``images/<name>.jpg`` and
            ``annotations/<name>.json`` (each atomically).
        name: sample name.
        min_short, max_short: the short side of the written image is brought
            into ``[min_short, max_short]`` (aspect kept; points scaled per axis,
            covariances ``S Sigma S``).
        tolerance: points up to this many source px outside the image are
            clipped onto the border, further ones dropped (warning naming
            ``source``).
        quality: JPEG quality when the image is re-encoded (a JPEG source that
            needs no resizing is copied byte for byte).
        source: file named in warnings (default ``image_path``).

    Raises:
        ImageReadError: the image is missing, empty, undecodable or truncated
            (:func:`gst_mm.splatting.image_io.read_image_file`; names the file).
        LayoutError: points or covariances of the wrong shape (names ``source``).
    """
    source = source or image_path
    img, data = read_image_file(image_path)
    h, w = img.shape[:2]
    points = _as_points(points, source)
    cov = None
    if covariances is not None:
        cov = np.asarray(covariances, np.float64).reshape(-1, 2, 2)
        if len(cov) != len(points):
            raise LayoutError(f'{source}: {len(cov)} covariances for {len(points)} points')
    pts, (cov,), n_drop, n_clip = clean_points_report(points, w, h, source, tolerance,
                                                      extra=(cov,))
    new_w, new_h = short_side_size(w, h, min_short, max_short)
    image_bytes = None
    if (new_w, new_h) != (w, h):
        img, pts, cov = resize_sample(img, pts, cov, (new_w, new_h))
        eps = 1e-3  # keep rounding inside the image
        pts[:, 0] = np.clip(pts[:, 0], 0.0, new_w - eps)
        pts[:, 1] = np.clip(pts[:, 1], 0.0, new_h - eps)
    elif osp.splitext(image_path)[1].lower() in ('.jpg', '.jpeg'):
        image_bytes = data
    ann = CrowdAnnotation(f'{name}.jpg', new_w, new_h, pts.astype(np.float32),
                          None if cov is None else cov.astype(np.float32))
    if image_bytes is not None:
        write_sample(out_root, name, ann, image_bytes=image_bytes)
    else:
        write_sample(out_root, name, ann, image_bgr=img, quality=quality)
    return ConvertedSample(name, new_w, new_h, w, h, len(pts), n_drop, n_clip)


@dataclass
class SampleResult:
    """Outcome of one source sample: ``converted`` or ``error`` (message naming
    the file), plus the warnings raised while converting it."""
    sample: SourceSample
    converted: Optional[ConvertedSample] = None
    error: Optional[str] = None
    warnings: List[str] = field(default_factory=list)
    skipped_existing: bool = False


@dataclass
class ConvertOptions:
    """Settings shared by all samples of a run (see :func:`convert_sample`)."""
    min_short: int = 512
    max_short: int = 2048
    tolerance: float = 2.0
    quality: int = 95
    skip_existing: bool = False


def convert_source_sample(sample: SourceSample, out_root: str,
                          options: ConvertOptions = ConvertOptions()) -> SampleResult:
    """Read and convert one source sample; never raises for bad input files
    (the error is returned in :attr:`SampleResult.error`)."""
    result = SampleResult(sample)
    ann_out = osp.join(out_root, ANN_DIR, f'{sample.name}.json')
    if options.skip_existing and osp.isfile(ann_out) and \
            osp.isfile(osp.join(out_root, IMG_DIR, f'{sample.name}.jpg')):
        try:
            a = read_annotation(ann_out)
            result.converted = ConvertedSample(sample.name, a.width, a.height, a.width,
                                               a.height, len(a.points))
            result.skipped_existing = True
            return result
        except LayoutError:
            pass  # rewrite it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try:
            if sample.ann_path is None:
                points, cov = np.zeros((0, 2)), None
            else:
                points, cov = READERS[sample.fmt](sample.ann_path)
            result.converted = convert_sample(
                sample.image_path, points, cov, out_root, sample.name,
                min_short=options.min_short, max_short=options.max_short,
                tolerance=options.tolerance, quality=options.quality,
                source=sample.ann_path or sample.image_path)
        except (LayoutError, ImageReadError) as e:  # the message names the file
            result.error = str(e)
        except Exception as e:  # noqa: BLE001 - one bad file never aborts a conversion
            result.error = (f'{sample.name}: {type(e).__name__}: {e} '
                            f'(image {sample.image_path}, annotation {sample.ann_path})')
    result.warnings = [str(w.message) for w in caught]
    return result
