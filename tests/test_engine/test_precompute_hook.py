"""GSTPrecomputeHook and tools/precompute.py: fit what is missing, skip what is cached."""
import json
import os
import os.path as osp
import types

import cv2
import numpy as np
import pytest

pytest.importorskip('mmpose')

from mmengine.dataset import BaseDataset  # noqa: E402
from mmengine.runner import BaseLoop  # noqa: E402

from gst_mm.engine import GSTPrecomputeHook, collect_gaussian_samples  # noqa: E402
from gst_mm.splatting import GaussianCache  # noqa: E402
from gst_mm.splatting.synthetic import make_scene  # noqa: E402

FIT_CFG = dict(iterations=15, backend='torch')


def _write_scenes(root, n=3, size=48):
    """n tiny synthetic images + crowd-layout json annotations under root."""
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    infos = []
    for i in range(n):
        scene = make_scene(size, size, 3, std_range=(2.0, 4.0), seed=i)
        img_path = osp.join(root, 'images', f'img_{i}.png')
        cv2.imwrite(img_path, scene.image[..., ::-1])
        with open(osp.join(root, 'annotations', f'img_{i}.json'), 'w') as f:
            json.dump(dict(points=scene.points.tolist()), f)
        infos.append(dict(img_path=img_path, points=scene.points.astype(np.float32)))
    return infos


class _PointsDataset(BaseDataset):

    def __init__(self, infos, data_root):
        self._infos = infos
        super().__init__(data_root=data_root, serialize_data=False, lazy_init=True)

    def load_data_list(self):
        return [dict(info) for info in self._infos]


class _Loop(BaseLoop):

    def run(self):  # pragma: no cover - never run here
        pass


def _fake_runner(dataset):
    runner = types.SimpleNamespace()
    loader = types.SimpleNamespace(dataset=dataset)
    loop = _Loop.__new__(_Loop)
    loop.dataloader = loader
    runner._train_loop = loop
    runner._val_loop = None
    runner._test_loop = None
    return runner


def test_hook_fits_missing_then_skips(tmp_path):
    data_root = str(tmp_path / 'data')
    infos = _write_scenes(data_root)
    cache_dir = str(tmp_path / 'cache')
    hook = GSTPrecomputeHook(cache_dir=cache_dir, fit_cfg=FIT_CFG)
    dataset = _PointsDataset(infos, data_root)
    runner = _fake_runner(dataset)

    # one image already cached by an earlier (killed) run: it must not be refitted
    cache = GaussianCache(cache_dir, data_root=data_root)
    from gst_mm.splatting.precompute import GaussianSample, fit_missing
    first = GaussianSample('images/img_0.png', infos[0]['img_path'], infos[0]['points'])
    assert fit_missing([first], cache, FIT_CFG, progress=False).fitted == ['images/img_0.png']
    mtime0 = os.stat(cache.path_for(infos[0]['img_path'])).st_mtime_ns

    hook.before_run(runner)
    for info in infos:
        assert cache.is_valid(info['img_path'], info['points'])
        g = cache.load(info['img_path'], info['points'])
        np.testing.assert_allclose(g.means.numpy(), info['points'], atol=1e-4)
    assert os.stat(cache.path_for(infos[0]['img_path'])).st_mtime_ns == mtime0
    # cache files mirror the data layout under the cache root
    assert cache.path_for(infos[1]['img_path']) == osp.join(cache_dir, 'images', 'img_1.png.h5')
    assert osp.isfile(osp.join(cache_dir, 'images', 'img_1.png.h5'))

    # annotations changed -> stale cache detected and refitted by the next run
    infos[1]['points'] = infos[1]['points'][:2]
    dataset2 = _PointsDataset(infos, data_root)
    assert not cache.is_valid(infos[1]['img_path'], infos[1]['points'])
    hook.before_run(_fake_runner(dataset2))
    assert len(cache.load(infos[1]['img_path'], infos[1]['points'])) == 2


def test_hook_reports_bad_images_after_fitting_the_rest(tmp_path):
    data_root = str(tmp_path / 'data')
    infos = _write_scenes(data_root, n=2)
    bad = osp.join(data_root, 'images', 'broken.png')
    with open(bad, 'wb') as f:
        f.write(b'not an image')
    infos.append(dict(img_path=bad, points=np.array([[3.0, 3.0]], np.float32)))
    cache_dir = str(tmp_path / 'cache')
    hook = GSTPrecomputeHook(cache_dir=cache_dir, fit_cfg=FIT_CFG)
    with pytest.raises(RuntimeError, match='broken.png'):
        hook.before_run(_fake_runner(_PointsDataset(infos, data_root)))
    cache = GaussianCache(cache_dir, data_root=data_root)
    assert all(cache.is_valid(i['img_path'], i['points']) for i in infos[:2])
    # with allow_failures the run goes on
    GSTPrecomputeHook(cache_dir=cache_dir, fit_cfg=FIT_CFG, allow_failures=True).before_run(
        _fake_runner(_PointsDataset(infos, data_root)))


def test_collect_samples_from_mmpose_mpii(mpii_sample_dir):
    from mmpose.datasets import MpiiDataset

    ds = MpiiDataset(ann_file='annotations/mpii_sample.json', data_root=mpii_sample_dir,
                     data_prefix=dict(img='images/'), test_mode=False)
    samples, data_root = collect_gaussian_samples(ds)
    with open(osp.join(mpii_sample_dir, 'annotations', 'mpii_sample.json')) as f:
        raw = json.load(f)
    assert data_root == mpii_sample_dir
    assert len(samples) == len({r['image'] for r in raw}) == 5
    by_image = {osp.basename(s.img_path): s for s in samples}
    for r in raw:
        s = by_image[r['image']]
        vis = np.asarray(r['joints_vis']) > 0
        joints = np.asarray(r['joints'], np.float32)[vis]
        # every visible joint of the instance is pinned, moved from MMPose's pixel
        # indices to the splatting convention (pixel centres at +0.5)
        assert s.points.shape == joints.shape
        np.testing.assert_allclose(s.points, joints + 0.5, atol=1e-3)
        assert s.key == osp.join('images', r['image'])




def test_precompute_tool_plain_paths_and_shards(tmp_path, capsys, load_tool):
    tool = load_tool('precompute')
    data_root = str(tmp_path / 'data')
    infos = _write_scenes(data_root, n=3)
    cache_dir = str(tmp_path / 'cache')
    base = ['--img-dir', osp.join(data_root, 'images'), '--ann-dir',
            osp.join(data_root, 'annotations'), '--cache-dir', cache_dir,
            '--iterations', '10', '--no-progress']
    # shard 1 of 2 fits only the second image (interleaved shards)
    assert tool.main(base + ['--shard', '1/2']) == 0
    cache = GaussianCache(cache_dir, data_root=data_root)
    valid = [cache.is_valid(i['img_path'], i['points']) for i in infos]
    assert valid == [False, True, False]
    # the full run fits the rest and skips what is cached
    assert tool.main(base) == 0
    out = capsys.readouterr().out
    assert '2 fitted, 1 skipped' in out
    assert all(cache.is_valid(i['img_path'], i['points']) for i in infos)
    with pytest.raises(SystemExit):
        tool.main(base + ['--shard', '2/2'])
