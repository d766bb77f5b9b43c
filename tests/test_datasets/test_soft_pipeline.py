"""The soft plan in the crowd pipeline: every component moves with the image, the
kernel transform builds the mixture kernel, and the precompute fits the plan the
pipeline reads into its own cache folder."""
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('mmpose')

from mmengine.dataset import Compose  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

import gst_mm  # noqa: E402,F401
from gst_mm.datasets import CrowdCountingDataset  # noqa: E402
from gst_mm.datasets.synthetic_crowd import SyntheticCrowdConfig, write_dataset  # noqa: E402
from gst_mm.engine import precompute_dataset  # noqa: E402
from gst_mm.engine.precompute import resolve_fit_cfg  # noqa: E402
from gst_mm.splatting import (  # noqa: E402
    GaussianCache,
    GaussianCacheError,
    Gaussians2D,
    default_cache_dir,
    file_sha1,
)
from gst_mm.splatting.soft_gaussians import SoftGaussians  # noqa: E402
from gst_mm.transport.soft_kernel import build_soft_kernel  # noqa: E402


@pytest.fixture(autouse=True)
def _gst_scope():
    with DefaultScope.overwrite_default_scope('gst_mm'):
        yield


def _tiny(root):
    cfg = SyntheticCrowdConfig(num_images=4, min_size=64, max_size=80, min_objects=3,
                               max_objects=8, split_fractions=(0.5, 0.25, 0.25), seed=5)
    write_dataset(str(root), cfg)
    return str(root)


def _soft_entry(points, rng):
    """Two components per point (one on it, one 6 px below), weights 0.4 / 0.6."""
    n = len(points)
    anchors = Gaussians2D(points, np.tile(np.eye(2, dtype=np.float32) * 9, (n, 1, 1)))
    means = np.concatenate([points, points + [0.0, 6.0]]).astype(np.float32)
    a = rng.normal(size=(2 * n, 2, 2))
    cov = (a @ a.transpose(0, 2, 1) * 4 + np.eye(2) * 9).astype(np.float32)
    comps = Gaussians2D(means, cov)
    return SoftGaussians(comps, anchors, np.arange(2 * n), np.tile(np.arange(n), 2),
                         np.concatenate([np.full(n, 0.4), np.full(n, 0.6)]))


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_augmentations_move_every_component_and_the_kernel_follows(tmp_path, seed):
    root = _tiny(tmp_path / 'crowd')
    ds = CrowdCountingDataset(data_root=root, ann_file='train.txt', pipeline=[])
    info = ds.get_data_info(0)
    rng = np.random.default_rng(seed)
    sg = _soft_entry(info['points'], rng)
    cache = GaussianCache(default_cache_dir(root, 'soft'), data_root=root)
    cache.save(info['img_path'], sg, info['points'], (info['height'], info['width']),
               image_sha1=file_sha1(info['img_path']))
    np.random.seed(seed)
    pipeline = Compose([
        dict(type='LoadImageFromFile'),
        dict(type='LoadCrowdGaussians', plan='soft'),
        dict(type='CrowdRandomResize', scale_range=(0.8, 1.25)),
        dict(type='CrowdRandomCrop', crop_size=48, min_inside=0.3),
        dict(type='CrowdRandomFlip', prob=0.5),
        dict(type='LoadTransportKernel', stride=4),
        dict(type='PackCountingInputs'),
    ])
    out = pipeline(dict(info))
    sample = out['data_samples']
    m = sample.metainfo['gst_affine']
    a = torch.as_tensor(m[:2, :2], dtype=torch.float32)
    t = torch.as_tensor(m[:2, 2], dtype=torch.float32)
    # all M components moved by the composed affine (also those of dropped points)
    moved = sg.components.transform(a, t)
    # which original points survived the crop: match the moved points
    orig = info['points'] @ m[:2, :2].T + m[:2, 2]
    keep = [int(np.argmin(np.linalg.norm(orig - p.numpy(), axis=1))) for p in sample.gt_points]
    ref_sub = sg.subset(keep)
    ref = build_soft_kernel(moved.means, moved.covariances, ref_sub.comp, ref_sub.pen,
                            ref_sub.weight, len(keep), (12, 12), 4)
    kernel = sample.transport_kernel
    assert kernel.num_points == len(keep)
    torch.testing.assert_close(kernel.dense(), ref.dense(), atol=1e-5, rtol=1e-4)


def test_plans_read_their_own_folders_and_reject_the_other_plan(tmp_path):
    root = _tiny(tmp_path / 'crowd')
    ds = CrowdCountingDataset(data_root=root, ann_file='train.txt', pipeline=[])
    info = ds.get_data_info(0)
    soft_dir = default_cache_dir(root, 'soft')
    assert soft_dir == osp.join(root, 'gst_cache_soft') != default_cache_dir(root)
    cache = GaussianCache(soft_dir, data_root=root)
    sg = _soft_entry(info['points'], np.random.default_rng(0))
    cache.save(info['img_path'], sg.anchors, info['points'], (info['height'], info['width']),
               image_sha1=file_sha1(info['img_path']))
    load = Compose([dict(type='LoadImageFromFile'), dict(type='LoadCrowdGaussians', plan='soft')])
    with pytest.raises(GaussianCacheError, match="plan 'soft' found a hard-plan"):
        load(dict(info))


def test_precompute_fits_the_plan_the_pipeline_reads(tmp_path):
    root = _tiny(tmp_path / 'crowd')
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadCrowdGaussians', plan='soft')]
    ds = CrowdCountingDataset(data_root=root, ann_file='train.txt', pipeline=pipeline)
    fit_cfg = resolve_fit_cfg(ds, dict(iterations=40, soft=dict(refine_iters=10)))
    assert fit_cfg['plan'] == 'soft'
    summary = precompute_dataset(ds, fit_cfg=fit_cfg, progress=False)
    assert summary.ok and len(summary.fitted) == 2
    out = ds[0]
    assert isinstance(out['gaussians'], SoftGaussians)
    assert len(out['gaussians']) == len(out['points'])
    # the hard plan's folder is untouched; a conflicting fit_cfg is one clear error
    assert not osp.exists(default_cache_dir(root))
    with pytest.raises(ValueError, match="fit_cfg plan 'hard' but the pipeline reads"):
        resolve_fit_cfg(ds, dict(plan='hard'))
    hard = CrowdCountingDataset(data_root=root, ann_file='train.txt', pipeline=[
        dict(type='LoadImageFromFile'), dict(type='LoadCrowdGaussians', source='fit')])
    with pytest.raises(ValueError, match='soft-plan settings'):
        resolve_fit_cfg(hard, dict(soft=dict(temperature=0.5)))
    assert resolve_fit_cfg(hard, dict(iterations=5)) == dict(iterations=5)
