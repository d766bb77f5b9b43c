"""The cache contract: the Gaussians a model trains with belong to the image it sees.

One regression test per fault of issue 12: EXIF orientation, an image resized (or
replaced) after its fit, a truncated JPEG, data-set wrappers (Repeat, Concat of two
roots, nested), a missing ``points`` key, changed fit settings, the ``auto`` backend,
and ``tools/precompute.py --check``. The two-rank failure is in test_cache_dist.py.
"""
import io
import json
import os
import os.path as osp
import shutil
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip('mmpose')

from mmengine.dataset import ConcatDataset, RepeatDataset  # noqa: E402

import gst_mm  # noqa: E402,F401
from gst_mm.datasets import CrowdCountingDataset  # noqa: E402
from gst_mm.datasets.layout import CrowdAnnotation, LayoutError, write_sample, write_split  # noqa: E402
from gst_mm.datasets.synthetic_crowd import SyntheticCrowdConfig, scene_for_index  # noqa: E402
from gst_mm.engine import cache_groups, check_dataset, precompute_dataset  # noqa: E402
from gst_mm.splatting import GaussianCacheError, read_image, read_image_file  # noqa: E402
from gst_mm.splatting.fit import fit_settings, fit_settings_key  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FIT = dict(iterations=5)
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadCrowdGaussians')]


@pytest.fixture(autouse=True)
def _scope():
    from gst_mm.utils import register_all_modules
    register_all_modules(init_default_scope=True)


def _crowd_root(root, n=4, seed=0):
    """A crowd-layout data set of ``n`` tiny synthetic images, all in ``all.txt``."""
    cfg = SyntheticCrowdConfig(num_images=n, min_size=40, max_size=56, min_objects=3,
                               max_objects=5, seed=seed)
    names = []
    for i in range(n):
        scene = scene_for_index(cfg, i)
        h, w = scene.image.shape[:2]
        name = f's{seed}_{i}'
        write_sample(str(root), name, CrowdAnnotation(name + '.jpg', w, h, scene.points),
                     image_bgr=scene.image[..., ::-1].copy())
        names.append(name)
    write_split(str(root), 'all', names)
    return str(root) + '/'


def _dataset(root, pipeline=PIPELINE, **kw):
    return CrowdCountingDataset(data_root=root, ann_file='all.txt', pipeline=pipeline, **kw)


def _load_all(ds):
    return [ds[i]['gaussians'] for i in range(len(ds))]


def _exif_jpeg(rgb, orientation=6):
    """JPEG bytes of ``rgb`` tagged with an EXIF orientation (PIL)."""
    from PIL import Image
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format='JPEG', quality=95, exif=exif.tobytes())
    return buf.getvalue()


# ----------------------------------------------------------------------- the reader
def test_one_reader_gives_exactly_mmcvs_pixels(tmp_path):
    from mmcv.transforms import LoadImageFromFile
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)
    files = {'exif6.jpg': _exif_jpeg(rgb, 6), 'exif3.jpg': _exif_jpeg(rgb, 3)}
    cv2.imwrite(str(tmp_path / 'gray.png'), rgb[..., 0])
    cv2.imwrite(str(tmp_path / 'deep.png'), rgb.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / 'rgba.png'), np.dstack([rgb, rgb[..., :1]]))
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    loader = LoadImageFromFile()
    for name in ('exif6.jpg', 'exif3.jpg', 'gray.png', 'deep.png', 'rgba.png'):
        path = str(tmp_path / name)
        bgr, data = read_image_file(path)
        ref = loader(dict(img_path=path))['img']
        np.testing.assert_array_equal(bgr, ref, err_msg=name)
        assert data == open(path, 'rb').read()
        np.testing.assert_array_equal(read_image(path), ref[..., ::-1])
    # orientation 6 turns the stored 50x30 image to 30 wide, 50 high (as displayed)
    assert read_image(str(tmp_path / 'exif6.jpg')).shape == (50, 30, 3)
    raw = cv2.imdecode(np.frombuffer(files['exif6.jpg'], np.uint8),
                       cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert raw.shape == (30, 50, 3)


def test_exif_rotated_image_fits_on_the_pixels_the_loader_sees(tmp_path):
    """Non-square EXIF-6 image: fitted at its displayed size, loaded without error."""
    root = _crowd_root(tmp_path / 'd', n=1)
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (36, 60, 3), dtype=np.uint8)  # stored 60 x 36
    pts = np.array([[5.5, 40.5], [20.5, 10.5]], np.float32)  # in the displayed 36 x 60
    write_sample(root, 's0_0', CrowdAnnotation('s0_0.jpg', 36, 60, pts),
                 image_bytes=_exif_jpeg(rgb, 6))
    ds = _dataset(root)
    summary = precompute_dataset(ds, fit_cfg=FIT, progress=False)
    assert summary.fitted == ['images/s0_0.jpg'] and summary.ok
    cache = cache_groups(ds)[0].cache()
    assert cache.info(ds.get_data_info(0)['img_path'])['image_size'] == (60, 36)
    out = ds[0]
    assert out['img'].shape[:2] == (60, 36) and len(out['gaussians']) == 2


