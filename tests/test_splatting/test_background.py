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
