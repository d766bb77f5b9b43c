"""The soft plan's fit, data type and cache entry (docs/soft_kernel.md)."""
import h5py
import numpy as np
import pytest
import torch

from gst_mm.splatting import GaussianCache, GaussianCacheError, Gaussians2D, fit_gaussians
from gst_mm.splatting.fit import fit_cfg_key
from gst_mm.splatting.fit_config import resolve_soft
from gst_mm.splatting.soft_gaussians import SoftGaussians
from gst_mm.splatting.synthetic import make_plan_scene
from gst_mm.transport import build_kernel
from gst_mm.transport.soft_kernel import build_soft_kernel


def _soft(n=4, per=2, seed=0):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(10, 90, (n, 2)).astype(np.float32)
    anchors = Gaussians2D.from_scales_angles(pts, rng.uniform(2, 6, (n, 2)), rng.uniform(0, 3, n))
    m = n * per
    comps = Gaussians2D.from_scales_angles(np.repeat(pts, per, 0) + rng.normal(0, 4, (m, 2)),
                                           rng.uniform(2, 8, (m, 2)), rng.uniform(0, 3, m),
                                           rng.uniform(0, 1, (m, 3)))
    w = rng.uniform(0.2, 1, (n, per))
    w /= w.sum(1, keepdims=True)
    return SoftGaussians(comps, anchors, np.arange(m), np.repeat(np.arange(n), per),
                         w.reshape(-1))


def test_transform_moves_every_component_and_anchor():
    sg = _soft()
    a, t = np.array([[0.0, -1.2], [1.2, 0.0]]), np.array([5.0, -3.0])
    moved = sg.transform(a, t)
    ref = sg.components.transform(a, t)
    torch.testing.assert_close(moved.components.means, ref.means)
    torch.testing.assert_close(moved.components.covariances, ref.covariances)
    torch.testing.assert_close(moved.means, sg.anchors.transform(a, t).means)
    assert torch.equal(moved.weight, sg.weight) and torch.equal(moved.pen, sg.pen)


def test_subset_renumbers_pens_and_keeps_their_mixtures():
    sg = _soft(n=5)
    sub = sg.subset(np.array([4, 1]))
    assert len(sub) == 2
    for new, old in enumerate([4, 1]):
        ref = sorted(zip(sg.comp[sg.pen == old].tolist(), sg.weight[sg.pen == old].tolist()))
        got = sorted(zip(sub.comp[sub.pen == new].tolist(), sub.weight[sub.pen == new].tolist()))
        assert got == ref
    torch.testing.assert_close(sub.means, sg.means[[4, 1]])
    mask = sg.subset(np.array([True, False, True, False, False]))
    assert len(mask) == 2 and set(mask.pen.tolist()) == {0, 1}


def test_cache_round_trip_of_a_soft_entry_and_old_entries(tmp_path):
    sg = _soft()
    cache = GaussianCache(str(tmp_path))
    img = str(tmp_path / 'a.jpg')
    path = cache.save(img, sg, sg.means.numpy(), (100, 100), image_sha1='x', fit_key='k')
    back = cache.load(img, points=sg.means.numpy())
    assert isinstance(back, SoftGaussians)
    for name in ('means', 'covariances', 'colors'):
        torch.testing.assert_close(getattr(back.components, name), getattr(sg.components, name))
    torch.testing.assert_close(back.means, sg.means)
    assert torch.equal(back.comp, sg.comp) and torch.equal(back.pen, sg.pen)
    torch.testing.assert_close(back.weight, sg.weight)
    # a format-2 file (hard only) still reads, as Gaussians2D
    hard_img = str(tmp_path / 'b.jpg')
    hpath = cache.save(hard_img, sg.anchors, sg.means.numpy(), (100, 100))
    with h5py.File(hpath, 'r+') as f:
        f.attrs['format_version'] = 2
    assert isinstance(cache.load(hard_img), Gaussians2D)
    # inconsistent soft arrays are a corrupt entry, named
    with h5py.File(path, 'r+') as f:
        del f['soft_pen']
        f.create_dataset('soft_pen', data=np.full(len(sg.comp), 99))
    with pytest.raises(GaussianCacheError, match='corrupt'):
        cache.load(img)


def test_settings_key_separates_the_plans_and_keeps_the_hard_one():
    assert fit_cfg_key({}) == fit_cfg_key({'plan': 'hard'})
    assert fit_cfg_key({'plan': 'soft'}) != fit_cfg_key({})
    assert fit_cfg_key({'plan': 'soft'}) != fit_cfg_key({'plan': 'soft',
                                                         'soft': {'temperature': 1.0}})
    with pytest.raises(TypeError, match='tempreature'):
        resolve_soft({'tempreature': 1.0})
    with pytest.raises(ValueError, match="plan='soft'"):
        fit_cfg_key({'soft': {'temperature': 1.0}})


def _recall(kernel, labels, stride, k):
    dense = kernel.dense().numpy()
    h, w = labels.shape[0] // stride, labels.shape[1] // stride
    lab = labels[stride // 2::stride, stride // 2::stride][:h, :w].reshape(-1)
    own = lab == k
    return float((dense[own].argmax(1) == k).mean())


def test_soft_fit_describes_two_part_objects_clicked_on_the_small_part():
    """Objects = body + small head, clicked on the head: the pinned Gaussian covers the
    head only; the soft plan's mixture covers the body too (mask known)."""
    scene = make_plan_scene('parts', 128, 128, 4, seed=1)
    torch.manual_seed(0)
    hard = fit_gaussians(scene.image, scene.clicks)
    sg, info = fit_gaussians(scene.image, scene.clicks, plan='soft', return_info=True)
    assert isinstance(sg, SoftGaussians) and len(sg) == len(scene.clicks)
    assert info.settings['plan'] == 'soft' and info.soft_stats['densified'] > 0
    torch.testing.assert_close(sg.means, hard.means)  # anchors = the pinned fit
    np.testing.assert_allclose(sg.pen_mass().numpy(), 1.0, atol=1e-5)
    grid, stride = (64, 64), 2
    hk = build_kernel(hard.means, hard.covariances, grid, stride, min_std=2.0)
    c = sg.components
    sk = build_soft_kernel(c.means, c.covariances, sg.comp, sg.pen, sg.weight, len(sg), grid,
                           stride, min_std=2.0)
    rec_h = np.mean([_recall(hk, scene.labels, stride, k) for k in range(len(sg))])
    rec_s = np.mean([_recall(sk, scene.labels, stride, k) for k in range(len(sg))])
    assert rec_s > rec_h + 0.3, (rec_s, rec_h)