# ----------------------------------------------------------------------- image changed
def test_resized_or_replaced_image_is_refitted_not_skipped(tmp_path):
    root = _crowd_root(tmp_path / 'd')
    ds = _dataset(root)
    assert len(precompute_dataset(ds, fit_cfg=FIT, progress=False).fitted) == 4
    info = ds.get_data_info(1)
    img = cv2.imread(info['img_path'])
    cv2.imwrite(info['img_path'], cv2.resize(img, None, fx=2, fy=2))
    with pytest.raises(GaussianCacheError, match='content hash.*tools/precompute.py'):
        ds[1]
    summary = precompute_dataset(ds, fit_cfg=FIT, progress=False)
    assert summary.fitted == ['images/s0_1.jpg'] and len(summary.skipped) == 3
    assert 'content hash' in summary.refitted[0][1]
    assert ds[1]['gaussians'] is not None
    assert cache_groups(ds)[0].cache().info(info['img_path'])['image_size'] == (
        2 * img.shape[0], 2 * img.shape[1])


def test_truncated_jpeg_fails_naming_the_file(tmp_path):
    root = _crowd_root(tmp_path / 'd')
    ds = _dataset(root)
    path = ds.get_data_info(2)['img_path']
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])
    summary = precompute_dataset(ds, fit_cfg=FIT, progress=False)
    assert len(summary.fitted) == 3
    assert summary.failed == [('images/s0_2.jpg', f'{path}: truncated JPEG ({len(data) // 2} '
                               'bytes, no end-of-image marker): re-copy or re-convert the image')]


# ----------------------------------------------------------------------- wrappers
def test_repeat_dataset_fits_unique_images_once(tmp_path):
    root = _crowd_root(tmp_path / 'd')
    base = _dataset(root)
    rep = RepeatDataset(base, times=3)
    groups = cache_groups(rep)
    assert len(groups) == 1 and groups[0].data_root == root
    assert [len(s.points) for s in groups[0].samples] == [
        len(base.get_data_info(i)['points']) for i in range(4)]
    summary = precompute_dataset(rep, fit_cfg=FIT, progress=False)
    assert len(summary.fitted) == 4
    assert len(_load_all(rep)) == 12  # every repeated sample loads (points not doubled)
    # ClassBalancedDataset (needs category ids; one category here) unwraps the same way
    from mmengine.dataset import ClassBalancedDataset

    class OneClass(CrowdCountingDataset):
        def get_cat_ids(self, idx):
            return [0]

    balanced = ClassBalancedDataset(OneClass(data_root=root, ann_file='all.txt',
                                             pipeline=PIPELINE), oversample_thr=0.5)
    assert [s.img_path for s in cache_groups(balanced)[0].samples] == [
        base.get_data_info(i)['img_path'] for i in range(4)]
    assert len(precompute_dataset(balanced, fit_cfg=FIT, progress=False).skipped) == 4
    # MMEngine 0.10 wrappers take only leaf data sets; the same images twice in a
    # ConcatDataset (one object twice, or two objects over one root) are one cache
    twice = ConcatDataset([base, base, _dataset(root)])
    assert [len(g.samples) for g in cache_groups(twice)] == [4]
    assert len(precompute_dataset(twice, fit_cfg=FIT, progress=False).skipped) == 4


