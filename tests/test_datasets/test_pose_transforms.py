"""LoadPoseTransportKernel: kernels follow MMPose's flip + bbox transform + affine.

The cache holds synthetic anisotropic Gaussians pinned at every visible joint of
the sample (independent of the fit), so the geometry is tested exactly. Like a
real pose cache it stores the means in the splatting convention, at MMPose
keypoint + 0.5 px (written here by hand, not through the precompute code), and
the pipeline matches them with ``match_tol`` = 0.25 px: a missing, doubled or
negated shift on either side (precompute +0.5, transform -0.5) moves a match by
>= 0.7 px and fails these tests.
"""
import copy
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from gst_mm.datasets.transforms.pose_transforms import (
    COST_KEY,
    KERNEL_KEY,
    LoadPoseTransportKernel,
)

STRIDE = 4
#: the pose cache convention: cached mean = MMPose keypoint (pixel index) + 0.5 px
SHIFT = 0.5
#: tight matching, so that a pixel-convention error cannot hide inside it
MATCH_TOL = 0.25
CODEC = dict(type='MSRAHeatmap', input_size=(256, 256), heatmap_size=(64, 64), sigma=2)


def _pipeline(cache_dir, data_root, flip_prob=1.0, rotate=True):
    return [
        dict(type='LoadImage'),
        dict(type='GetBBoxCenterScale'),
        dict(type='RandomFlip', direction='horizontal', prob=flip_prob),
        dict(type='RandomBBoxTransform', shift_prob=1.0, scale_prob=1.0,
             rotate_prob=1.0 if rotate else 0.0),
        dict(type='TopdownAffine', input_size=CODEC['input_size']),
        dict(type='GenerateTarget', encoder=CODEC),
        dict(type='gst_mm.LoadPoseTransportKernel', cache_dir=cache_dir,
             data_root=data_root, stride=STRIDE, match_tol=MATCH_TOL),
        dict(type='PackPoseInputs', pack_transformed=True),
    ]


def _dataset(mpii, pipeline):
    from mmpose.datasets import MpiiDataset
    return MpiiDataset(data_root=mpii['data_root'], ann_file=mpii['ann_file'],
                       data_prefix=dict(img=mpii['img_prefix']), pipeline=pipeline)


@pytest.fixture(scope='module')
def synthetic_cache(mpii, tmp_path_factory):
    """A Gaussian cache with random anisotropic Gaussians at all visible joints
    (means at keypoint + 0.5 px, the precompute's convention)."""
    from gst_mm.splatting import GaussianCache, Gaussians2D, file_sha1
    cache_dir = str(tmp_path_factory.mktemp('gst_cache'))
    ds = _dataset(mpii, [])
    data_root = mpii['data_root']
    cache = GaussianCache(cache_dir, data_root=data_root)
    rng = np.random.default_rng(0)
    for i in range(len(ds)):  # one instance per image in the sample
        info = ds.get_data_info(i)
        vis = np.asarray(info['keypoints_visible']).reshape(-1) > 0
        points = np.asarray(info['keypoints'], np.float32).reshape(-1, 2)[vis]
        n = len(points)
        scales = rng.uniform(6.0, 25.0, size=(n, 2))
        angles = rng.uniform(0, np.pi, size=n)
        g = Gaussians2D.from_scales_angles(points + SHIFT, scales, angles)
        h, w = cv2.imread(info['img_path']).shape[:2]
        cache.save(info['img_path'], g, points=points + SHIFT, image_size=(h, w),
                   image_sha1=file_sha1(info['img_path']))
    return cache_dir, data_root, cache


