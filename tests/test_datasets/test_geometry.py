"""Affine bookkeeping (gst_mm.datasets.transforms.geometry) against references:
OpenCV warps, brute-force neighbourhoods, hand-computed box areas, and the
second moments of transformed rendered blobs."""
import cv2
import numpy as np
import pytest

pytest.importorskip('mmcv')

from gst_mm.datasets.transforms import geometry as G  # noqa: E402
from gst_mm.splatting import Gaussians2D  # noqa: E402
from gst_mm.splatting.synthetic_draw import draw_gaussian_blob  # noqa: E402


def _moments(img: np.ndarray):
    """Weighted mean (x, y) and covariance of a non-negative (H, W) image at pixel
    centres (+0.5)."""
    h, w = img.shape
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    wsum = img.sum()
    mx, my = (img * xs).sum() / wsum, (img * ys).sum() / wsum
    dx, dy = xs - mx, ys - my
    cov = np.array([[(img * dx * dx).sum(), (img * dx * dy).sum()],
                    [(img * dx * dy).sum(), (img * dy * dy).sum()]]) / wsum
    return np.array([mx, my]), cov


def test_compose_applies_in_order():
    a, b = G.translation(3, -2), G.scaling(2.0, 0.5)
    p = np.array([[1.0, 4.0]])
    step = G.apply_to_points(b, G.apply_to_points(a, p))
    np.testing.assert_allclose(G.apply_to_points(G.compose(a, b), p), step, atol=1e-6)
    np.testing.assert_allclose(step, [[8.0, 1.0]])


def test_flip_matrix_equals_gaussians_flip_x():
    rng = np.random.default_rng(0)
    g = Gaussians2D.from_scales_angles(rng.uniform(0, 50, (5, 2)), rng.uniform(1, 4, (5, 2)),
                                       rng.uniform(0, np.pi, 5))
    a = G.apply_to_gaussians(G.hflip(50), g)
    b = g.flip_x(50)
    np.testing.assert_allclose(a.means.numpy(), b.means.numpy(), atol=1e-5)
    np.testing.assert_allclose(a.covariances.numpy(), b.covariances.numpy(), atol=1e-5)


def test_from_2x3_pixel_index_matches_cv2_warp():
    """A blob warped by cv2.warpAffine sits at the point moved by the converted matrix."""
    img = np.zeros((80, 80), np.float64)
    cov = np.array([[9.0, 3.0], [3.0, 6.0]])
    draw_gaussian_blob(img[..., None], (30.3, 41.7), cov, (1.0, ), 1.0, 5.0)
    m = cv2.getRotationMatrix2D((37.0, 35.0), 25.0, 1.1)  # pixel-index convention
    warped = cv2.warpAffine(img, m, (80, 80), flags=cv2.INTER_LINEAR)
    M = G.from_2x3(m, pixel_index_coords=True)
    mean, mcov = _moments(warped)
    np.testing.assert_allclose(mean, G.apply_to_points(M, [[30.3, 41.7]])[0], atol=0.05)
    np.testing.assert_allclose(mcov, G.apply_to_covariances(M, cov[None])[0], rtol=0.06,
                               atol=0.3)


def test_neighbourhood_sizes_brute_force():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 300, (40, 2))
    d = np.linalg.norm(p[:, None] - p[None], axis=2)
    d[np.arange(40), np.arange(40)] = np.inf
    ref = np.clip(np.sort(d, 1)[:, :3].mean(1), 4, 128)
    np.testing.assert_allclose(G.neighbourhood_sizes(p), ref, rtol=1e-5)
    assert G.neighbourhood_sizes(p[:1]).tolist() == [8.0]
    assert G.neighbourhood_sizes(np.zeros((0, 2))).shape == (0, )


def test_inside_fraction_hand_computed():
    boxes = np.array([[-5, -5, 5, 5],      # quarter inside
                      [10, 10, 20, 30],    # fully inside
                      [95, 0, 105, 10],    # half inside (width 100)
                      [200, 0, 210, 10]])  # outside
    np.testing.assert_allclose(G.inside_fraction(boxes, 100, 50), [0.25, 1.0, 0.5, 0.0])


def test_select_points_keeps_fields_and_gaussians_in_step():
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 60, (6, 2)).astype(np.float32)
    results = dict(points=pts, gt_covariances=np.tile(np.eye(2, dtype=np.float32), (6, 1, 1)),
                   gaussians=Gaussians2D(pts, np.tile(np.eye(2), (6, 1, 1))))
    G.transform_results(results, G.scaling(2.0))
    G.select_points(results, np.array([True, False, True, False, False, True]))
    np.testing.assert_allclose(results['points'], pts[[0, 2, 5]] * 2, atol=1e-5)
    np.testing.assert_allclose(results['gaussians'].means.numpy(), results['points'], atol=1e-5)
    assert results['neighbourhood_boxes'].shape == (3, 4)
    np.testing.assert_allclose(results['gt_covariances'], np.tile(4 * np.eye(2), (3, 1, 1)))