def test_concat_of_two_roots_caches_each_part_under_its_own_root(tmp_path):
    root_a = _crowd_root(tmp_path / 'a', n=2, seed=0)
    root_b = _crowd_root(tmp_path / 'b', n=3, seed=1)
    concat = ConcatDataset([_dataset(root_a), _dataset(root_b)])
    summary = precompute_dataset(concat, fit_cfg=FIT, progress=False)
    assert summary.ok and len(summary.fitted) == 5
    for root, names in ((root_a, ('s0_0', 's0_1')), (root_b, ('s1_0', 's1_1', 's1_2'))):
        cached = sorted(os.listdir(osp.join(root, 'gst_cache', 'images')))
        assert cached == [f'{n}.jpg.h5' for n in names]
    assert len(_load_all(concat)) == 5
    with pytest.raises(ValueError, match='several data roots'):
        precompute_dataset(concat, str(tmp_path / 'one'), fit_cfg=FIT, progress=False)


# ----------------------------------------------------------------------- annotations
def test_missing_points_key_is_an_error_naming_the_file(tmp_path):
    root = _crowd_root(tmp_path / 'd', n=3)
    ann = osp.join(root, 'annotations', 's0_1.json')
    d = json.load(open(ann))
    d['point'] = d.pop('points')
    json.dump(d, open(ann, 'w'))
    with pytest.raises(LayoutError, match=r"s0_1.json: no 'points' key"):
        _dataset(root)
    d['points'] = []
    json.dump(d, open(ann, 'w'))
    assert len(_dataset(root).get_data_info(1)['points']) == 0


def test_plain_path_mode_validates_like_the_data_set(tmp_path, capsys, load_tool):
    tool = load_tool('precompute')
    root = _crowd_root(tmp_path / 'd', n=2)
    img_dir, ann_dir = osp.join(root, 'images'), osp.join(root, 'annotations')
    args = ['--img-dir', img_dir, '--ann-dir', ann_dir, '--cache-dir', str(tmp_path / 'c'),
            '--iterations', '3', '--no-progress']
    assert tool.main(args) == 0
    ann = osp.join(ann_dir, 's0_0.json')
    d = json.load(open(ann))
    d['points'] = [[1.0, 2.0, 1.0]]
    json.dump(d, open(ann, 'w'))
    assert tool.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 's0_0.json' in err and '(N, 2)' in err
    del d['points']
    json.dump(d, open(ann, 'w'))
    assert tool.main(args) == 2
    assert "no 'points' key" in capsys.readouterr().err


# ----------------------------------------------------------------------- fit settings
def test_fit_settings_key_covers_what_changes_the_result():
    base = fit_settings_key(fit_settings())
    changed = [dict(mode='reference'), dict(compositing='alpha'), dict(iterations=7),
               dict(background='median'), dict(init='reference'), dict(lr=0.02),
               dict(seed=1), dict(drop_outside=True)]
    keys = [fit_settings_key(fit_settings(**c)) for c in changed]
    assert base not in keys and len(set(keys)) == len(keys)
    # device, name and the renderer's window slack do not change the Gaussians
    assert fit_settings_key(fit_settings(device='cpu', window_margin=2.0)) == base
    assert fit_settings_key(fit_settings(backend='auto')) == \
        fit_settings_key(fit_settings(backend='torch'))
    with pytest.raises(TypeError, match='iteration'):
        fit_settings(iteration=5)


def test_changed_fit_settings_make_the_cache_stale(tmp_path):
    root = _crowd_root(tmp_path / 'd', n=2)
    ds = _dataset(root)
    precompute_dataset(ds, fit_cfg=FIT, progress=False)
    strict = _dataset(root, pipeline=[dict(type='LoadImageFromFile'),
                                      dict(type='LoadCrowdGaussians', fit_cfg=dict(FIT))])
    assert len(_load_all(strict)) == 2
    summary = precompute_dataset(ds, fit_cfg=dict(iterations=6), progress=False)
    assert len(summary.fitted) == 2 and all('other fit settings' in r for _, r in summary.refitted)
    with pytest.raises(GaussianCacheError, match='other fit settings'):
        strict[0]
    assert len(precompute_dataset(ds, fit_cfg=dict(iterations=6), progress=False).skipped) == 2