def _affine_from_correspondences(src, dst):
    """Least-squares 2x3 affine src -> dst (independent of the transform's maths)."""
    a = np.concatenate([src, np.ones((len(src), 1))], 1)
    sol, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return sol.T  # (2, 3)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_kernels_follow_flip_bbox_transform_and_affine(mpii, synthetic_cache, seed):
    from gst_mm.transport import point_kernels
    cache_dir, data_root, cache = synthetic_cache
    ds = _dataset(mpii, _pipeline(cache_dir, data_root))
    raw = _dataset(mpii, [])
    np.random.seed(seed)
    checked = 0
    for i in range(len(ds)):
        out = ds[i]
        sample = out['data_samples']
        kern = sample.gt_fields.get(KERNEL_KEY).numpy()
        assert kern.shape == (16, 64, 64) and kern.dtype == np.float32
        assert sample.metainfo['flip']  # prob 1
        tk = np.asarray(sample.gt_instances.transformed_keypoints)[0]
        vis = np.asarray(sample.gt_instances.keypoints_visible).reshape(-1) > 0
        inside = (tk[:, 0] >= -0.5) & (tk[:, 0] < 255.5) & (tk[:, 1] >= -0.5) & (tk[:, 1] < 255.5)
        use = vis & inside
        # unsupervised joints have all-zero kernels, supervised ones carry mass
        assert np.all(kern[~use] == 0)
        assert np.all(kern[use].reshape(use.sum(), -1).max(1) > 0.5)

        # 1) mass centred on each joint within one heatmap cell (MMPose: cell = p / 4)
        ys, xs = np.mgrid[0:64, 0:64]
        for j in np.flatnonzero(use):
            k = kern[j]
            u = tk[j] / STRIDE
            border = max(k[0].max(), k[-1].max(), k[:, 0].max(), k[:, -1].max())
            if border > 1e-4:
                continue  # kernels cut by the crop border are not symmetric
            cx, cy = (k * xs).sum() / k.sum(), (k * ys).sum() / k.sum()
            assert abs(cx - u[0]) < 1.0 and abs(cy - u[1]) < 1.0, (i, j, (cx, cy), u)
            peak = np.unravel_index(k.argmax(), k.shape)
            assert abs(peak[1] - u[0]) <= 1 and abs(peak[0] - u[1]) <= 1
            checked += 1

        # 2) exact kernels from an independently estimated affine: original joints of
        # the flipped sample are the raw joints renumbered by flip_indices
        info = raw.get_data_info(i)
        orig = np.asarray(info['keypoints'])[0][np.asarray(sample.metainfo['flip_indices'])]
        m = _affine_from_correspondences(orig[vis], tk[vis])
        gauss = cache.load(info['img_path'])
        means = gauss.means.numpy()
        cov = []
        for p in orig[use]:
            n = np.argmin(((means - SHIFT - p) ** 2).sum(1))
            cov.append(m[:, :2] @ gauss.covariances.numpy()[n] @ m[:, :2].T)
        ref = point_kernels(torch.as_tensor(tk[use] + STRIDE / 2, dtype=torch.float32),
                            torch.as_tensor(np.stack(cov), dtype=torch.float32),
                            (64, 64), STRIDE)
        ref = ref.numpy() if hasattr(ref, 'numpy') else np.asarray(ref)
        np.testing.assert_allclose(kern[use], ref, atol=2e-3)

        # 3) the plan's cost maps (default cost='sqdist'): K c + (1 - K) c_0 with c the
        # squared distance to the joint in cells and c_0 = 9 x the clamped variance
        cost = sample.gt_fields.get(COST_KEY).numpy()
        assert cost.shape == kern.shape and np.all(cost[~use] == 0)
        from gst_mm.transport import clamp_covariances
        var = torch.exp(0.5 * clamp_covariances(torch.as_tensor(np.stack(cov)).float(),
                                                STRIDE, 20.0)[2]).numpy() / STRIDE ** 2
        for n, j in enumerate(np.flatnonzero(use)):
            c = ((xs - tk[j, 0] / STRIDE) ** 2 + (ys - tk[j, 1] / STRIDE) ** 2)
            expect = kern[j] * c + (1 - kern[j]) * 9.0 * var[n]
            np.testing.assert_allclose(cost[j], expect, rtol=2e-3, atol=2e-2)
    assert checked >= 10


def test_no_flip_and_heatmap_alignment_with_mmpose_target(mpii, synthetic_cache):
    """Without flip/rotation the kernel peak is the MSE target's peak cell."""
    cache_dir, data_root, _ = synthetic_cache
    ds = _dataset(mpii, _pipeline(cache_dir, data_root, flip_prob=0.0, rotate=False))
    np.random.seed(3)
    for i in range(len(ds)):
        s = ds[i]['data_samples']
        kern = s.gt_fields.get(KERNEL_KEY).numpy()
        heat = s.gt_fields.heatmaps.numpy()
        w = s.gt_instance_labels.keypoint_weights.numpy().reshape(-1)
        for j in range(16):
            if kern[j].max() == 0 or w[j] == 0 or heat[j].max() < 0.99:
                continue
            kp = np.unravel_index(kern[j].argmax(), kern[j].shape)
            hp = np.unravel_index(heat[j].argmax(), heat[j].shape)
            assert max(abs(kp[0] - hp[0]), abs(kp[1] - hp[1])) <= 1


