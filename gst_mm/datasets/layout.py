"""The gst_mm crowd-counting data layout: reading, writing and cleaning.

Pure module (numpy, OpenCV, json; no mmengine). Shared by the data set class,
the converters in ``tools/dataset_converters/`` and the synthetic generator.

Layout (documented in ``docs/datasets.md``)::

    <data_root>/
      images/<name>.jpg
      annotations/<name>.json   {"image": "<name>.jpg", "width": W, "height": H,
                                 "points": [[x, y], ...],
                                 "covariances": [[[sxx, sxy], [sxy, syy]], ...]}
      train.txt / val.txt / test.txt   one <name> per line

Points are ``(x, y)`` in input pixels of the stored image with pixel centres at
``+0.5``; covariances (optional) are in px^2, one per point.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

SPLITS: Tuple[str, ...] = ('train', 'val', 'test')
IMG_DIR = 'images'
ANN_DIR = 'annotations'


class LayoutError(ValueError):
    """A malformed annotation or source file; the message names the file."""


@dataclass
class CrowdAnnotation:
    """One image's annotation in the layout.

    Attributes:
        image: file name relative to ``images/``.
        width, height: size of the stored image in pixels.
        points: float32 ``(N, 2)`` (x, y) input px.
        covariances: float32 ``(N, 2, 2)`` px^2 or ``None``.
    """
    image: str
    width: int
    height: int
    points: np.ndarray
    covariances: Optional[np.ndarray] = None

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = dict(
            image=self.image, width=int(self.width), height=int(self.height),
            points=[[float(x), float(y)] for x, y in self.points])
        if self.covariances is not None:
            out['covariances'] = np.asarray(self.covariances, np.float64).round(6).tolist()
        return out


# ----------------------------------------------------------------------------
# atomic writers
# ----------------------------------------------------------------------------
def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file + ``os.replace``."""
    d = osp.dirname(osp.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix='.tmp_', suffix=osp.basename(path))
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def encode_jpeg(image_bgr: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of a BGR uint8 ``(H, W, 3)`` image."""
    import cv2
    ok, buf = cv2.imencode('.jpg', image_bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise LayoutError('could not encode image as JPEG')
    return buf.tobytes()


def write_sample(root: str, name: str, ann: CrowdAnnotation,
                 image_bgr: Optional[np.ndarray] = None,
                 image_bytes: Optional[bytes] = None, quality: int = 95) -> None:
    """Write ``images/<name>.jpg`` (from BGR pixels or ready JPEG bytes) and
    ``annotations/<name>.json`` atomically."""
    if (image_bgr is None) == (image_bytes is None):
        raise ValueError('give exactly one of image_bgr / image_bytes')
    data = image_bytes if image_bytes is not None else encode_jpeg(image_bgr, quality)
    atomic_write_bytes(osp.join(root, IMG_DIR, name + '.jpg'), data)
    atomic_write_bytes(osp.join(root, ANN_DIR, name + '.json'),
                       json.dumps(ann.to_json()).encode())


def write_split(root: str, split: str, names: Iterable[str]) -> None:
    """Write ``<root>/<split>.txt`` (one name per line)."""
    text = ''.join(f'{n}\n' for n in names)
    atomic_write_bytes(osp.join(root, f'{split}.txt'), text.encode())


def read_split(path: str) -> List[str]:
    """Names listed in a split file (blank lines and ``#`` comments skipped)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'split file not found: {path}')
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith('#')]


def _read_json_object(path: str) -> dict:
    """The JSON object in ``path``; :class:`LayoutError` naming it otherwise."""
    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        raise LayoutError(f'annotation file not found: {path}') from None
    except (OSError, ValueError) as e:
        raise LayoutError(f'corrupt annotation file {path}: {e}') from None
    if not isinstance(d, dict):
        raise LayoutError(f'invalid annotation file {path}: expected a JSON object, got '
                          f'{type(d).__name__}')
    return d


def _parse_points(d: dict) -> np.ndarray:
    """``(N, 2)`` float32 of a record's required ``points`` (``[]`` = no objects);
    ``ValueError`` on a missing key (a typo such as ``point`` must not read as 0
    objects), a shape other than ``(N, 2)`` (no silent reshape of ``(N, 3)`` rows) or
    non-finite values."""
    if 'points' not in d:
        raise ValueError('no \'points\' key (write "points": [] for an image without '
                         f'objects; keys found: {sorted(d)})')
    pts = np.asarray(d['points'], dtype=np.float32)
    pts = pts.reshape(-1, 2) if pts.size == 0 else pts
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f'points must be (N, 2) (x, y), got shape {pts.shape}')
    if not np.isfinite(pts).all():
        raise ValueError('non-finite point coordinates')
    return pts


