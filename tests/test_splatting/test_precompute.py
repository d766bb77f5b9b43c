"""fit_missing: skip valid caches, resume, refit stale ones, report bad images."""
import os

import cv2
import numpy as np
import pytest

from gst_mm.splatting import GaussianCache, GaussianSample, fit_missing
from gst_mm.splatting.synthetic import make_scene

FIT = dict(iterations=8)


def write_dataset(root, n=4):
    samples = []
    for i in range(n):
        scene = make_scene(40, 48, 3, std_range=(2.0, 5.0), seed=i)
        path = str(root / f'img{i}.png')
        cv2.imwrite(path, scene.image[..., ::-1])
        samples.append(GaussianSample(f'img{i}', path, scene.points))
    return samples


def test_resume_skips_finished_images(tmp_path):
    samples = write_dataset(tmp_path)
    cache = GaussianCache(tmp_path / 'cache', data_root=tmp_path)
    first = fit_missing(samples[:2], cache, FIT, progress=False)  # a run killed after 2
    assert sorted(first.fitted) == ['img0', 'img1'] and not first.failed
    mtimes = {s.key: os.stat(cache.path_for(s.img_path)).st_mtime_ns for s in samples[:2]}
    second = fit_missing(samples, cache, FIT, progress=False)
    assert sorted(second.skipped) == ['img0', 'img1']
    assert sorted(second.fitted) == ['img2', 'img3']
    for s in samples[:2]:
        assert os.stat(cache.path_for(s.img_path)).st_mtime_ns == mtimes[s.key]
    third = fit_missing(samples, cache, FIT, progress=False)
    assert len(third.skipped) == 4 and not third.fitted
    assert '0 fitted, 4 skipped' in str(third)


def test_stale_cache_is_reported_and_refitted(tmp_path):
    samples = write_dataset(tmp_path, 2)
    cache = GaussianCache(tmp_path / 'cache')
    fit_missing(samples, cache, FIT, progress=False)
    moved = samples[0].points.copy()
    moved[0] += 1.0
    changed = [GaussianSample('img0', samples[0].img_path, moved), samples[1]]
    summary = fit_missing(changed, cache, FIT, progress=False)
    assert summary.fitted == ['img0'] and summary.skipped == ['img1']
    assert summary.refitted and 'points changed' in summary.refitted[0][1]
    assert cache.is_valid(samples[0].img_path, moved)
    with open(cache.path_for(samples[1].img_path), 'wb') as f:
        f.write(b'garbage')
    summary = fit_missing(changed, cache, FIT, progress=False)
    assert summary.fitted == ['img1'] and 'corrupt' in summary.refitted[0][1]


def test_bad_images_never_abort_the_run(tmp_path):
    samples = write_dataset(tmp_path, 1)
    (tmp_path / 'broken.jpg').write_bytes(b'not a jpeg')
    bad = [
        GaussianSample('missing', str(tmp_path / 'nope.png'), np.array([[1.0, 1.0]])),
        GaussianSample('broken', str(tmp_path / 'broken.jpg'), np.array([[1.0, 1.0]])),
        GaussianSample('outside', samples[0].img_path, np.array([[5.0, 5.0], [100.0, 5.0]])),
    ]
    cache = GaussianCache(tmp_path / 'cache')
    empty = GaussianSample('empty', str(tmp_path / 'img0.png'), np.zeros((0, 2)))
    summary = fit_missing([bad[0], bad[1], samples[0]], cache, FIT, progress=False)
    reasons = dict(summary.failed)
    assert summary.fitted == ['img0']
    assert 'nope.png' in reasons['missing'] and 'not found' in reasons['missing']
    assert 'broken.jpg' in reasons['broken'] and 'decode' in reasons['broken']
    assert 'FAILED broken' in str(summary)
    # points outside: a clear error naming the image, or dropped under the flag
    cache2 = GaussianCache(tmp_path / 'cache2')
    summary = fit_missing([bad[2]], cache2, FIT, progress=False)
    assert 'img0.png' in summary.failed[0][1] and 'outside' in summary.failed[0][1]
    with pytest.warns(UserWarning, match='outside'):
        summary = fit_missing([bad[2]], cache2, dict(FIT, drop_outside=True), progress=False)
    g, idx = cache2.load(bad[2].img_path, bad[2].points, return_index=True)
    assert summary.fitted == ['outside'] and len(g) == 1 and list(idx) == [0]
    # no points: an empty entry, no fit
    cache3 = GaussianCache(tmp_path / 'cache3')
    summary = fit_missing([empty], cache3, FIT, progress=False)
    assert summary.fitted == ['empty'] and len(cache3.load(empty.img_path, empty.points)) == 0


def test_workers_and_shards(tmp_path):
    samples = write_dataset(tmp_path, 4)
    cache = GaussianCache(tmp_path / 'cache')
    s0 = fit_missing(samples, cache, FIT, shard=(0, 2), progress=False)
    assert sorted(s0.fitted) == ['img0', 'img2']
    s1 = fit_missing(samples, cache, FIT, workers=2, shard=(1, 2), progress=False)
    assert sorted(s1.fitted) == ['img1', 'img3'] and not s1.failed
    assert all(cache.is_valid(s.img_path, s.points) for s in samples)
    with pytest.raises(ValueError, match='shard'):
        fit_missing(samples, cache, FIT, shard=(2, 2))


def _claim(cache, sample, pid):
    import socket
    path = cache.path_for(sample.img_path) + '.claim'
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(f'{socket.gethostname()} {pid}\n')
    return path


def test_a_second_run_leaves_entries_another_live_writer_is_fitting(tmp_path):
    """Two precompute runs on one cache (issue 24 item 8): an entry claimed by a live
    writer is reported busy, not fitted twice; a dead writer's claim is taken over;
    waiting for a claim that is released fits (or skips) the entry afterwards."""
    import subprocess
    import sys
    import threading
    samples = write_dataset(tmp_path, n=3)
    cache = GaussianCache(tmp_path / 'cache', data_root=tmp_path)
    live = _claim(cache, samples[0], os.getpid())            # this process: alive
    dead_pid = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                              capture_output=True, text=True).stdout.strip()
    dead = _claim(cache, samples[1], dead_pid)                # its writer is gone
    summary = fit_missing(samples, cache, FIT, progress=False)
    assert [k for k, _ in summary.busy] == ['img0'] and 'pid' in summary.busy[0][1]
    assert sorted(summary.fitted) == ['img1', 'img2'] and summary.ok
    assert 'being fitted by another process' in str(summary)
    assert os.path.exists(live) and not os.path.exists(dead)
    assert not os.path.exists(cache.path_for(samples[0].img_path))
    # waiting: the claim goes away after 1 s, then the entry is fitted here
    threading.Timer(1.0, os.remove, args=(live, )).start()
    waited = fit_missing(samples, cache, FIT, progress=False, wait_busy=30)
    assert waited.fitted == ['img0'] and not waited.busy and sorted(waited.skipped) == [
        'img1', 'img2']
    assert not any(p.endswith('.claim') for _, _, fs in os.walk(cache.root) for p in fs)