def test_out_of_crop_and_invisible_joints_get_zero_kernels(mpii, synthetic_cache):
    cache_dir, data_root, _ = synthetic_cache
    pipe = _pipeline(cache_dir, data_root, flip_prob=0.0, rotate=False)
    # zoom in 3x: most joints fall outside the 256x256 crop
    pipe[3] = dict(type='RandomBBoxTransform', shift_prob=0.0, scale_prob=1.0,
                   scale_factor=(0.3, 0.3), rotate_prob=0.0)
    ds = _dataset(mpii, pipe)
    results = ds.get_data_info(0)
    results['keypoints_visible'] = results['keypoints_visible'].copy()
    results['keypoints_visible'][0, 7] = 0  # hide the thorax
    out = ds.pipeline(copy.deepcopy(results))
    s = out['data_samples']
    kern = s.gt_fields.get(KERNEL_KEY).numpy()
    tk = np.asarray(s.gt_instances.transformed_keypoints)[0]
    outside = ~((tk[:, 0] >= -0.5) & (tk[:, 0] < 255.5) & (tk[:, 1] >= -0.5) & (tk[:, 1] < 255.5))
    assert outside.sum() >= 3 and (~outside).sum() >= 1
    assert np.all(kern[outside] == 0)
    assert np.all(kern[7] == 0)
    keep = ~outside
    keep[7] = False
    assert np.all(kern[keep].reshape(keep.sum(), -1).max(1) > 0)


def test_stale_cache_and_misplaced_transform_raise(mpii, synthetic_cache, tmp_path):
    from gst_mm.splatting import GaussianCache, GaussianCacheError, Gaussians2D, file_sha1
    _, data_root, cache = synthetic_cache
    raw = _dataset(mpii, [])
    info = raw.get_data_info(0)
    # a cache whose means are 5 px off the annotations: stale for this image
    stale = GaussianCache(str(tmp_path), data_root=data_root)
    g = cache.load(info['img_path'])
    h, w = cv2.imread(info['img_path']).shape[:2]
    stale.save(info['img_path'], Gaussians2D(g.means + 5.0, g.covariances),
               points=g.means.numpy() + 5.0, image_size=(h, w),
               image_sha1=file_sha1(info['img_path']))
    ds = _dataset(mpii, _pipeline(str(tmp_path), data_root))
    with pytest.raises(GaussianCacheError, match=osp.basename(info['img_path'])):
        ds.pipeline(copy.deepcopy(info))
    # before TopdownAffine the transform refuses with a clear message
    t = LoadPoseTransportKernel(str(tmp_path), data_root=data_root)
    with pytest.raises(KeyError, match='TopdownAffine'):
        t(dict(info))


def test_precompute_pins_means_at_keypoints_plus_half(mpii, tmp_path):
    """The precompute side of the convention: the points fitted for an MPII image
    are its visible MMPose keypoints + 0.5 px (exactly, float32), the fitted
    means are those points, and the transform accepts them under MATCH_TOL."""
    from gst_mm.engine import collect_gaussian_samples
    from gst_mm.splatting import GaussianCache

    ds = _dataset(mpii, [])
    samples, _ = collect_gaussian_samples(ds)
    by_path = {s.img_path: s for s in samples}
    for i in range(len(ds)):  # one instance per image in the sample
        info = ds.get_data_info(i)
        vis = np.asarray(info['keypoints_visible']).reshape(-1) > 0
        kpts = np.asarray(info['keypoints'], np.float64).reshape(-1, 2)[vis]
        np.testing.assert_array_equal(by_path[info['img_path']].points,
                                      (kpts + 0.5).astype(np.float32))

    # a real (2-iteration) fit of the first image: means stay pinned at the points
    from gst_mm.splatting import fit_missing
    first = samples[0]
    assert first.img_path == ds.get_data_info(0)['img_path']
    cache_dir = str(tmp_path / 'fit_cache')
    cache = GaussianCache(cache_dir, data_root=mpii['data_root'])
    summary = fit_missing([first], cache, dict(iterations=2), progress=False)
    assert summary.ok and summary.fitted == [first.key], summary
    fitted = cache.load(first.img_path, first.points)
    np.testing.assert_allclose(fitted.means.numpy(), first.points, atol=1e-5)
    ds = _dataset(mpii, _pipeline(cache_dir, mpii['data_root'], flip_prob=0.0, rotate=False))
    kern = ds[0]['data_samples'].gt_fields.get(KERNEL_KEY).numpy()
    assert kern.reshape(16, -1).max(1).max() > 0.5


