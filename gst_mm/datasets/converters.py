"""Converters of public crowd-counting data sets into the gst_mm layout.

Pure module (numpy, OpenCV, scipy, json; no mmengine). The command lines in
``tools/dataset_converters/`` are thin wrappers around :func:`converter_main`.

Every converter does the same three steps (``docs/datasets.md``):

1. list the source samples of a data set (``list_<format>(root)`` ->
   :class:`SourceSample`: output name, source split, image and annotation file);
2. read each annotation with the format's reader (``read_<format>(path)`` ->
   points ``(N, 2)`` (x, y) px and optional covariances ``(N, 2, 2)`` px^2) and
   :func:`convert_sample`: clean the points (clip within a tolerance, drop
   further out, warn naming the file), resize the image so its short side lies in
   ``[min_short, max_short]`` (method.md 6) with points and covariances scaled,
   write ``images/<name>.jpg`` and ``annotations/<name>.json`` atomically;
3. write ``train.txt`` / ``val.txt`` / ``test.txt`` and a
   ``conversion_report.json``.

A sample that cannot be read (missing or corrupt image or annotation file) is
reported with a message naming the file and skipped; it never aborts the run.

Source coordinates are taken as they are stored (as in the published
preprocessing code of BL / DM-Count); the data sets' sub-pixel conventions
differ by at most half a pixel, far below the stride-8 density grid.
"""
from __future__ import annotations

import argparse
import glob
import json
import os.path as osp
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .layout import (
    ANN_DIR,
    IMG_DIR,
    SPLITS,
    CrowdAnnotation,
    LayoutError,
    atomic_write_bytes,
    box_covariances,
    clean_points_report,
    read_annotation,
    resize_sample,
    short_side_size,
    split_train_val,
    write_sample,
    write_split,
)

IMAGE_EXTENSIONS: Tuple[str, ...] = ('.jpg', '.jpeg', '.png', '.bmp')
PointsAndCov = Tuple[np.ndarray, Optional[np.ndarray]]


# ----------------------------------------------------------------------------
# per-format readers: path -> (points (N, 2) float64 (x, y) px, covariances or None)
# ----------------------------------------------------------------------------
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


def read_shanghaitech_mat(path: str) -> PointsAndCov:
    """ShanghaiTech ``GT_IMG_k.mat``: points at ``image_info[0, 0][0, 0][0]``
    (the struct's ``location`` field), ``(N, 2)`` (x, y) px."""
    mat = _load_mat(path)
    if 'image_info' not in mat:
        raise LayoutError(f'{path}: no "image_info" variable (not a ShanghaiTech ground truth)')
    info = mat['image_info']
    try:
        rec = info[0, 0][0, 0]
        names = getattr(rec.dtype, 'names', None) or ()
        pts = rec['location'] if 'location' in names else rec[0]
    except (IndexError, TypeError, ValueError, KeyError) as e:
        raise LayoutError(f'{path}: unexpected image_info structure ({e})') from None
    return _as_points(pts, path), None


def read_ucf_qnrf_mat(path: str) -> PointsAndCov:
    """UCF-QNRF ``img_XXXX_ann.mat``: ``annPoints`` ``(N, 2)`` (x, y) px."""
    mat = _load_mat(path)
    if 'annPoints' not in mat:
        raise LayoutError(f'{path}: no "annPoints" variable (not a UCF-QNRF annotation)')
    return _as_points(mat['annPoints'], path), None


def read_jhu_crowd_txt(path: str, sigma_ratio: float = 0.25) -> PointsAndCov:
    """JHU-Crowd++ ``gt/XXXX.txt``: one head per line ``x y w h o b`` (centre,
    box width / height in px, occlusion and blur levels). Covariances from the
    boxes (:func:`gst_mm.datasets.layout.box_covariances`, ``std = sigma_ratio
    * side``); lines without a box get the median box, files without any box
    no covariances."""
    if not osp.isfile(path):
        raise LayoutError(f'annotation file not found: {path}')
    rows: List[List[float]] = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise LayoutError(f'corrupt annotation file {path}: {e}') from None
    for lineno, line in enumerate(lines, 1):
        fields = line.replace(',', ' ').split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise LayoutError(f'{path}:{lineno}: expected numbers "x y w h o b", '
                              f'got {line.strip()!r}') from None
        if len(values) < 2:
            raise LayoutError(f'{path}:{lineno}: expected at least "x y", got {line.strip()!r}')
        rows.append((values + [np.nan, np.nan])[:4])
    if not rows:
        return np.zeros((0, 2), np.float64), None
    a = np.asarray(rows, np.float64)
    cov, valid = box_covariances(a[:, 2], a[:, 3], sigma_ratio)
    return a[:, :2].copy(), (cov if valid.any() else None)


