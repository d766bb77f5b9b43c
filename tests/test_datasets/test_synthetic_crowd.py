"""Synthetic crowd generator (gst_mm.datasets.synthetic_crowd, its scenes
gst_mm.splatting.synthetic.make_crowd_scene, tools/make_synthetic_crowd.py)."""
import dataclasses
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from gst_mm.datasets.layout import ANN_DIR, read_annotation, read_split
from gst_mm.datasets.synthetic_crowd import (
    SyntheticCrowdConfig,
    load_config,
    scene_for_index,
    write_dataset,
)
from gst_mm.splatting.synthetic import make_crowd_scene

TINY = SyntheticCrowdConfig(num_images=5, min_size=64, max_size=96, min_objects=3,
                            max_objects=12, near_std=4.0, seed=4)


def tree_bytes(root):
    """``relative path -> bytes`` of every file under ``root``."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = osp.join(d, f)
            with open(p, 'rb') as fh:
                out[osp.relpath(p, root)] = fh.read()
    return out


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b, c = (str(tmp_path / k) for k in 'abc')
    splits_a = write_dataset(a, TINY)
    splits_b = write_dataset(b, TINY)
    write_dataset(c, dataclasses.replace(TINY, seed=TINY.seed + 1))
    files_a, files_b, files_c = tree_bytes(a), tree_bytes(b), tree_bytes(c)
    assert splits_a == splits_b
    assert files_a == files_b  # byte-identical images, annotations, splits, config
    assert sum(k.startswith('images') for k in files_a) == TINY.num_images
    images = [k for k in files_a if k.startswith('images')]
    assert all(files_a[k] != files_c[k] for k in images)
    anns = [k for k in files_a if k.startswith('annotations')]
    assert all(files_a[k] != files_c[k] for k in anns)


def test_image_depends_only_on_seed_and_index(tmp_path):
    # a larger data set starts with the same images as a smaller one
    big = dataclasses.replace(TINY, num_images=7)
    s5, s7 = scene_for_index(TINY, 3), scene_for_index(big, 3)
    np.testing.assert_array_equal(s5.image, s7.image)
    np.testing.assert_array_equal(s5.points, s7.points)


def test_layout_and_saved_covariances_match_the_scenes(tmp_path):
    out = str(tmp_path / 'syn')
    splits = write_dataset(out, TINY)
    names = sorted(sum(splits.values(), []))
    assert names == [f'syn_{i:05d}' for i in range(TINY.num_images)]
    for split, members in splits.items():
        assert read_split(osp.join(out, f'{split}.txt')) == members and members
    assert load_config(osp.join(out, 'synthetic_config.json')) == TINY
    for i, name in enumerate(names):
        scene = scene_for_index(TINY, i)
        ann = read_annotation(osp.join(out, ANN_DIR, f'{name}.json'))
        h, w = scene.image.shape[:2]
        assert (ann.width, ann.height) == (w, h)
        np.testing.assert_allclose(ann.points, scene.points, atol=1e-5)
        np.testing.assert_allclose(ann.covariances, scene.covariances, atol=1e-5)
        # the RGB scene, stored as a BGR JPEG (4:2:0 chroma: compare luma and channel means)
        bgr = cv2.imread(osp.join(out, 'images', ann.image))
        luma = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(float)
        want = cv2.cvtColor(scene.image, cv2.COLOR_RGB2GRAY).astype(float)
        assert np.abs(luma - want).mean() < 2.5
        channel_means = bgr[..., ::-1].reshape(-1, 3).mean(0)
        np.testing.assert_allclose(channel_means, scene.image.reshape(-1, 3).mean(0), atol=1.5)


def blob_moments(image, bg, x, y, radius):
    """Mean (x, y) px (pixel centres at +0.5) and covariance px^2 of the blob
    ``|image - bg|`` in a window of ``radius`` around (x, y)."""
    h, w = image.shape[:2]
    i0, i1 = int(y - radius), int(y + radius) + 1
    j0, j1 = int(x - radius), int(x + radius) + 1
    assert i0 >= 0 and j0 >= 0 and i1 <= h and j1 <= w
    wgt = np.abs(image[i0:i1, j0:j1].astype(np.float64) - bg).sum(2)
    ii, jj = np.mgrid[i0:i1, j0:j1]
    px, py = jj + 0.5, ii + 0.5
    m = wgt.sum()
    mx, my = (wgt * px).sum() / m, (wgt * py).sum() / m
    dx, dy = px - mx, py - my
    cov = np.array([[(wgt * dx * dx).sum(), (wgt * dx * dy).sum()],
                    [(wgt * dx * dy).sum(), (wgt * dy * dy).sum()]]) / m
    return np.array([mx, my]), cov


def test_drawn_objects_have_the_saved_covariances():
    """On a flat background (no texture, occluders or noise) the second moments of
    each isolated object's blob are its saved covariance and its first moment is
    its annotated point."""
    cfg = SyntheticCrowdConfig(near_std=7.0, far_scale=0.5, max_aspect=2.5, min_spacing=5.0,
                               opacity_range=(1.0, 1.0))
    rng = np.random.default_rng(0)
    scene = make_crowd_scene(rng, 220, 200, 12, cfg, textured=False)
    assert len(scene.points) >= 4
    checked = 0
    for p, cov in zip(scene.points.astype(np.float64), scene.covariances.astype(np.float64)):
        r = 4.0 * np.sqrt(np.linalg.eigvalsh(cov).max())
        if not (r <= p[0] <= 220 - r - 1 and r <= p[1] <= 200 - r - 1):
            continue  # cut by the border
        mean, got = blob_moments(scene.image, 128.0, p[0], p[1], r)
        np.testing.assert_allclose(mean, p, atol=0.05)
        # uint8 rounding loses the far tail: a few per cent smaller, same shape
        assert np.linalg.norm(got - cov) / np.linalg.norm(cov) < 0.05
        major = np.linalg.eigh(cov)[1][:, 1]
        if np.ptp(np.sqrt(np.linalg.eigvalsh(cov))) > 1.0:  # clearly anisotropic
            assert abs(major @ np.linalg.eigh(got)[1][:, 1]) > np.cos(np.radians(3))
        checked += 1
    assert checked >= 3


def test_perspective_objects_smaller_far_away():
    cfg = SyntheticCrowdConfig(near_std=8.0, far_scale=0.3)
    scene = make_crowd_scene(np.random.default_rng(1), 300, 300, 150, cfg)
    size = np.sqrt(np.linalg.det(scene.covariances.astype(np.float64))) ** 0.5  # geometric std
    y = scene.points[:, 1]
    assert np.corrcoef(y, size)[0, 1] > 0.8
    top, bottom = size[y < 100], size[y > 200]
    assert top.mean() < 0.6 * bottom.mean()
    # object stds stay within the configured range (0.85-1.15 jitter, aspect <= 1.8)
    stds = np.sqrt(np.linalg.eigvalsh(scene.covariances.astype(np.float64)))
    assert stds.max() <= 8.0 * 1.15 + 1e-3 and stds.min() >= 8.0 * 0.3 * 0.85 / 1.8 - 1e-3


def test_cli_writes_deterministic_dataset(tmp_path, load_tool, capsys):
    tool = load_tool('make_synthetic_crowd')
    args = ['--num-images', '4', '--min-size', '64', '--max-size', '80', '--min-objects', '2',
            '--max-objects', '6', '--near-std', '3', '--seed', '9', '--quiet',
            '--split-fractions', '0.5', '0.25', '0.25']
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    assert tool.main(['--out', a] + args) == 0
    text = capsys.readouterr().out
    assert osp.abspath(a) in text and 'images: 4 (train 2, val 1, test 1)' in text
    assert tool.main(['--out', b] + args) == 0
    assert tree_bytes(a) == tree_bytes(b)
    cfg = load_config(osp.join(a, 'synthetic_config.json'))
    assert (cfg.num_images, cfg.min_size, cfg.max_size, cfg.seed, cfg.near_std) == (4, 64, 80, 9,
                                                                                   3.0)
    # up to date: nothing rewritten; --force rewrites the same bytes
    before = os.stat(osp.join(a, 'annotations', 'syn_00000.json')).st_mtime_ns
    assert tool.main(['--out', a] + args) == 0
    assert 'already in' in capsys.readouterr().out
    assert os.stat(osp.join(a, 'annotations', 'syn_00000.json')).st_mtime_ns == before
    assert tool.main(['--out', a, '--force'] + args) == 0
    assert tree_bytes(a) == tree_bytes(b)
    # bad settings: a clear error, nothing written
    assert tool.main(['--out', str(tmp_path / 'c'), '--min-size', '90', '--max-size', '80']) == 2
    assert '--min-size' in capsys.readouterr().err
    assert not osp.exists(tmp_path / 'c')


def test_cli_reads_the_config_settings(tmp_path, load_tool, repo_root):
    pytest.importorskip('mmengine')
    tool = load_tool('make_synthetic_crowd')
    out = str(tmp_path / 'cfgset')
    config = osp.join(repo_root, 'configs', 'counting', 'gst_vgg19_synthetic.py')
    assert tool.main(['--config', config, '--out', out, '--num-images', '1', '--quiet']) == 0
    from mmengine.config import Config
    want = dict(Config.fromfile(config).get('synthetic_data', None) or {})
    cfg = load_config(osp.join(out, 'synthetic_config.json'))
    want.pop('num_images', None)  # the command line wins
    assert want, 'the synthetic config should name its generator settings'
    for k, v in want.items():
        assert getattr(cfg, k) == (tuple(v) if isinstance(v, (list, tuple)) else v), k
    assert cfg.num_images == 1


def test_annotation_jitter_moves_points_not_pixels():
    """Jittered annotations: same image and covariances, points displaced from the true
    centres by ~jitter x the object's geometric-mean std (checked on the normalised
    displacements of several scenes), and jitter 0 gives the exact centres."""
    from gst_mm.datasets.synthetic_crowd import SyntheticCrowdConfig, scene_for_index
    exact_cfg = SyntheticCrowdConfig(min_size=160, max_size=200, max_objects=60)
    noisy_cfg = SyntheticCrowdConfig(min_size=160, max_size=200, max_objects=60,
                                     annotation_jitter=0.5)
    z = []
    for i in range(6):
        exact, noisy = scene_for_index(exact_cfg, i), scene_for_index(noisy_cfg, i)
        np.testing.assert_array_equal(exact.image, noisy.image)
        np.testing.assert_array_equal(exact.covariances, noisy.covariances)
        np.testing.assert_array_equal(exact.points, exact.centres)
        np.testing.assert_array_equal(noisy.centres, exact.centres)
        gstd = np.linalg.det(noisy.covariances.astype(np.float64)) ** 0.25
        z.append((noisy.points - noisy.centres) / gstd[:, None])
    z = np.concatenate(z)
    assert len(z) > 100
    assert abs(z.mean()) < 0.1 and 0.4 < z.std() < 0.6


def test_size_spread_makes_sizes_independent_of_the_row():
    """The counting benchmark's 'sizes' variant: without perspective and with
    size_spread 3, stds are log-uniform in [near_std / 3, near_std * 3] wherever the
    object stands; size_spread 1 draws nothing more (the earlier scenes)."""
    from gst_mm.datasets.synthetic_crowd import SyntheticCrowdConfig
    from gst_mm.splatting.synthetic import make_crowd_scene
    cfg = SyntheticCrowdConfig(near_std=9.0, far_scale=1.0, size_spread=3.0, max_aspect=1.0)
    majors, rows = [], []
    for seed in range(6):
        sc = make_crowd_scene(np.random.default_rng(seed), 512, 512, 60, cfg)
        majors.append(sc.scales[:, 0])
        rows.append(sc.centres[:, 1])
    s, y = np.concatenate(majors), np.concatenate(rows)
    assert s.min() >= 9.0 / 3 * 0.85 - 1e-3 and s.max() <= 9.0 * 3 * 1.15 + 1e-3
    assert s.max() / s.min() > 5  # widely varying
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    assert abs(np.corrcoef(rank(s), rank(y))[0, 1]) < 0.25  # no row dependence
    plain = SyntheticCrowdConfig(near_std=9.0, far_scale=1.0)
    a = make_crowd_scene(np.random.default_rng(1), 256, 256, 30, plain)
    b = make_crowd_scene(np.random.default_rng(1), 256, 256, 30,
                         SyntheticCrowdConfig(near_std=9.0, far_scale=1.0, size_spread=1.0))
    assert np.array_equal(a.image, b.image)