@pytest.mark.parametrize('shift', [0.0, 2 * SHIFT, -SHIFT])
def test_cache_in_another_pixel_convention_is_rejected(mpii, synthetic_cache, tmp_path, shift):
    """Means cached without the +0.5, with it doubled or negated are >= 0.7 px off
    what the transform expects and are reported as a stale cache."""
    from gst_mm.splatting import GaussianCache, GaussianCacheError, Gaussians2D, file_sha1
    _, data_root, cache = synthetic_cache
    raw = _dataset(mpii, [])
    info = raw.get_data_info(0)
    wrong = GaussianCache(str(tmp_path), data_root=data_root)
    g = cache.load(info['img_path'])
    moved = g.means - SHIFT + shift
    h, w = cv2.imread(info['img_path']).shape[:2]
    wrong.save(info['img_path'], Gaussians2D(moved, g.covariances), points=moved.numpy(),
               image_size=(h, w), image_sha1=file_sha1(info['img_path']))
    ds = _dataset(mpii, _pipeline(str(tmp_path), data_root, flip_prob=0.0, rotate=False))
    with pytest.raises(GaussianCacheError, match='stale'):
        ds.pipeline(copy.deepcopy(info))


def test_soft_plan_kernels_follow_the_same_geometry(mpii, synthetic_cache, tmp_path):
    """A soft entry where each joint owns exactly its pinned Gaussian gives the hard
    kernels (all components moved by the same flip / bbox transform / affine); a
    second component 12 px below each joint changes every supervised kernel."""
    from gst_mm.splatting import GaussianCache, Gaussians2D, file_sha1
    from gst_mm.splatting.soft_gaussians import SoftGaussians
    cache_dir, data_root, cache = synthetic_cache
    raw = _dataset(mpii, [])
    soft_dir, body_dir = str(tmp_path / 'soft'), str(tmp_path / 'body')
    for i in range(len(raw)):
        info = raw.get_data_info(i)
        g = cache.load(info['img_path'])
        pts = g.means.numpy()
        h, w = cv2.imread(info['img_path']).shape[:2]
        kw = dict(points=pts, image_size=(h, w), image_sha1=file_sha1(info['img_path']))
        GaussianCache(soft_dir, data_root=data_root).save(info['img_path'],
                                                          SoftGaussians.hard(g), **kw)
        n = len(g)
        comps = Gaussians2D(np.concatenate([pts, pts + [0.0, 12.0]]),
                            torch.cat([g.covariances, g.covariances]))
        body = SoftGaussians(comps, g, np.arange(2 * n), np.tile(np.arange(n), 2),
                             np.full(2 * n, 0.5))
        GaussianCache(body_dir, data_root=data_root).save(info['img_path'], body, **kw)

    def kernels(folder, plan):
        pipe = _pipeline(folder, data_root)
        pipe[-2] = dict(pipe[-2], plan=plan)
        ds = _dataset(mpii, pipe)
        np.random.seed(7)
        return [ds[i]['data_samples'].gt_fields.get(KERNEL_KEY).numpy() for i in range(len(ds))]

    hard, soft, body = kernels(cache_dir, 'hard'), kernels(soft_dir, 'soft'), kernels(body_dir,
                                                                                       'soft')
    shifted = 0
    for kh, ks, kb in zip(hard, soft, body):
        np.testing.assert_allclose(ks, kh, atol=1e-5)
        for j in range(len(kh)):
            if kh[j].sum() > 1 and kb[j].sum() > 1:
                assert not np.allclose(kb[j], kh[j], atol=1e-3)
                shifted += 1
    assert shifted >= 10
    with pytest.raises(Exception, match="plan 'hard' found a soft-plan entry"):
        kernels(soft_dir, 'hard')
