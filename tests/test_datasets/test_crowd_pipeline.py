"""Crowd data set and transforms: annotations and Gaussians stay aligned with the image."""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip('mmpose')

from mmengine.dataset import Compose  # noqa: E402

import gst_mm  # noqa: E402,F401
from gst_mm.datasets import CrowdCountingDataset  # noqa: E402
from gst_mm.datasets.layout import LayoutError  # noqa: E402
from gst_mm.datasets.synthetic_crowd import SyntheticCrowdConfig, write_dataset  # noqa: E402
from gst_mm.datasets.transforms import (  # noqa: E402
    CrowdRandomCrop,
    LoadCrowdGaussians,
    LoadTransportKernel,
    PackCountingInputs,
)
from gst_mm.splatting import (  # noqa: E402
    GaussianCache,
    GaussianCacheError,
    Gaussians2D,
    file_sha1,
    render,
)
from gst_mm.transport import build_kernel  # noqa: E402


@pytest.fixture(autouse=True)
def _gst_scope():
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope('gst_mm'):
        yield


def _rendered_sample(seed=0, h=96, w=128, n=12):
    """An image that *is* the splatting of known Gaussians on black (BGR uint8)."""
    rng = np.random.default_rng(seed)
    means = np.stack([rng.uniform(8, w - 8, n), rng.uniform(8, h - 8, n)], 1)
    stds = rng.uniform(2.5, 5.0, (n, 2))
    angles = rng.uniform(0, np.pi, n)
    colors = rng.uniform(0.3, 1.0, (n, 3))
    g = Gaussians2D.from_scales_angles(means, stds, angles, colors)
    img = render(g, h, w, backend='torch', compositing='sum').clamp(0, 1).numpy()
    bgr = np.ascontiguousarray((img[..., ::-1] * 255).round().astype(np.uint8))
    results = dict(img=bgr, img_path=f'synthetic_{seed}.png', ori_shape=(h, w),
                   img_shape=(h, w), points=means.astype(np.float32),
                   gt_covariances=g.covariances.numpy(), ori_count=n)
    return results, g


def _render_back(gaussians, colors, shape):
    g = Gaussians2D(gaussians.means, gaussians.covariances, colors)
    img = render(g, shape[0], shape[1], backend='torch', compositing='sum').clamp(0, 1)
    return (img.numpy()[..., ::-1] * 255)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_augmentations_keep_gaussians_on_the_image(seed):
    """Resize + crop + flip + greyscale moved the image; re-rendering the moved
    Gaussians reproduces the moved image."""
    results, g0 = _rendered_sample(seed)
    np.random.seed(seed)
    pipeline = Compose([
        dict(type='LoadCrowdGaussians', source='gt'),
        dict(type='CrowdRandomResize', scale_range=(0.8, 1.2)),
        dict(type='CrowdRandomCrop', crop_size=(64, 80), min_inside=0.0),
        dict(type='CrowdRandomFlip', prob=1.0 if seed != 1 else 0.0),
    ])
    out = pipeline(results)
    assert out['img'].shape[:2] == (64, 80) == tuple(out['img_shape'])
    keep_colors = g0.colors  # min_inside=0 keeps every point
    assert len(out['gaussians']) == len(g0)
    recon = _render_back(out['gaussians'], keep_colors, out['img'].shape[:2])
    err = np.abs(recon - out['img'].astype(np.float64))
    assert err.mean() < 2.0, err.mean()       # grey levels, interpolation only
    assert np.corrcoef(recon.ravel(), out['img'].ravel())[0, 1] > 0.99
    # the points are the Gaussians' means, and both equal the composed affine of the
    # original annotations (independent of the step-by-step bookkeeping)
    m = out['gst_affine']
    expected = _rendered_sample(seed)[0]['points'] @ m[:2, :2].T + m[:2, 2]
    np.testing.assert_allclose(out['points'], expected, atol=1e-3)
    np.testing.assert_allclose(out['gaussians'].means.numpy(), expected, atol=1e-3)
    cov = np.einsum('ij,njk,lk->nil', m[:2, :2], g0.covariances.numpy(), m[:2, :2])
    np.testing.assert_allclose(out['gaussians'].covariances.numpy(), cov, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out['gt_covariances'], cov, rtol=1e-4, atol=1e-4)


def test_a_flipped_sample_is_misaligned_without_the_bookkeeping():
    """Guard for the test above: the comparison does detect a wrong geometry."""
    results, g0 = _rendered_sample(0)
    out = Compose([dict(type='LoadCrowdGaussians', source='gt'),
                   dict(type='CrowdRandomFlip', prob=1.0)])(results)
    wrong = _render_back(g0, g0.colors, out['img'].shape[:2])  # unflipped Gaussians
    assert np.abs(wrong - out['img']).mean() > 4 * np.abs(
        _render_back(out['gaussians'], g0.colors, out['img'].shape[:2]) - out['img']).mean()