def test_auto_backend_is_one_compositing_and_reports_a_broken_gsplat(monkeypatch, caplog):
    import importlib
    import logging
    import types

    import torch
    R = importlib.import_module('gst_mm.splatting.render')  # the module, not render()
    s = fit_settings()
    assert (s['backend'], s['compositing']) == ('torch', 'sum')
    R.gsplat_status.cache_clear()
    R._ANNOUNCED.clear()
    with caplog.at_level(logging.INFO, logger='gst_mm'):
        assert R.resolve_backend('auto', 'sum') == 'torch'
        assert R.resolve_backend('auto', 'sum') == 'torch'
    assert sum("backend 'auto' -> torch" in r.message for r in caplog.records) == 1
    # CUDA present but gsplat broken: alpha fits fall back to torch, with the reason
    broken = types.ModuleType('gsplat')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setitem(sys.modules, 'gsplat', broken)
    R.gsplat_status.cache_clear()
    try:
        ok, reason = R.gsplat_status()
        assert not ok and 'gsplat failed to load (ImportError' in reason
        with pytest.warns(RuntimeWarning, match='gsplat failed to load'):
            assert R.resolve_backend('auto', 'alpha') == 'torch'
    finally:
        R.gsplat_status.cache_clear()
        R._ANNOUNCED.clear()


# ----------------------------------------------------------------------- --check
def test_check_reports_every_state_and_writes_nothing(tmp_path, capsys, load_tool):
    tool = load_tool('precompute')
    root = _crowd_root(tmp_path / 'd', n=5)
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        f'train_dataloader = dict(dataset=dict(type="CrowdCountingDataset", '
        f'data_root={root!r}, ann_file="all.txt", pipeline=[]))\n'
        f'custom_hooks = [dict(type="GSTPrecomputeHook", fit_cfg=dict(iterations=5))]\n')
    assert tool.main([str(cfg), '--check']) == 1
    assert '5 images: 0 valid, 5 missing' in capsys.readouterr().out
    assert tool.main([str(cfg), '--no-progress']) == 0
    capsys.readouterr()
    assert tool.main([str(cfg), '--check']) == 0
    assert '5 images: 5 valid, 0 missing, 0 stale, 0 corrupt' in capsys.readouterr().out
    ds = _dataset(root)
    paths = [ds.get_data_info(i)['img_path'] for i in range(5)]
    cache = cache_groups(ds)[0].cache()
    ann = osp.join(root, 'annotations', 's0_0.json')       # points moved -> stale (points)
    d = json.load(open(ann))
    d['points'][0][0] += 1.0
    json.dump(d, open(ann, 'w'))
    entry = cache.path_for(paths[1])                           # half an entry -> corrupt
    open(entry, 'r+b').truncate(os.path.getsize(entry) // 2)
    os.remove(cache.path_for(paths[2]))                        # -> missing
    shutil.move(paths[3], str(tmp_path / 'away.jpg'))          # image gone -> no image
    before = {p: os.stat(osp.join(dp, p)).st_mtime_ns
              for dp, _, names in os.walk(root) for p in names}
    report = check_dataset(_dataset(root), fit_cfg=dict(iterations=5))
    assert report.counts == {'stale': 1, 'corrupt': 1, 'missing': 1, 'no image': 1, 'valid': 1}
    assert report.stale_kinds == {'points': 1}
    assert report.disk_bytes > 0 and not report.ok
    assert {p: os.stat(osp.join(dp, p)).st_mtime_ns
            for dp, _, names in os.walk(root) for p in names} == before
    assert check_dataset(_dataset(root), fit_cfg=dict(iterations=9)).stale_kinds == {
        'points': 1, 'settings': 1}
    assert tool.main([str(cfg), '--check']) == 1
    out = capsys.readouterr().out
    assert '1 valid, 1 missing, 1 stale, 1 corrupt, 1 no image (stale by points: 1)' in out
    assert 'stale (points)' in out and 'MiB in' in out
