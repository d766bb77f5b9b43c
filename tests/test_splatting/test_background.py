"""The background re-estimate (method.md 3b) against a plain numpy statement of it."""
import cv2
import numpy as np
import pytest

from gst_mm.splatting.background import reestimate_background


def _reference(image, rgb, acc, previous, window, max_alpha=0.5):
    """The re-estimate written out with numpy, one level at a time."""
    vis = np.clip(1.0 - acc, 0.0, 1.0)
    weight = np.where(acc < max_alpha, vis * vis, 0.0).astype(np.float32)
    unmixed = np.clip((image - rgb) / np.maximum(vis, 1e-3)[..., None], 0.0, 1.0)
    est = previous
    h, w = acc.shape
    for div in (1.0, 2.0, 4.0, 8.0):
        sigma = max(1.0, window / div)
        f = max(1.0, sigma / 4.0)
        size = (max(1, round(w / f)), max(1, round(h / f)))
        num, den = (unmixed * weight[..., None]).astype(np.float32), weight
        if f > 1:
            num = cv2.resize(num, size, interpolation=cv2.INTER_AREA)
            den = cv2.resize(den, size, interpolation=cv2.INTER_AREA)
        num = cv2.GaussianBlur(num, (0, 0), sigma / f)
        den = cv2.GaussianBlur(den, (0, 0), sigma / f)
        if f > 1:
            num = cv2.resize(num, (w, h), interpolation=cv2.INTER_LINEAR)
            den = cv2.resize(den, (w, h), interpolation=cv2.INTER_LINEAR)
        den = den.reshape(h, w, 1)
        trust = np.clip(den / 0.05, 0.0, 1.0)
        est = trust * (num / np.maximum(den, 1e-6)) + (1 - trust) * est
    return est


@pytest.mark.parametrize('shape, window', [((40, 64), 3.0), ((90, 130), 40.0),
                                           ((120, 70), 400.0)])
def test_reestimate_matches_the_numpy_statement(shape, window):
    rng = np.random.default_rng(3)
    h, w = shape
    image = rng.random((h, w, 3), dtype=np.float32)
    rgb = 0.4 * rng.random((h, w, 3), dtype=np.float32)
    acc = 1.3 * rng.random((h, w), dtype=np.float32)  # some pixels over-covered (> 1)
    previous = rng.random((h, w, 3), dtype=np.float32)
    keep = previous.copy()
    got = reestimate_background(image, rgb, acc, previous, window)
    assert got.dtype == np.float32 and got.shape == (h, w, 3)
    np.testing.assert_allclose(got, _reference(image, rgb, acc, previous, window),
                               rtol=1e-5, atol=1e-6)
    assert np.array_equal(previous, keep)  # the caller's layer is not written to


def test_reestimate_recovers_a_known_background():
    """A flat background seen around one covered disc is filled in under it."""
    h, w = 60, 80
    yy, xx = np.mgrid[:h, :w]
    acc = np.exp(-((xx - 40) ** 2 + (yy - 30) ** 2) / (2 * 6.0 ** 2)).astype(np.float32)
    bg = np.array([0.2, 0.5, 0.7], np.float32)
    colour = np.array([0.9, 0.1, 0.3], np.float32)
    rgb = acc[..., None] * colour
    image = rgb + (1 - acc[..., None]) * bg
    got = reestimate_background(image, rgb, acc, np.zeros((h, w, 3), np.float32), 20.0)
    np.testing.assert_allclose(got, np.broadcast_to(bg, got.shape), atol=2e-3)


def test_reestimate_without_a_fit_keeps_the_seen_image():
    """``rgb=None`` (nothing fitted) is ``rgb = 0``, and the image is not written to."""
    rng = np.random.default_rng(5)
    image = rng.random((50, 70, 3), dtype=np.float32)
    acc = (rng.random((50, 70)) < 0.3).astype(np.float32)
    previous = rng.random((50, 70, 3), dtype=np.float32)
    keep = image.copy()
    got = reestimate_background(image, None, acc, previous, 12.0)
    np.testing.assert_allclose(got, _reference(image, np.zeros_like(image), acc, previous, 12.0),
                               rtol=1e-5, atol=1e-6)
    assert np.array_equal(image, keep)


def _grid_scene(contrast, seed=0):
    from gst_mm.splatting.synthetic import grid_centres, make_scene
    centres = grid_centres(4, 64.0)
    return make_scene(256, 256, len(centres), std_range=(3.0, 20.0), centres=centres,
                      color_contrast=contrast, seed=seed)


def test_masked_background_recovers_the_background_behind_the_objects():
    """The background seen between the objects, against the scene's true one: much
    closer than the median-filtered image (which takes the objects in), and exact on a
    flat background."""
    from gst_mm.splatting.background import masked_background, median_background
    from gst_mm.splatting.scale import nearest_distance
    sc = _grid_scene(None)
    radii = np.minimum(2.5 * np.sqrt(sc.scales.prod(1)), 0.5 * nearest_distance(sc.points))
    for window in (20.0, 64.0):  # full resolution and shrunk by 2
        bg = masked_background(sc.image, sc.points, radii, window)
        assert bg.shape == sc.image.shape and bg.dtype == np.float32
        err = np.abs(bg - sc.background).mean()
        med = np.abs(median_background(sc.image, window) - sc.background).mean()
        assert err < 0.6 * med, (window, err, med)
    flat = np.full((96, 128, 3), 90, np.uint8)
    flat[40:56, 50:70] = 250  # one object, inside its disc
    bg = masked_background(flat, np.array([[60.0, 48.0]]), np.array([16.0]), 64.0)
    np.testing.assert_allclose(bg, 90 / 255, atol=1e-5)


def test_color_contrast_sets_the_distance_to_the_background():
    sc0, sc = _grid_scene(None), _grid_scene(0.15)
    for key in ('points', 'scales', 'angles', 'covariances', 'background'):
        assert np.array_equal(getattr(sc0, key), getattr(sc, key))  # same draws
    ij = np.floor(sc.centres).astype(int)[:, ::-1]
    under = sc.background[ij[:, 0], ij[:, 1]]
    np.testing.assert_allclose(np.linalg.norm(sc.colors - under, axis=1), 0.15, atol=1e-5)
    with pytest.raises(ValueError, match='color_contrast'):
        _grid_scene(1.5)
