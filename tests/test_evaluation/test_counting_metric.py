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


# ---------------------------------------------------------------- original resolution
# An original 64 x 48 (w x h) image with two annotations, tested at twice its size: the
# peaks of cells (1, 1) and (4, 7) of the 128 x 96 input sit at input px (12, 12) and
# (60, 36), i.e. exactly on the annotations (6, 6) and (30, 18) of the original image.
ORIGINAL_POINTS = np.array([[6.0, 6.0], [30.0, 18.0]], np.float32)


def _resized_test_sample(resize):
    """Run the crowd test pipeline's geometric step and PackCountingInputs on the image."""
    from gst_mm.datasets.transforms import PackCountingInputs

    results = dict(img=np.zeros((48, 64, 3), np.uint8), img_path='syn_0007.jpg',
                   img_id='syn_0007', ori_shape=(48, 64), points=ORIGINAL_POINTS.copy(),
                   ori_points=ORIGINAL_POINTS.copy(), ori_count=2)
    results = resize(results)
    packed = PackCountingInputs(meta_keys=('img_path', 'img_id', 'ori_shape', 'img_shape',
                                           'scale_factor', 'gst_affine', 'ori_points'))
    sample = packed.transform(results)['data_samples']
    assert tuple(sample.metainfo['img_shape']) == (96, 128)
    density = torch.zeros(1, 12, 16)
    density[0, 1, 1] = 1.0
    density[0, 4, 7] = 0.9
    sample.pred_density = density
    sample.pred_count = 2.0
    return sample


def _crowd_resize(results):
    from gst_mm.datasets.transforms import CrowdResize
    return CrowdResize(scale_factor=2.0).transform(results)


def _mmcv_resize(results):
    # MMCV's own resize: sets scale_factor, knows nothing of gst_affine or the points
    from mmcv.transforms import Resize
    return Resize(scale_factor=2.0, keep_ratio=True).transform(results)


@pytest.mark.parametrize('resize', [_crowd_resize, _mmcv_resize],
                         ids=['gst_affine', 'scale_factor'])
def test_localisation_of_a_resized_test_image_is_exact_at_the_original_size(resize):
    from mmengine.evaluator import Evaluator

    sample = _resized_test_sample(resize)
    evaluator = Evaluator(CountingMetric(localization=True, radii=(0.5, 1.0),
                                         thresholds=(0.5, 4.0)))
    evaluator.process([sample])
    m = evaluator.evaluate(1)
    # peaks map back onto the original annotations: distance 0 at every threshold
    assert m['AP'] == 1.0 and m['AR'] == 1.0 and m['F1'] == 1.0
    for t in ('0.5', '4'):
        assert m[f'Precision@{t}'] == 1.0 and m[f'Recall@{t}'] == 1.0 and m[f'F1@{t}'] == 1.0


def test_without_mapping_back_the_resized_peaks_would_miss():
    # the same sample with its resize bookkeeping removed: input px against original px
    sample = _resized_test_sample(_mmcv_resize)
    d = dict(pred_density=sample.pred_density, pred_count=2.0, gt_count=2.0,
             ori_points=ORIGINAL_POINTS)
    m = _run(CountingMetric(localization=True, radii=(1.0, ), thresholds=(4.0, 9.0)), [d])
    # (12, 12) vs (6, 6): 8.49 px; (60, 36) vs (30, 18): 35 px
    assert m['F1@4'] == 0.0 and m['Recall@9'] == pytest.approx(0.5)


def test_original_annotations_are_used_not_the_moved_points():
    # gt_points of the input may have lost points (e.g. a test-time crop); ori_points
    # are what the metric matches: 1 of 2 originals found -> recall 1/2, precision 1
    d = dict(pred_density=torch.from_numpy(_peaky_density())[None], pred_count=1.0,
             gt_points=torch.tensor([[12.0, 12.0]]), gst_affine=np.eye(3),
             ori_points=np.array([[12.0, 12.0], [100.0, 100.0]]))
    m = _run(CountingMetric(localization=True, radii=(1.0, ), thresholds=(1.0, )), [d])
    assert m['Recall@1'] == pytest.approx(0.5) and m['Precision@1'] == 1.0
    assert m['F1@1'] == pytest.approx(2 / 3)


def test_shape_ratio_maps_back_when_nothing_else_is_recorded():
    from gst_mm.evaluation import to_original_pixels

    xy = to_original_pixels(dict(ori_shape=(48, 64), img_shape=(96, 160)), [[20.0, 12.0]])
    assert np.allclose(xy, [[8.0, 6.0]])
    assert np.allclose(to_original_pixels({}, [[3.0, 4.0]]), [[3.0, 4.0]])


def test_bad_thresholds_are_a_one_line_error():
    with pytest.raises(ValueError, match='radii / thresholds positive'):
        CountingMetric(localization=True, thresholds=(0.0, ))
