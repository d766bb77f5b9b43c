"""GaussianCache: round trip, atomic writes, corrupt and stale entries."""
import os

import h5py
import numpy as np
import pytest

from gst_mm.splatting import GaussianCache, GaussianCacheError, Gaussians2D


def make(n=5, seed=0):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 50, (n, 2))
    g = Gaussians2D.from_scales_angles(pts, rng.uniform(1, 4, (n, 2)), rng.uniform(0, 3, n),
                                       rng.uniform(0, 1, (n, 3)))
    return g, pts


def test_round_trip_and_metadata(tmp_path):
    cache = GaussianCache(tmp_path / 'cache', data_root=tmp_path / 'data')
    img = str(tmp_path / 'data' / 'sub' / 'a.jpg')
    g, pts = make()
    path = cache.save(img, g, pts, (60, 70), {'iterations': 10}, point_index=np.arange(5))
    assert path == str(tmp_path / 'cache' / 'sub' / 'a.jpg.h5')  # mirrored key
    out = cache.load(img, pts, (60, 70))
    for k in ('means', 'covariances', 'colors'):
        np.testing.assert_array_equal(getattr(out, k).numpy(), g.numpy()[k])
    info = cache.info(img)
    assert info['image_size'] == (60, 70) and info['num_points'] == 5
    assert info['fit_settings'] == {'iterations': 10}
    _, idx = cache.load(img, return_index=True)
    np.testing.assert_array_equal(idx, np.arange(5))
    # outside data_root / no data_root: absolute path mirrored
    other = GaussianCache(tmp_path / 'c2')
    assert other.path_for('/x/y/b.png') == str(tmp_path / 'c2' / 'x' / 'y' / 'b.png.h5')


def test_empty_entry(tmp_path):
    cache = GaussianCache(tmp_path)
    cache.save('/img/none.jpg', Gaussians2D.empty(), np.zeros((0, 2)), (10, 10))
    assert len(cache.load('/img/none.jpg', np.zeros((0, 2)))) == 0


def test_missing_and_stale_are_reported(tmp_path):
    cache = GaussianCache(tmp_path)
    g, pts = make()
    with pytest.raises(GaussianCacheError, match='a.jpg.*no Gaussian cache'):
        cache.load('/d/a.jpg')
    cache.save('/d/a.jpg', g, pts, (60, 70))
    moved = pts.copy()
    moved[2, 0] += 0.5
    with pytest.raises(GaussianCacheError, match='a.jpg.*stale.*points changed'):
        cache.load('/d/a.jpg', moved)
    with pytest.raises(GaussianCacheError, match='stale.*4 points|annotations have 4'):
        cache.load('/d/a.jpg', pts[:4])
    with pytest.raises(GaussianCacheError, match='stale'):
        cache.load('/d/a.jpg', pts, (61, 70))
    assert cache.is_valid('/d/a.jpg', pts, (60, 70))
    assert not cache.is_valid('/d/a.jpg', moved)


def test_corrupt_file_is_reported(tmp_path):
    cache = GaussianCache(tmp_path)
    g, pts = make()
    path = cache.save('/d/a.jpg', g, pts, (60, 70))
    with open(path, 'wb') as f:
        f.write(b'not an hdf5 file')
    with pytest.raises(GaussianCacheError, match='a.jpg.*corrupt'):
        cache.load('/d/a.jpg', pts)
    assert 'corrupt' in cache.check('/d/a.jpg', pts)
    # a readable file with a wrong layout / version is corrupt too
    cache.save('/d/a.jpg', g, pts, (60, 70))
    with h5py.File(path, 'a') as f:
        f.attrs['format_version'] = 99
    with pytest.raises(GaussianCacheError, match='format version'):
        cache.load('/d/a.jpg')
    cache.save('/d/a.jpg', g, pts, (60, 70))
    with h5py.File(path, 'a') as f:
        del f['colors']
    with pytest.raises(GaussianCacheError, match='corrupt'):
        cache.load('/d/a.jpg')


def test_crash_mid_write_keeps_old_file(tmp_path, monkeypatch):
    cache = GaussianCache(tmp_path)
    g, pts = make()
    path = cache.save('/d/a.jpg', g, pts, (60, 70))
    before = open(path, 'rb').read()
    g2, pts2 = make(seed=1)
    real = h5py.Group.create_dataset
    calls = {'n': 0}

    def crash(self, name, *args, **kwargs):
        calls['n'] += 1
        if calls['n'] == 2:  # after the first dataset is written
            raise KeyboardInterrupt('killed mid-write')
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, 'create_dataset', crash)
    with pytest.raises(KeyboardInterrupt):
        cache.save('/d/a.jpg', g2, pts2, (60, 70))
    monkeypatch.undo()
    assert open(path, 'rb').read() == before
    assert cache.is_valid('/d/a.jpg', pts, (60, 70))
    assert os.listdir(os.path.dirname(path)) == ['a.jpg.h5']  # no temp file left