def read_nwpu_crowd_json(path: str, sigma_ratio: float = 0.25) -> PointsAndCov:
    """NWPU-Crowd ``jsons/XXXX.json``: ``points`` ``[[x, y], ...]`` and optional
    ``boxes`` ``[[x1, y1, x2, y2], ...]`` (one per point) -> box covariances."""
    if not osp.isfile(path):
        raise LayoutError(f'annotation file not found: {path}')
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        raise LayoutError(f'corrupt annotation file {path}: {e}') from None
    if not isinstance(d, dict) or 'points' not in d:
        raise LayoutError(f'{path}: no "points" list (not an NWPU-Crowd annotation)')
    pts = _as_points(d['points'], path)
    cov = None
    boxes = d.get('boxes')
    if boxes is not None and len(pts):
        b = np.asarray(boxes, np.float64) if len(boxes) else np.zeros((0, 4))
        if b.ndim != 2 or b.shape[1] != 4 or len(b) != len(pts):
            warnings.warn(f'{path}: {len(boxes)} boxes for {len(pts)} points; '
                          'boxes ignored (no covariances)', stacklevel=2)
        else:
            c, valid = box_covariances(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1], sigma_ratio)
            cov = c if valid.any() else None
    return pts, cov


READERS: Dict[str, Callable[[str], PointsAndCov]] = {
    'shanghaitech': read_shanghaitech_mat,
    'ucf_qnrf': read_ucf_qnrf_mat,
    'jhu_crowd': read_jhu_crowd_txt,
    'nwpu_crowd': read_nwpu_crowd_json,
}


# ----------------------------------------------------------------------------
# per-format listing of the source samples
# ----------------------------------------------------------------------------
@dataclass
class SourceSample:
    """One image of a source data set.

    Attributes:
        name: output sample name (``<source split>_<image stem>``).
        split: ``train`` / ``val`` / ``test`` (the source's own split).
        image_path: source image file.
        ann_path: source annotation file; ``None`` for an unlabelled image
            (NWPU-Crowd test), which gets an empty annotation.
        fmt: key of :data:`READERS`.
    """
    name: str
    split: str
    image_path: str
    ann_path: Optional[str]
    fmt: str


