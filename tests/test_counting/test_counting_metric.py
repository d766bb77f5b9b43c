"""CountingMetric against hand-computed values."""
import math

import numpy as np
import pytest
import torch

pytest.importorskip('mmpose')

from gst_mm.evaluation import CountingMetric, density_peaks, greedy_match_counts  # noqa: E402


def _run(metric, samples):
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def test_mae_mse_nae_score_by_hand():
    samples = [dict(pred_count=10.0, gt_count=12.0), dict(pred_count=5.0, gt_count=5.0),
               dict(pred_count=0.0, gt_count=3.0)]
    m = _run(CountingMetric(), samples)
    assert m['MAE'] == pytest.approx(5 / 3)
    assert m['MSE'] == pytest.approx(math.sqrt(13 / 3))  # root mean squared error
    assert m['NAE'] == pytest.approx((2 / 12 + 0 + 3 / 3) / 3)
    assert m['score'] == pytest.approx(2 * math.sqrt(13 / 3) + 5 / 3)


def test_nae_skips_empty_images_and_counts_fall_back_to_density_and_points():
    samples = [
        dict(pred_density=torch.full((1, 2, 2), 0.5), gt_points=torch.zeros(4, 2)),  # 2 vs 4
        dict(pred_count=1.0, gt_count=0.0),
    ]
    m = _run(CountingMetric(), samples)
    assert m['MAE'] == pytest.approx((2 + 1) / 2)
    assert m['NAE'] == pytest.approx(2 / 4)


def test_evaluator_with_data_samples():
    from mmengine.evaluator import Evaluator

    from gst_mm.structures import CountingDataSample

    evaluator = Evaluator(CountingMetric())
    samples = []
    for pred, gt in ((3.0, 4.0), (7.0, 5.0)):
        s = CountingDataSample()
        s.pred_count = pred
        s.gt_count = gt
        samples.append(s)
    evaluator.process(samples)
    m = evaluator.evaluate(2)
    assert m['MAE'] == pytest.approx(1.5)
    assert m['MSE'] == pytest.approx(math.sqrt(2.5))


def _peaky_density():
    d = np.zeros((8, 8), np.float32)
    d[1, 1] = 1.0  # cell centre (12, 12) px at stride 8
    d[1, 2] = 0.3  # neighbour: suppressed by NMS
    d[5, 6] = 0.8  # cell centre (52, 44)
    return d


def test_density_peaks_nms_order_and_cell_centres():
    xy, values = density_peaks(_peaky_density(), stride=8)
    np.testing.assert_allclose(xy, [[12, 12], [52, 44]])
    np.testing.assert_allclose(values, [1.0, 0.8])
    xy, _ = density_peaks(_peaky_density(), stride=8, num_peaks=1)
    np.testing.assert_allclose(xy, [[12, 12]])


def test_greedy_matching_is_one_to_one_strongest_first():
    pred = np.array([[0.0, 0.0], [1.0, 0.0]])
    one = np.array([[0.8, 0.0]])
    # two predictions within reach of one annotation: one match only
    np.testing.assert_array_equal(greedy_match_counts(pred, one, [1.0]), [1])
    two = np.array([[0.8, 0.0], [1.9, 0.0]])
    # strongest first: (0, 0) takes (0.8, 0), then (1, 0) reaches (1.9, 0)
    np.testing.assert_array_equal(greedy_match_counts(pred, two, [0.5, 1.0]), [1, 2])
    # the other order: (1, 0) takes (0.8, 0) and (0, 0) is 1.9 px from the other one
    np.testing.assert_array_equal(greedy_match_counts(pred[::-1], two, [1.0]), [1])


def test_localisation_ap_ar_f1_by_hand():
    sample = dict(pred_density=torch.from_numpy(_peaky_density())[None], pred_count=2.0,
                  gt_points=torch.tensor([[14.0, 12.0], [52.0, 52.0], [30.0, 60.0]]),
                  gt_count=3.0)
    m = _run(CountingMetric(localization=True, radii=(1, 3, 10)), [sample])
    # peaks (12,12), (52,44); distances 2 and 8 -> TP at radii 1, 3, 10 = 0, 1, 2
    assert m['AP'] == pytest.approx((0 + 1 / 2 + 2 / 2) / 3)
    assert m['AR'] == pytest.approx((0 + 1 / 3 + 2 / 3) / 3)
    ap, ar = m['AP'], m['AR']
    assert m['F1'] == pytest.approx(2 * ap * ar / (ap + ar))


def test_localisation_radii_are_in_original_pixels():
    affine = np.diag([2.0, 2.0, 1.0])  # the network saw the image at twice its size
    sample = dict(pred_density=torch.from_numpy(_peaky_density())[None], pred_count=2.0,
                  gt_points=torch.tensor([[14.0, 12.0], [52.0, 48.0]]), gt_count=2.0,
                  gst_affine=affine)
    m = _run(CountingMetric(localization=True, radii=(1, 2)), [sample])
    # original px: distances 1 and 2 -> TP 1 at r=1, 2 at r=2
    assert m['AR'] == pytest.approx((1 / 2 + 2 / 2) / 2)
