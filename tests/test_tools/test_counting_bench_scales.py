"""The counting benchmark's plan-vs-truth figure (tools/benchmark/counting.py
``plan_scales``) on a cache whose answer is known: every cached covariance is the true
one scaled by 4 (std x 2)."""
import os.path as osp
import shutil

import numpy as np
import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_plan_scales_against_known_truth(tiny_crowd, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(osp.join(REPO, 'tools', 'benchmark'))
    import counting

    from gst_mm.datasets.layout import read_annotation, read_split
    from gst_mm.splatting.cache import GaussianCache
    from gst_mm.splatting.gaussians import Gaussians2D

    root = str(tmp_path / 'data')
    shutil.copytree(tiny_crowd[0], root)
    cache = GaussianCache(osp.join(root, 'gst_cache'), data_root=root)
    true_scales = []
    for name in read_split(osp.join(root, 'train.txt')):  # the cache holds the train split
        ann = read_annotation(osp.join(root, 'annotations', name + '.json'))
        cov = np.asarray(ann.covariances, np.float32)
        img = osp.join(root, 'images', ann.image)
        cache.save(img, Gaussians2D(ann.points, 4.0 * cov), ann.points, (96, 96))
        true_scales.append(np.linalg.det(cov) ** 0.25)
    true_scales = np.concatenate(true_scales)
    s = counting.plan_scales(root, heuristic_sigma=5.0, max_std=6.0)
    assert s['objects'] == len(true_scales)
    assert s['fit_rank_corr'] == pytest.approx(1.0)
    assert s['fit_rel_err'] == pytest.approx(1.0, rel=1e-4)  # std x 2: +100 %
    assert all(b['fit_over_true'] == pytest.approx(2.0, rel=1e-4) for b in s['bands'].values())
    assert sum(b['n'] for b in s['bands'].values()) == len(true_scales)
    assert s['heuristic_rel_err'] == pytest.approx(
        float(np.median(np.abs(5.0 / true_scales - 1))), rel=1e-4)
    assert s['above_max_std'] == pytest.approx(float(np.mean(true_scales > 6.0)))
    table = counting.scale_lines({'tiny': s})
    assert table[-2].startswith('| tiny | %d |' % len(true_scales))
    assert counting.plan_scales(str(tmp_path / 'nothing')) == {}