def _images_in(folder: str) -> List[str]:
    files = [p for p in glob.glob(osp.join(folder, '*'))
             if osp.splitext(p)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(files)


def _stem(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]


def _require_dirs(root: str, dirs: Sequence[str], what: str) -> None:
    if not osp.isdir(root):
        raise LayoutError(f'{what} source folder not found: {root}')
    if not any(osp.isdir(osp.join(root, d)) for d in dirs):
        raise LayoutError(f'{root} is not a {what} folder: none of '
                          f'{", ".join(dirs)} found in it')


def list_shanghaitech(root: str) -> List[SourceSample]:
    """ShanghaiTech part A or B (``root`` = the ``part_A`` / ``part_B`` folder):
    ``{train_data,test_data}/images/IMG_k.jpg`` with
    ``{train_data,test_data}/ground-truth/GT_IMG_k.mat``."""
    _require_dirs(root, ('train_data', 'test_data'), 'ShanghaiTech (part_A / part_B)')
    out = []
    for folder, split in (('train_data', 'train'), ('test_data', 'test')):
        gt_dir = osp.join(root, folder, 'ground-truth')
        if not osp.isdir(gt_dir) and osp.isdir(osp.join(root, folder, 'ground_truth')):
            gt_dir = osp.join(root, folder, 'ground_truth')
        for img in _images_in(osp.join(root, folder, 'images')):
            stem = _stem(img)
            out.append(SourceSample(f'{split}_{stem}', split, img,
                                    osp.join(gt_dir, f'GT_{stem}.mat'), 'shanghaitech'))
    return out


def list_ucf_qnrf(root: str) -> List[SourceSample]:
    """UCF-QNRF (``root`` = ``UCF-QNRF_ECCV18``): ``{Train,Test}/img_XXXX.jpg``
    with ``img_XXXX_ann.mat`` beside it (names clash across the two splits,
    hence the split prefix of the output names)."""
    _require_dirs(root, ('Train', 'Test'), 'UCF-QNRF')
    out = []
    for folder, split in (('Train', 'train'), ('Test', 'test')):
        for img in _images_in(osp.join(root, folder)):
            stem = _stem(img)
            out.append(SourceSample(f'{split}_{stem}', split, img,
                                    osp.join(root, folder, f'{stem}_ann.mat'), 'ucf_qnrf'))
    return out


def list_jhu_crowd(root: str) -> List[SourceSample]:
    """JHU-Crowd++ (``root`` = ``jhu_crowd_v2.0``): ``{train,val,test}/images/XXXX.jpg``
    with ``{train,val,test}/gt/XXXX.txt``."""
    _require_dirs(root, SPLITS, 'JHU-Crowd++')
    out = []
    for split in SPLITS:
        for img in _images_in(osp.join(root, split, 'images')):
            stem = _stem(img)
            out.append(SourceSample(f'{split}_{stem}', split, img,
                                    osp.join(root, split, 'gt', f'{stem}.txt'), 'jhu_crowd'))
    return out


def _nwpu_ids(list_file: str) -> List[str]:
    """Image ids of an NWPU-Crowd split list (first token of each line)."""
    with open(list_file) as f:
        return [ln.split()[0] for ln in f if ln.strip()]


def list_nwpu_crowd(root: str) -> List[SourceSample]:
    """NWPU-Crowd: ``images/XXXX.jpg``, ``jsons/XXXX.json`` and the split lists
    ``train.txt`` / ``val.txt`` / ``test.txt`` (lines start with the id). Test
    images have no public annotations: their ``ann_path`` is ``None`` unless a
    json is present."""
    _require_dirs(root, ('images', 'jsons'), 'NWPU-Crowd')
    out = []
    for split in SPLITS:
        list_file = osp.join(root, f'{split}.txt')
        if not osp.isfile(list_file):
            raise LayoutError(f'NWPU-Crowd split list not found: {list_file}')
        for image_id in _nwpu_ids(list_file):
            img = osp.join(root, 'images', f'{image_id}.jpg')
            ann = osp.join(root, 'jsons', f'{image_id}.json')
            if split == 'test' and not osp.isfile(ann):
                ann = None
            out.append(SourceSample(f'{split}_{image_id}', split, img, ann, 'nwpu_crowd'))
    return out


LISTERS: Dict[str, Callable[[str], List[SourceSample]]] = {
    'shanghaitech': list_shanghaitech,
    'ucf_qnrf': list_ucf_qnrf,
    'jhu_crowd': list_jhu_crowd,
    'nwpu_crowd': list_nwpu_crowd,
}


# ----------------------------------------------------------------------------
# one sample
# ----------------------------------------------------------------------------
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


def read_image(image_path: str) -> Tuple[np.ndarray, bytes]:
    """``(BGR uint8 (H, W, 3), file bytes)``; :class:`LayoutError` naming the
    file when it is missing or cannot be decoded."""
    import cv2
    if not osp.isfile(image_path):
        raise LayoutError(f'image file not found: {image_path}')
    with open(image_path, 'rb') as f:
        data = f.read()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise LayoutError(f'corrupt image file {image_path}: cannot be decoded')
    return img, data


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
    """
    source = source or image_path
    img, data = read_image(image_path)
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
        except LayoutError as e:
            result.error = str(e)
        except Exception as e:  # noqa: BLE001 - one bad file never aborts a conversion
            result.error = (f'{sample.name}: {type(e).__name__}: {e} '
                            f'(image {sample.image_path}, annotation {sample.ann_path})')
    result.warnings = [str(w.message) for w in caught]
    return result


def _convert_job(args) -> SampleResult:
    return convert_source_sample(*args)


# ----------------------------------------------------------------------------
# a whole data set
# ----------------------------------------------------------------------------
@dataclass
class ConversionSummary:
    """Counts of a conversion run (also saved as ``conversion_report.json``)."""
    dataset: str
    out_root: str
    splits: Dict[str, int] = field(default_factory=dict)
    images: int = 0
    points: int = 0
    empty_images: int = 0
    unlabelled_images: int = 0
    resized_images: int = 0
    skipped_existing: int = 0
    dropped_points: int = 0
    clipped_points: int = 0
    with_covariances: bool = False
    val_from: str = ''
    failures: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    seconds: float = 0.0

    def format(self) -> str:
        """A human-readable multi-line summary."""
        lines = [
            f'{self.dataset} -> {osp.abspath(self.out_root)}',
            f'  images: {self.images} ('
            + ', '.join(f'{s} {n}' for s, n in self.splits.items()) + ')',
            f'  points: {self.points} ({self.empty_images} image(s) without points'
            + (f', {self.unlabelled_images} unlabelled' if self.unlabelled_images else '') + ')',
            f'  resized to the short-side range: {self.resized_images} image(s)',
            f'  points dropped outside the image: {self.dropped_points}, '
            f'clipped onto the border: {self.clipped_points}',
            f'  box covariances saved: {"yes" if self.with_covariances else "no"}',
        ]
        if self.val_from:
            lines.append(f'  val split: {self.val_from}')
        if self.skipped_existing:
            lines.append(f'  already converted (skipped): {self.skipped_existing}')
        if self.unlabelled_images:
            lines.append(f'  note: {self.unlabelled_images} test image(s) have no public '
                         'annotations and were written with empty point lists; their '
                         'counts must be evaluated by the benchmark server')
        lines.append(f'  failed (skipped): {len(self.failures)}')
        lines += [f'    {msg}' for msg in self.failures]
        lines.append(f'  time: {self.seconds:.1f} s')
        return '\n'.join(lines)


def convert_samples(samples: Sequence[SourceSample], out_root: str,
                    options: ConvertOptions = ConvertOptions(), workers: int = 1,
                    progress: bool = True,
                    on_message: Optional[Callable[[str], None]] = None) -> List[SampleResult]:
    """Convert ``samples`` (in order) with ``workers`` processes and a tqdm bar;
    ``on_message`` receives every warning / error line as it happens."""
    jobs = [(s, out_root, options) for s in samples]
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(jobs), desc='converting', unit='img')
        except ImportError:  # pragma: no cover
            bar = None
    results: List[SampleResult] = []

    def _collect(res: SampleResult) -> None:
        results.append(res)
        if on_message is not None:
            for msg in res.warnings:
                on_message(f'warning: {msg}')
            if res.error:
                on_message(f'error (skipped): {res.error}')
        if bar is not None:
            bar.update(1)

    try:
        if workers > 1 and len(jobs) > 1:
            import multiprocessing as mp
            with mp.get_context().Pool(workers) as pool:
                for res in pool.imap(_convert_job, jobs, chunksize=1):
                    _collect(res)
        else:
            for job in jobs:
                _collect(_convert_job(job))
    finally:
        if bar is not None:
            bar.close()
    return results


def assign_splits(results: Sequence[SampleResult], val_fraction: Optional[float] = None,
                  seed: int = 0) -> Tuple[Dict[str, List[str]], str]:
    """Split lists from the converted samples.

    The source splits are kept. A source without a val split (ShanghaiTech,
    UCF-QNRF) gets one: ``val_fraction`` of its training images (deterministic
    for ``seed``), or, with ``val_fraction == 0``, the test images (the
    published protocol of these data sets). Returns ``(split -> sorted names,
    description of where val came from)``."""
    names: Dict[str, List[str]] = {s: [] for s in SPLITS}
    for res in results:
        if res.converted is not None:
            names[res.sample.split].append(res.sample.name)
    names = {s: sorted(v) for s, v in names.items()}
    has_val = any(r.sample.split == 'val' for r in results)
    if has_val:
        return names, 'the data set\'s own val split'
    if val_fraction is None or val_fraction <= 0:
        names['val'] = list(names['test'])
        return names, 'same as test (no separate val split)'
    n_train = len(names['train'])
    # at least one held-out image whenever a hold-out is asked for and possible
    fraction = max(val_fraction, 1.0 / n_train) if n_train >= 2 else 0.0
    names['train'], names['val'] = split_train_val(names['train'], fraction, seed)
    if not names['val']:
        names['val'] = list(names['test'])
        return names, 'same as test (too few training images to hold some out)'
    return names, f'{len(names["val"])} training image(s) held out ({val_fraction:g}, seed {seed})'


def summarize(dataset: str, out_root: str, results: Sequence[SampleResult],
              splits: Dict[str, List[str]], val_from: str, seconds: float) -> ConversionSummary:
    """Counts of a run (no I/O)."""
    s = ConversionSummary(dataset, out_root, splits={k: len(v) for k, v in splits.items()},
                          val_from=val_from, seconds=seconds)
    for res in results:
        s.warnings += res.warnings
        if res.error:
            s.failures.append(res.error)
            continue
        c = res.converted
        s.images += 1
        s.points += c.num_points
        s.empty_images += int(c.num_points == 0)
        s.unlabelled_images += int(res.sample.ann_path is None)
        s.resized_images += int(c.resized)
        s.skipped_existing += int(res.skipped_existing)
        s.dropped_points += c.dropped
        s.clipped_points += c.clipped
    return s


def convert_dataset(dataset: str, src_root: str, out_root: str,
                    options: ConvertOptions = ConvertOptions(), workers: int = 1,
                    val_fraction: Optional[float] = None, seed: int = 0,
                    progress: bool = True,
                    on_message: Optional[Callable[[str], None]] = None) -> ConversionSummary:
    """List, convert and split a whole data set (``dataset`` = a key of
    :data:`LISTERS`); writes the split files and ``conversion_report.json``."""
    t0 = time.time()
    samples = LISTERS[dataset](src_root)
    if not samples:
        raise LayoutError(f'no images found under {src_root} for {dataset}')
    results = convert_samples(samples, out_root, options, workers, progress, on_message)
    splits, val_from = assign_splits(results, val_fraction, seed)
    for split in SPLITS:
        write_split(out_root, split, splits[split])
    summary = summarize(dataset, out_root, results, splits, val_from, time.time() - t0)
    summary.with_covariances = _any_covariances(out_root, results)
    atomic_write_bytes(osp.join(out_root, 'conversion_report.json'),
                       json.dumps(dict(asdict(summary), options=asdict(options)),
                                  indent=1).encode())
    return summary


def _any_covariances(out_root: str, results: Sequence[SampleResult]) -> bool:
    """Whether the written annotations carry covariances (first non-empty one)."""
    for res in results:
        if res.converted is not None and res.converted.num_points:
            path = osp.join(out_root, ANN_DIR, f'{res.sample.name}.json')
            with open(path) as f:
                return 'covariances' in json.load(f)
    return False


# ----------------------------------------------------------------------------
# command line (shared by tools/dataset_converters/*.py)
# ----------------------------------------------------------------------------
CONVERTER_EPILOG = """\
Points are cleaned (clipped onto the image within --tolerance px, dropped further out,
with a warning naming the file), images resized so the short side is in
[--min-short, --max-short] (default [512, 2048]) with points and covariances scaled,
split files (train.txt / val.txt / test.txt) and conversion_report.json written
(docs/datasets.md). Exit code 0 when at least one image was converted."""


def build_parser(description: str, has_val_split: bool) -> argparse.ArgumentParser:
    """The common options of every converter command line (``description``: the
    converter's own docstring; the common behaviour is the epilog)."""
    p = argparse.ArgumentParser(description=description, epilog=CONVERTER_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src_root', help='folder of the downloaded data set')
    p.add_argument('out_root', help='output folder (gst_mm crowd layout, docs/datasets.md)')
    p.add_argument('--min-short', type=int, default=512,
                   help='smallest short side of the written images (px, default 512)')
    p.add_argument('--max-short', type=int, default=2048,
                   help='largest short side of the written images (px, default 2048)')
    p.add_argument('--tolerance', type=float, default=2.0,
                   help='points up to this many px outside the image are clipped onto it, '
                   'further ones dropped (default 2)')
    p.add_argument('--quality', type=int, default=95, help='JPEG quality of resized images')
    p.add_argument('--workers', type=int, default=1, help='conversion processes (default 1)')
    p.add_argument('--skip-existing', action='store_true',
                   help='keep samples already converted into OUT_ROOT (resume a run)')
    if not has_val_split:
        p.add_argument('--val-fraction', type=float, default=0.1,
                       help='fraction of the training images held out as val.txt '
                       '(default 0.1; 0 = use the test images as val, as in published code)')
        p.add_argument('--seed', type=int, default=0, help='seed of the val hold-out')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


def converter_main(dataset: str, argv: Optional[Sequence[str]], description: str,
                   has_val_split: bool) -> int:
    """Run one converter command line; returns the exit code (0 when at least
    one image was converted, 1 otherwise)."""
    import sys
    args = build_parser(description, has_val_split).parse_args(argv)
    if not 0 < args.min_short <= args.max_short:
        print(f'error: need 0 < --min-short <= --max-short, got {args.min_short}, '
              f'{args.max_short}', file=sys.stderr)
        return 2
    options = ConvertOptions(args.min_short, args.max_short, args.tolerance, args.quality,
                             args.skip_existing)

    def say(msg: str) -> None:
        try:
            from tqdm import tqdm
            tqdm.write(msg, file=sys.stderr)
        except ImportError:  # pragma: no cover
            print(msg, file=sys.stderr)

    try:
        summary = convert_dataset(dataset, args.src_root, args.out_root, options,
                                  workers=args.workers,
                                  val_fraction=getattr(args, 'val_fraction', None),
                                  seed=getattr(args, 'seed', 0), progress=not args.quiet,
                                  on_message=say)
    except LayoutError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(summary.format())
    print(f'wrote {osp.join(osp.abspath(args.out_root), "conversion_report.json")}')
    return 0 if summary.images else 1