def test_crop_targets_follow_the_30_percent_rule():
    """Two points 40 px apart: neighbourhood boxes of side 40 (distance to the
    only neighbour); a 32x32 crop at the origin keeps 56.25 % of the first box
    and 3.75 % of the second, which is dropped."""
    img = np.zeros((32, 32, 3), np.uint8)
    pts = np.array([[10.0, 10.0], [50.0, 10.0]], np.float32)
    results = dict(img=img, points=pts, img_shape=(32, 32), img_path='two_points')
    out = CrowdRandomCrop(32, min_inside=0.3).transform(results)
    np.testing.assert_allclose(out['points'], [[10.0, 10.0]])
    np.testing.assert_allclose(out['point_targets'], [30 * 30 / 1600.0], rtol=1e-6)
    # with a lower threshold the second point stays with its fractional mass
    results = dict(img=img, points=pts, img_shape=(32, 32), img_path='two_points')
    out = CrowdRandomCrop(32, min_inside=0.01).transform(results)
    np.testing.assert_allclose(out['point_targets'], [0.5625, 2 * 30 / 1600.0], rtol=1e-6)


def test_kernel_transform_and_pack(tmp_path):
    results, g0 = _rendered_sample(3)
    np.random.seed(3)
    out = Compose([
        dict(type='LoadCrowdGaussians', source='gt'),
        dict(type='CrowdRandomResize', scale_range=(0.9, 1.1)),
        dict(type='CrowdRandomCrop', crop_size=64, min_inside=0.3),
        dict(type='LoadTransportKernel', stride=8),
        dict(type='PackCountingInputs'),
    ])(results)
    ds = out['data_samples']
    kernel = ds.transport_kernel
    assert kernel.grid_shape == (8, 8) and kernel.num_points == len(ds.gt_points)
    # equals the kernel of the originals moved by the composed affine, kept points only
    m = ds.metainfo['gst_affine']
    orig_pts = _rendered_sample(3)[0]['points']
    moved = orig_pts @ m[:2, :2].T + m[:2, 2]
    keep = [int(np.argmin(np.linalg.norm(moved - p.numpy(), axis=1))) for p in ds.gt_points]
    ref = build_kernel(moved[keep], g0.transform(
        torch.as_tensor(m[:2, :2], dtype=torch.float32),
        torch.as_tensor(m[:2, 2], dtype=torch.float32)).covariances[keep], (8, 8), 8)
    torch.testing.assert_close(kernel.dense(), ref.dense(), atol=1e-5, rtol=1e-4)
    # pack
    assert out['inputs'].shape == (3, 64, 64) and out['inputs'].dtype == torch.uint8
    assert ds.gt_count == pytest.approx(float(ds.point_targets.sum()))
    assert ds.point_targets.max() <= 1.0 and ds.point_targets.min() >= 0.3 - 1e-6
    # test-time pack: the count is that of the original annotations
    test = PackCountingInputs().transform(_rendered_sample(3)[0])
    assert test['data_samples'].gt_count == 12.0
    assert torch.equal(test['data_samples'].point_targets, torch.ones(12))


def _tiny_dataset(root):
    cfg = SyntheticCrowdConfig(num_images=4, min_size=64, max_size=80, min_objects=3,
                               max_objects=8, split_fractions=(0.5, 0.25, 0.25), seed=5)
    write_dataset(str(root), cfg)
    return str(root)


def test_dataset_reads_the_layout(tmp_path):
    root = _tiny_dataset(tmp_path / 'crowd')
    ds = CrowdCountingDataset(data_root=root, ann_file='train.txt', pipeline=[])
    assert len(ds) == 2
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        with open(osp.join(root, 'annotations', info['img_id'] + '.json')) as f:
            ann = json.load(f)
        np.testing.assert_allclose(info['points'], np.asarray(ann['points']).reshape(-1, 2),
                                   atol=1e-5)
        assert info['ori_count'] == len(ann['points'])
        assert info['gt_covariances'].shape == (len(ann['points']), 2, 2)
        assert osp.isfile(info['img_path'])


def test_dataset_errors_name_the_file(tmp_path):
    root = _tiny_dataset(tmp_path / 'crowd')
    name = open(osp.join(root, 'train.txt')).read().split()[0]
    ann_path = osp.join(root, 'annotations', name + '.json')
    ann = json.load(open(ann_path))
    ann['points'].append([ann['width'] + 50.0, 3.0])
    ann['covariances'].append([[4.0, 0.0], [0.0, 4.0]])
    json.dump(ann, open(ann_path, 'w'))
    with pytest.raises(LayoutError, match=name + '.json'):
        CrowdCountingDataset(data_root=root, ann_file='train.txt', pipeline=[])
    with open(ann_path, 'w') as f:
        f.write('{not json')
    with pytest.raises(LayoutError, match=name + '.json'):
        CrowdCountingDataset(data_root=root, ann_file='train.txt', pipeline=[])