def read_points(path: str) -> np.ndarray:
    """``(N, 2)`` float32 (x, y) px of a JSON file with a ``points`` list (the
    plain-path mode of ``tools/precompute.py``), validated as
    :func:`read_annotation` validates them; :class:`LayoutError` naming ``path``."""
    d = _read_json_object(path)
    try:
        return _parse_points(d)
    except (TypeError, ValueError) as e:
        raise LayoutError(f'invalid annotation file {path}: {e}') from None


def read_annotation(path: str) -> CrowdAnnotation:
    """Read and validate one ``annotations/<name>.json``; raises
    :class:`LayoutError` naming ``path`` on any problem (a missing ``points`` key
    included: an image without objects has ``"points": []``)."""
    d = _read_json_object(path)
    try:
        pts = _parse_points(d)
        w, h = int(d['width']), int(d['height'])
        cov = d.get('covariances')
        if cov is not None:
            cov = np.asarray(cov, dtype=np.float32).reshape(-1, 2, 2)
            if len(cov) != len(pts):
                raise ValueError(f'{len(cov)} covariances for {len(pts)} points')
            if not np.isfinite(cov).all():
                raise ValueError('non-finite covariances')
        image = str(d.get('image', osp.splitext(osp.basename(path))[0] + '.jpg'))
    except KeyError as e:
        raise LayoutError(f'invalid annotation file {path}: missing key {e}') from None
    except (TypeError, ValueError) as e:
        raise LayoutError(f'invalid annotation file {path}: {e}') from None
    return CrowdAnnotation(image, w, h, pts.astype(np.float32), cov)


# ----------------------------------------------------------------------------
# cleaning and resizing (converters)
# ----------------------------------------------------------------------------
def clean_points_report(points: Any, width: int, height: int, source: str,
                        tolerance: float = 2.0,
                        extra: Sequence[Optional[np.ndarray]] = ()
                        ) -> Tuple[np.ndarray, List[Optional[np.ndarray]], int, int]:
    """Make annotations fit the image ``[0, width] x [0, height]`` (input px).

    Points with non-finite coordinates or more than ``tolerance`` px outside
    the image are dropped; those outside by at most ``tolerance`` are clipped
    onto the border (to ``[0, width - 1e-3]`` so they stay inside the last
    pixel). Any change is reported with one warning naming ``source``.
    ``extra`` arrays (first axis = point, e.g. covariances) get the same rows
    dropped. Returns ``(points float32 (M, 2), [extra...], n_dropped,
    n_clipped)``.
    """
    p = np.asarray(points, dtype=np.float64)
    p = p.reshape(-1, 2) if p.size == 0 else p
    if p.ndim != 2 or p.shape[1] < 2:
        raise LayoutError(f'{source}: points must be (N, 2), got shape {p.shape}')
    p = p[:, :2]
    finite = np.isfinite(p).all(1)
    with np.errstate(invalid='ignore'):
        inside = finite & (p[:, 0] >= -tolerance) & (p[:, 0] <= width + tolerance) & \
            (p[:, 1] >= -tolerance) & (p[:, 1] <= height + tolerance)
    n_drop = int((~inside).sum())
    q = p[inside]
    n_clip = int(((q[:, 0] < 0) | (q[:, 0] > width) | (q[:, 1] < 0) | (q[:, 1] > height)).sum())
    eps = 1e-3
    clipped = np.stack([np.clip(q[:, 0], 0.0, width - eps),
                        np.clip(q[:, 1], 0.0, height - eps)], 1)
    if n_drop or n_clip:
        warnings.warn(f'{source}: dropped {n_drop} point(s) more than {tolerance:g} px outside '
                      f'the {width}x{height} image (or non-finite), clipped {n_clip} '
                      f'point(s) onto the border', stacklevel=3)
    out_extra = [None if e is None else np.asarray(e)[inside] for e in extra]
    return clipped.astype(np.float32), out_extra, n_drop, n_clip


