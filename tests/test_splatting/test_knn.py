"""The one kNN helper (gst_mm.splatting.knn) against brute force."""
import numpy as np
import pytest

from gst_mm.splatting import knn_distance, knn_distances


def _brute(points, k):
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, :min(k, len(points) - 1)]


@pytest.mark.parametrize('n, k', [(2, 3), (3, 3), (10, 1), (50, 3), (50, 7)])
def test_knn_distances_match_brute_force(n, k):
    pts = np.random.default_rng(n + k).uniform(0, 100, (n, 2)).astype(np.float32)
    got = knn_distances(pts, k)
    assert got.shape == (n, min(k, n - 1)) and got.dtype == np.float64
    np.testing.assert_allclose(got, _brute(pts.astype(np.float64), k), rtol=1e-12)
    np.testing.assert_allclose(knn_distance(pts, k), np.maximum(got.mean(1), 1.0))


def test_knn_distance_edge_cases():
    assert knn_distance(np.zeros((0, 2))).shape == (0,)
    assert knn_distances(np.zeros((0, 2)), 3).shape == (0, 0)
    np.testing.assert_array_equal(knn_distance(np.array([[5.0, 5.0]]), single=3.0, floor=9.0),
                                  [3.0])  # a lone point: `single`, not floored
    dup = np.array([[1.0, 1.0], [1.0, 1.0], [4.0, 5.0]])
    np.testing.assert_allclose(knn_distance(dup, k=1), [1.0, 1.0, 5.0])  # floored at 1 px
    np.testing.assert_allclose(knn_distance(dup, k=1, floor=0.0), [0.0, 0.0, 5.0])
    with pytest.raises(ValueError, match='k must be'):
        knn_distances(dup, 0)


def test_numpy_fallback_gives_the_kd_tree_distances(monkeypatch):
    """Without scipy (a bare GPU box) the kNN query is a blockwise numpy search with the
    same distances and (tie-free) indices."""
    import builtins

    from gst_mm.splatting import knn
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 500, (2500, 2))
    queries = rng.uniform(0, 500, (300, 2))
    ref = knn.knn_distances(pts, 3), knn.knn_query(pts, queries, 4)
    real_import = builtins.__import__

    def no_scipy(name, *a, **k):
        if name.startswith('scipy'):
            raise ImportError('scipy is not installed (test)')
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, '__import__', no_scipy)
    monkeypatch.setattr(knn, '_CHUNK', 700)  # several blocks
    got = knn.knn_distances(pts, 3), knn.knn_query(pts, queries, 4)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-12)
    np.testing.assert_allclose(got[1][0], ref[1][0], rtol=1e-12)
    np.testing.assert_array_equal(got[1][1], ref[1][1])