def test_gst_plan_reads_the_cache_and_rejects_stale_entries(tmp_path):
    root = _tiny_dataset(tmp_path / 'crowd')
    ds = CrowdCountingDataset(data_root=root, ann_file='train.txt', pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadCrowdGaussians', cache_dir=str(tmp_path / 'cache'), data_root=root)])
    info = ds.get_data_info(0)
    cache = GaussianCache(str(tmp_path / 'cache'), data_root=root)
    with pytest.raises(GaussianCacheError, match=osp.basename(info['img_path'])):
        ds[0]
    n = len(info['points'])
    cov = np.tile(np.eye(2, dtype=np.float32) * 9.0, (n, 1, 1))
    sha1 = file_sha1(info['img_path'])
    cache.save(info['img_path'], Gaussians2D(info['points'], cov), info['points'],
               (info['height'], info['width']), image_sha1=sha1)
    out = ds[0]
    np.testing.assert_allclose(out['gaussians'].covariances.numpy(), cov)
    # annotations changed after the fit -> stale, named
    cache.save(info['img_path'], Gaussians2D(info['points'][:1], cov[:1]), info['points'][:1],
               (info['height'], info['width']), image_sha1=sha1)
    with pytest.raises(GaussianCacheError, match='fitted for 1 points'):
        ds[0]
    # the image file replaced after the fit (same size, other pixels) -> stale by content
    cache.save(info['img_path'], Gaussians2D(info['points'], cov), info['points'],
               (info['height'], info['width']), image_sha1=sha1)
    ds[0]
    img = cv2.imread(info['img_path'])
    cv2.imwrite(info['img_path'], 255 - img)
    with pytest.raises(GaussianCacheError, match='content hash'):
        ds[0]


def test_gaussians_must_be_loaded_before_geometry():
    results, _ = _rendered_sample(0)
    results['gst_affine'] = np.diag([2.0, 2.0, 1.0])
    with pytest.raises(RuntimeError, match='before the geometric'):
        LoadCrowdGaussians(source='heuristic').transform(results)
    with pytest.raises(KeyError, match='LoadCrowdGaussians first'):
        LoadTransportKernel().transform(dict(img=np.zeros((8, 8, 3), np.uint8)))


def _single_blob(h=72, w=90):
    """One blob on black at a known place with a known covariance (BGR uint8)."""
    cov = np.array([[14.0, 5.0], [5.0, 8.0]])
    mean = np.array([37.3, 30.6])
    canvas = np.zeros((h, w, 1))
    from gst_mm.splatting.synthetic_draw import draw_gaussian_blob
    draw_gaussian_blob(canvas, mean, cov, (250.0, ), 1.0, 5.0)
    img = np.repeat(canvas.round().astype(np.uint8), 3, axis=2)
    return dict(img=img, img_path='blob', ori_shape=(h, w), img_shape=(h, w),
                points=mean[None].astype(np.float32), gt_covariances=cov[None].astype(np.float32),
                ori_count=1)


@pytest.mark.parametrize('step', [
    dict(type='CrowdRandomResize', scale_range=(1.3, 1.3)),
    dict(type='CrowdRandomResize', scale_range=(0.7, 0.7)),
    dict(type='CrowdResize', scale_factor=1.5),
    dict(type='CrowdRandomCrop', crop_size=(60, 70)),
    dict(type='CrowdRandomFlip', prob=1.0),
    dict(type='RandomGrayscale', prob=1.0),
])
def test_each_transform_matches_the_refitted_blob(step):
    """Second moments of the transformed image (a numerical refit of the blob)
    equal the transformed Gaussian's mean and covariance."""
    np.random.seed(0)
    out = Compose([dict(type='LoadCrowdGaussians', source='gt'), step])(_single_blob())
    img = out['img'][..., 1].astype(np.float64)
    h, w = img.shape
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    mx, my = (img * xs).sum() / img.sum(), (img * ys).sum() / img.sum()
    dx, dy = xs - mx, ys - my
    cov = np.array([[(img * dx * dx).sum(), (img * dx * dy).sum()],
                    [(img * dx * dy).sum(), (img * dy * dy).sum()]]) / img.sum()
    g = out['gaussians']
    np.testing.assert_allclose([mx, my], g.means.numpy()[0], atol=0.1)
    np.testing.assert_allclose(out['points'][0], g.means.numpy()[0], atol=1e-4)
    np.testing.assert_allclose(cov, g.covariances.numpy()[0], rtol=0.05, atol=0.3)
    if step['type'] == 'RandomGrayscale':
        assert (out['img'][..., 0] == out['img'][..., 2]).all()
