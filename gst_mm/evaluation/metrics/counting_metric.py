"""Crowd-counting metric: MAE, MSE (= RMSE), NAE, and optional localisation (method.md 6, 7).

Definitions over the ``M`` evaluated images (``p`` predicted count, ``g`` ground truth):

- ``MAE = mean |p - g|``;
- ``MSE = sqrt(mean (p - g)^2)`` (a root mean squared error, named "MSE" as in
  the counting literature);
- ``NAE = mean |p - g| / g`` over images with ``g > 0`` (NWPU-Crowd convention);
- ``score = 2 * MSE + MAE``: the model-selection criterion of method.md 6
  (lower is better; use ``save_best='score', rule='less'``).

Localisation (``localization=True``, method.md 7): density peaks are the local
maxima of the predicted density (``nms_kernel`` x ``nms_kernel`` cells), the
``round(p)`` strongest kept (or those above ``peak_threshold``), located at their
cell centres. They are compared **at the original image's resolution** (NWPU-Crowd's
protocol), whatever the test pipeline resized: each peak is mapped from network-input
px back to original px (:func:`to_original_pixels`: the inverse of the sample's
``gst_affine``, else its ``scale_factor``, else the ratio of ``ori_shape`` to
``img_shape``) and matched against the original annotations (the sample's
``ori_points`` when the pipeline packs them, as the crowd test pipeline does; else
``gt_points`` mapped back the same way). For every radius ``r`` in ``radii``
(original px), peaks are matched greedily (strongest first, each to its nearest
unmatched annotation within ``r``) one-to-one; precision and recall at ``r`` are
pooled over the data set; ``AP`` / ``AR`` are their means over the radii and
``F1 = 2 AP AR / (AP + AR)``; for each distance threshold ``t`` in ``thresholds``
also ``Precision@t``, ``Recall@t`` and ``F1@t``.

Files (written by the process that computes the metrics, rank 0, atomically;
formats in :mod:`gst_mm.evaluation.prediction_files`): ``out_file`` receives the
per-image predictions (``.csv`` or ``.json``: image id, path, gt count, predicted
count, absolute error), ``nwpu_submission`` NWPU-Crowd's test-server file
(``<image id> <predicted count>`` per line). ``tools/test.py --pred-file`` /
``--nwpu-submission`` set them; ``--cfg-options test_evaluator.out_file=...`` works
too.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from scipy import ndimage

from gst_mm.registry import METRICS

from ..prediction_files import prediction_format, write_nwpu_submission, write_predictions


def _get(sample: Any, key: str, default: Any = None) -> Any:
    """Field of a data sample given as a dict (MMEngine evaluator) or a data element."""
    if isinstance(sample, dict):
        return sample.get(key, default)
    if hasattr(sample, 'get'):
        value = sample.get(key, None)
        if value is None and hasattr(sample, 'metainfo'):
            value = sample.metainfo.get(key, None)
        return default if value is None else value
    return getattr(sample, key, default)


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, 'detach'):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def density_peaks(density: np.ndarray,
                  stride: float,
                  num_peaks: Optional[int] = None,
                  threshold: Optional[float] = None,
                  nms_kernel: int = 3) -> tuple:
    """Local maxima of a density map, strongest first.

    Args:
        density: ``(h, w)`` density (cells).
        stride: cell size in input px; a peak at cell ``(r, c)`` is located at
            ``(stride * (c + 0.5), stride * (r + 0.5))`` (x, y).
        num_peaks: keep at most this many (the strongest).
        threshold: keep only peaks with value ``> threshold`` (default ``> 0``).
        nms_kernel: side of the non-maximum-suppression window, cells.

    Returns:
        ``(xy (P, 2) float64 input px, values (P,))`` sorted by decreasing value.
    """
    density = np.asarray(density, dtype=np.float64)
    if density.ndim != 2:
        raise ValueError(f'density_peaks: expected an (h, w) map, got shape {density.shape}')
    local_max = ndimage.maximum_filter(density, size=nms_kernel, mode='constant', cval=-np.inf)
    keep = (density == local_max) & (density > (0.0 if threshold is None else threshold))
    rows, cols = np.nonzero(keep)
    values = density[rows, cols]
    order = np.argsort(-values, kind='stable')
    if num_peaks is not None:
        order = order[:max(int(num_peaks), 0)]
    xy = np.stack([(cols[order] + 0.5) * stride, (rows[order] + 0.5) * stride], axis=1)
    return xy.reshape(-1, 2), values[order]


def to_original_pixels(sample: Any, xy: np.ndarray) -> np.ndarray:
    """Points ``(P, 2)`` in network-input px -> px of the original image.

    Uses, in this order, what the sample's metainfo has: ``gst_affine`` (3x3,
    original -> input; exact for every gst_mm geometric transform), ``scale_factor``
    ``(w_scale, h_scale)`` (MMCV's resize transforms; ``x / w_scale``), or the ratio of
    ``ori_shape`` to ``img_shape`` (h, w). With none of them (or equal shapes) the
    points are returned as they are.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    affine = _get(sample, 'gst_affine')
    if affine is not None:
        inv = np.linalg.inv(_to_numpy(affine).astype(np.float64).reshape(3, 3))
        return xy @ inv[:2, :2].T + inv[:2, 2]
    factor = _get(sample, 'scale_factor')
    if factor is not None:
        f = np.asarray(_to_numpy(factor), dtype=np.float64).reshape(-1)
        sx, sy = (f[0], f[0]) if f.size == 1 else (f[0], f[1])
        return xy / np.array([sx, sy])
    ori, cur = _get(sample, 'ori_shape'), _get(sample, 'img_shape')
    if ori is not None and cur is not None:
        (oh, ow), (ch, cw) = tuple(ori)[:2], tuple(cur)[:2]
        return xy * np.array([float(ow) / float(cw), float(oh) / float(ch)])
    return xy


def greedy_match_counts(pred_xy: np.ndarray, gt_xy: np.ndarray,
                        radii: Sequence[float]) -> np.ndarray:
    """True positives of a greedy one-to-one matching at each radius.

    Predictions are taken in the given order (strongest first); each is matched
    to the nearest still-unmatched annotation within the radius, if any.

    Args:
        pred_xy: ``(P, 2)`` predicted locations, px, in matching order.
        gt_xy: ``(G, 2)`` annotated locations, px.
        radii: matching radii, px.

    Returns:
        ``(len(radii),)`` int array of matched pairs.
    """
    radii = np.asarray(radii, dtype=np.float64)
    tp = np.zeros(len(radii), dtype=np.int64)
    if len(pred_xy) == 0 or len(gt_xy) == 0:
        return tp
    dist = np.linalg.norm(pred_xy[:, None, :] - gt_xy[None, :, :], axis=-1)
    reach = dist <= radii.max()
    candidates = []
    for p in range(len(pred_xy)):
        idx = np.nonzero(reach[p])[0]
        idx = idx[np.argsort(dist[p, idx], kind='stable')]
        candidates.append((idx, dist[p, idx]))
    for k, radius in enumerate(radii):
        taken = np.zeros(len(gt_xy), dtype=bool)
        for idx, d in candidates:
            for g, dg in zip(idx, d):
                if dg > radius:
                    break
                if not taken[g]:
                    taken[g] = True
                    tp[k] += 1
                    break
    return tp


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


@METRICS.register_module()
class CountingMetric(BaseMetric):
    """MAE / MSE (RMSE) / NAE / score of counts, optional localisation AP / AR / F1.

    Reads from each predicted data sample ``pred_count`` (or the sum of
    ``pred_density``) and ``gt_count`` (or the number of ``gt_points``); for
    localisation also ``pred_density`` ``(1, h, w)``, ``gt_points`` ``(N, 2)``
    (px of the network input), ``ori_points`` (the original annotations, when
    packed) and the resize bookkeeping (``gst_affine``, ``scale_factor`` or
    ``ori_shape`` / ``img_shape``) to compare peaks and annotations in original-image
    px (:func:`to_original_pixels`).

    Args:
        localization: also report AP / AR / F1 from density peaks.
        radii: matching radii, original px (default 1, 2, ..., 100).
        thresholds: distance thresholds, original px, at which ``Precision@t``,
            ``Recall@t`` and ``F1@t`` are also reported (default none).
        stride: density cell size, input px.
        peak_threshold: keep peaks above this value instead of the ``round(count)``
            strongest.
        nms_kernel: NMS window, cells.
        out_file: write the per-image predictions here at every evaluation
            (``.csv`` or ``.json``, chosen by the extension; overwritten each time).
        nwpu_submission: write NWPU-Crowd's submission file here (ids from the
            trailing digits of each image name, e.g. ``test_3610`` -> ``3610``).
        collect_device / prefix: as :class:`mmengine.evaluator.BaseMetric`.
    """

    default_prefix: Optional[str] = None

    def __init__(self,
                 localization: bool = False,
                 radii: Sequence[float] = tuple(range(1, 101)),
                 thresholds: Sequence[float] = (),
                 stride: float = 8,
                 peak_threshold: Optional[float] = None,
                 nms_kernel: int = 3,
                 out_file: Optional[str] = None,
                 nwpu_submission: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.localization = localization
        self.radii = tuple(float(r) for r in radii)
        self.thresholds = tuple(float(t) for t in thresholds)
        if not self.radii or min(self.radii + self.thresholds) <= 0:
            raise ValueError('CountingMetric: radii must be non-empty and radii / thresholds '
                             f'positive, got radii={self.radii}, thresholds={self.thresholds}')
        self.stride = float(stride)
        self.peak_threshold = peak_threshold
        self.nms_kernel = int(nms_kernel)
        if out_file is not None:
            prediction_format(out_file)  # a wrong extension fails now, not after the run
        self.out_file = out_file
        self.nwpu_submission = nwpu_submission

    def process(self, data_batch: Any, data_samples: Sequence) -> None:
        """Store the counts (and localisation matches) of one batch."""
        for sample in data_samples:
            pred_count = _get(sample, 'pred_count')
            density = _get(sample, 'pred_density')
            if pred_count is None:
                if density is None:
                    raise KeyError('CountingMetric: a data sample of '
                                   f"{_get(sample, 'img_path', '<unknown image>')} has neither "
                                   'pred_count nor pred_density')
                pred_count = float(_to_numpy(density).sum())
            gt_count = _get(sample, 'gt_count')
            gt_points = _get(sample, 'gt_points')
            if gt_count is None:
                if gt_points is None:
                    raise KeyError('CountingMetric: a data sample of '
                                   f"{_get(sample, 'img_path', '<unknown image>')} has neither "
                                   'gt_count nor gt_points')
                gt_count = len(_to_numpy(gt_points).reshape(-1, 2))
            img_path = _get(sample, 'img_path')
            img_id = _get(sample, 'img_id')
            if img_id is None and img_path is not None:
                img_id = osp.splitext(osp.basename(str(img_path)))[0]
            result: Dict[str, Any] = dict(
                pred_count=float(pred_count), gt_count=float(gt_count),
                img_id=None if img_id is None else str(img_id),
                img_path=None if img_path is None else str(img_path))
            if self.localization:
                result.update(self._localize(sample, density, gt_points, float(pred_count)))
            self.results.append(result)

    def _localize(self, sample: Any, density: Any, gt_points: Any,
                  pred_count: float) -> Dict[str, Any]:
        """Matches of one image at every radius: ``tp (R,)``, ``n_pred``, ``n_gt``."""
        ori_points = _get(sample, 'ori_points')
        if density is None or (gt_points is None and ori_points is None):
            raise KeyError('CountingMetric(localization=True) needs pred_density and '
                           'gt_points or ori_points '
                           f"({_get(sample, 'img_path', '<unknown image>')})")
        dens = _to_numpy(density).astype(np.float64)
        dens = dens.reshape(dens.shape[-2:])
        num = None if self.peak_threshold is not None else int(round(pred_count))
        pred_xy, _ = density_peaks(dens, self.stride, num_peaks=num,
                                   threshold=self.peak_threshold, nms_kernel=self.nms_kernel)
        pred_xy = to_original_pixels(sample, pred_xy)
        if ori_points is not None:
            gt_xy = _to_numpy(ori_points).astype(np.float64).reshape(-1, 2)
        else:
            gt_xy = to_original_pixels(sample, _to_numpy(gt_points))
        tp = greedy_match_counts(pred_xy, gt_xy, self.radii + self.thresholds)
        return dict(tp=tp, n_pred=len(pred_xy), n_gt=len(gt_xy))

    def compute_metrics(self, results: List[Dict[str, Any]]) -> Dict[str, float]:
        """Aggregate the stored per-image results into MAE, MSE, NAE, score (+ AP, AR, F1)."""
        if not results:
            raise ValueError('CountingMetric: no results to evaluate (empty data set?)')
        pred = np.array([r['pred_count'] for r in results], dtype=np.float64)
        gt = np.array([r['gt_count'] for r in results], dtype=np.float64)
        err = pred - gt
        mae = float(np.abs(err).mean())
        mse = float(np.sqrt((err**2).mean()))
        positive = gt > 0
        nae = float((np.abs(err[positive]) / gt[positive]).mean()) if positive.any() else 0.0
        metrics = dict(MAE=mae, MSE=mse, NAE=nae, score=2 * mse + mae)
        if self.localization:
            tp = np.sum([r['tp'] for r in results], axis=0).astype(np.float64)
            n_pred = float(sum(r['n_pred'] for r in results))
            n_gt = float(sum(r['n_gt'] for r in results))
            precision = tp / n_pred if n_pred > 0 else np.zeros_like(tp)
            recall = tp / n_gt if n_gt > 0 else np.zeros_like(tp)
            n_r = len(self.radii)
            ap, ar = float(precision[:n_r].mean()), float(recall[:n_r].mean())
            metrics.update(AP=ap, AR=ar, F1=_f1(ap, ar))
            for k, t in enumerate(self.thresholds):
                p, r = float(precision[n_r + k]), float(recall[n_r + k])
                name = f'{t:g}'
                metrics.update({f'Precision@{name}': p, f'Recall@{name}': r,
                                f'F1@{name}': _f1(p, r)})
        if self.out_file is not None or self.nwpu_submission is not None:
            self.write_files(results, metrics)
        return metrics

    def write_files(self, results: List[Dict[str, Any]], metrics: Dict[str, float]) -> None:
        """Write ``out_file`` / ``nwpu_submission`` from the per-image results."""
        records = []
        for k, r in enumerate(results):
            image_id = r.get('img_id')
            if image_id is None:
                image_id = f'image_{k:06d}'  # samples without img_id / img_path
            records.append(dict(image_id=image_id, img_path=r.get('img_path') or '',
                                gt_count=r['gt_count'], pred_count=r['pred_count']))
        if self.out_file is not None:
            write_predictions(self.out_file, records, metrics)
            print_log(f'CountingMetric: per-image predictions of {len(records)} images '
                      f'written to {self.out_file}', logger='current')
        if self.nwpu_submission is not None:
            write_nwpu_submission(self.nwpu_submission, records)
            print_log(f'CountingMetric: NWPU-Crowd submission ({len(records)} images) '
                      f'written to {self.nwpu_submission}', logger='current')