def clean_points(points: Any, width: int, height: int, source: str,
                 tolerance: float = 2.0,
                 extra: Sequence[Optional[np.ndarray]] = ()
                 ) -> Tuple[np.ndarray, List[Optional[np.ndarray]]]:
    """:func:`clean_points_report` without the counts: ``(points, [extra...])``."""
    pts, out_extra, _, _ = clean_points_report(points, width, height, source, tolerance, extra)
    return pts, out_extra


def short_side_size(width: int, height: int, min_short: int = 512,
                    max_short: int = 2048) -> Tuple[int, int]:
    """New ``(width, height)`` so the short side lies in ``[min_short,
    max_short]`` (method.md section 6); aspect kept, unchanged if already in."""
    short = min(width, height)
    if short < min_short:
        r = min_short / short
    elif short > max_short:
        r = max_short / short
    else:
        return int(width), int(height)
    return max(1, int(round(width * r))), max(1, int(round(height * r)))


def resize_sample(image_bgr: np.ndarray, points: np.ndarray,
                  covariances: Optional[np.ndarray], new_size: Tuple[int, int]
                  ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Resize an image to ``new_size`` (w, h) with points and covariances.

    With pixel centres at ``+0.5`` a ``cv2.resize`` is the scaling
    ``diag(w'/w, h'/h)``: points are multiplied per axis, covariances
    ``S Sigma S``."""
    import cv2
    h, w = image_bgr.shape[:2]
    nw, nh = new_size
    sx, sy = nw / w, nh / h
    interp = cv2.INTER_AREA if sx * sy < 1 else cv2.INTER_CUBIC
    img = cv2.resize(image_bgr, (nw, nh), interpolation=interp)
    pts = (np.asarray(points, np.float64).reshape(-1, 2) * [sx, sy]).astype(np.float32)
    cov = None
    if covariances is not None:
        s = np.diag([sx, sy])
        cov = np.einsum('ij,njk,kl->nil', s, np.asarray(covariances, np.float64), s
                        ).astype(np.float32)
    return img, pts, cov


def box_covariances(widths: Any, heights: Any, sigma_ratio: float = 0.25
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """Axis-aligned covariances from head boxes: ``std = sigma_ratio * side``
    (the default 0.25 makes the box span +-2 std). Boxes with a non-positive
    or non-finite side get the median valid box. Returns ``(covariances
    (N, 2, 2) float32 px^2, valid mask (N,))``; when no box is valid the
    covariances are zero and must not be used (check ``valid.any()``)."""
    w = np.asarray(widths, np.float64).reshape(-1)
    h = np.asarray(heights, np.float64).reshape(-1)
    valid = np.isfinite(w) & np.isfinite(h) & (w > 0) & (h > 0)
    if valid.any():
        w = np.where(valid, w, np.median(w[valid]))
        h = np.where(valid, h, np.median(h[valid]))
    cov = np.zeros((len(w), 2, 2), np.float64)
    cov[:, 0, 0] = (sigma_ratio * w) ** 2
    cov[:, 1, 1] = (sigma_ratio * h) ** 2
    return cov.astype(np.float32), valid


def split_train_val(names: Sequence[str], val_fraction: float, seed: int
                    ) -> Tuple[List[str], List[str]]:
    """Deterministically move ``round(val_fraction * len)`` names to val."""
    names = sorted(names)
    n_val = int(round(val_fraction * len(names)))
    if n_val == 0:
        return list(names), []
    order = np.random.default_rng(seed).permutation(len(names))
    val = sorted(names[i] for i in order[:n_val])
    vs = set(val)
    return [n for n in names if n not in vs], val
