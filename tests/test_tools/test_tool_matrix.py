"""Every user-facing tool on every shipped config family (issue 24's matrix): precompute
(and ``--check``), ``train.py --iters``, ``test.py`` (``--pred-file`` for counters,
``--show-dir`` with every keypoint drawn for pose models), the family's viewer with
``--fit``, ``visualize_gaussians.py`` on a cached entry, and ``gstify_config.py`` for the
pose families, on tiny data shared by the whole matrix (random-init models, a few
iterations). A failure names the family and the tool."""
import json
import os
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FAMILIES = {
    'counting-hard': ('counting', 'gst_vgg19_synthetic.py'),
    'counting-soft': ('counting', 'gst-soft_vgg19_synthetic.py'),
    'counting-transformer': ('counting', 'gst_vgg19trans_synthetic.py'),
    'mpii-hard': ('mpii', 'gst_hrnet-w32_8xb64-210e_mpii-256x256.py'),
    'mpii-soft': ('mpii', 'gst-soft_hrnet-w32_8xb64-210e_mpii-256x256.py'),
    'synthetic-pose': ('synthetic_pose', 'gst_res18-half_1xb32-1000it_synthetic-64x64.py'),
}
GSTIFY_SOURCES = {
    'mpii-hard': 'mmpose::body_2d_keypoint/topdown_heatmap/mpii/'
                 'td-hm_hrnet-w32_8xb64-210e_mpii-256x256.py',
    'synthetic-pose': osp.join(REPO, 'configs', 'synthetic_pose',
                               'td-hm_res18-half_1xb32-1000it_synthetic-64x64.py'),
}


@pytest.fixture(scope='module')
def tiny_landmarks(tmp_path_factory):
    from tiny_configs import tiny_landmarks_root
    return tiny_landmarks_root(tmp_path_factory, num_train=6, num_val=4)


def _small(cfg, fit_iterations=8):
    """Small fits (and soft refines) for the config's precompute hook."""
    for hook in cfg.get('custom_hooks', []) or []:
        if str(hook['type']).endswith('GSTPrecomputeHook'):
            fit = dict(hook.get('fit_cfg') or {}, iterations=fit_iterations)
            hook['fit_cfg'] = fit
    for step in cfg.train_dataloader.dataset.pipeline:
        if str(step['type']).endswith(('LoadPoseTransportKernel', 'LoadCrowdGaussians')) \
                and step.get('plan') == 'soft':
            for hook in cfg.custom_hooks:
                if str(hook['type']).endswith('GSTPrecomputeHook'):
                    hook['fit_cfg']['soft'] = dict(refine_iters=5)
    return cfg


def _family_config(family, tmp_path, tiny_crowd, mpii_layout, tiny_landmarks):
    """``(config file, data_root)`` of the family shrunk to the tiny data."""
    from gst_mm.utils.config import load_run_config
    kind, name = FAMILIES[family]
    path = osp.join(REPO, 'configs', kind, name)
    if kind == 'counting':
        from tiny_configs import tiny_counting_cfg
        data_root = str(tmp_path / 'crowd') + '/'
        os.symlink(tiny_crowd[0], data_root.rstrip('/'))
        cfg = tiny_counting_cfg(name, data_root, None, tmp_path / 'work')
        for hook in cfg.get('custom_hooks', []) or []:  # default cache under the data root
            hook.pop('cache_dir', None)
        for step in cfg.train_dataloader.dataset.pipeline:
            if str(step['type']).endswith('LoadCrowdGaussians'):
                step.pop('cache_dir', None)
    else:
        data_root = mpii_layout if kind == 'mpii' else tiny_landmarks
        cfg = load_run_config(path, {'data_root': data_root})
        if kind == 'synthetic_pose':
            from gst_mm.utils.config import rebase_paths
            rebase_paths(cfg, 'data/synthetic_pose/', data_root)
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
                cfg[loader].dataset.data_root = data_root
        cfg.model.backbone.init_cfg = None
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            cfg[loader].batch_size = 2
            cfg[loader].num_workers = 0
            cfg[loader].persistent_workers = False
        cfg.work_dir = str(tmp_path / 'work')
    cfg = _small(cfg)
    out = str(tmp_path / f'{family}.py')
    cfg.dump(out)
    return out, data_root, cfg


def _cached_entry(cfg, data_root):
    """``(image, annotation points file, cache dir)`` of one fitted training image."""
    from gst_mm.engine import hook_cfg_of, resolve_cache
    from gst_mm.utils.config import build_split_dataset
    ds = build_split_dataset(cfg, 'train', list(cfg.train_dataloader.dataset.pipeline))
    spec = resolve_cache(ds, hook_cfg_of(cfg))
    group = spec.groups(ds)[0]
    sample = group.samples[0]
    return sample, group.cache_dir, group.data_root, spec.plan


@pytest.mark.parametrize('family', list(FAMILIES))
def test_every_tool_on_every_config_family(family, tmp_path, tiny_crowd, mpii_layout,
                                           tiny_landmarks, load_tool, monkeypatch, capsys):
    import numpy as np
    monkeypatch.chdir(tmp_path)
    cfg_file, data_root, cfg = _family_config(family, tmp_path, tiny_crowd, mpii_layout,
                                              tiny_landmarks)
    counting = FAMILIES[family][0] == 'counting'
    work = str(tmp_path / 'work')

    # precompute, then --check: every entry valid
    assert load_tool('precompute').main([cfg_file, '--no-progress']) == 0, family
    assert load_tool('precompute').main([cfg_file, '--check']) == 0, family
    assert 'missing' in capsys.readouterr().out  # the report lists the states

    # a short training run and its checkpoint
    load_tool('train').main([cfg_file, '--iters', '2', '--work-dir', work])
    ckpt = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt), (family, os.listdir(work))

    # test: counts per image, or drawn keypoints
    if counting:
        pred = str(tmp_path / 'preds.json')
        metrics = load_tool('test').main([cfg_file, ckpt, '--work-dir', work,
                                          '--pred-file', pred])
        assert 'MAE' in metrics and json.load(open(pred))['images'], family
    else:
        metrics = load_tool('test').main([cfg_file, ckpt, '--work-dir', work, '--show-dir',
                                          'vis', '--cfg-options',
                                          'default_hooks.visualization.kpt_thr=0.0'])
        drawn = [f for r, _, fs in os.walk(work) for f in fs
                 if osp.basename(r) == 'vis' and f.endswith('.jpg')]
        assert metrics and drawn, family

    # the family's viewer, fitting what it needs
    png = str(tmp_path / 'view.png')
    if counting:
        assert load_tool('visualize_transport').main([cfg_file, '--fit', '--out', png]) == 0
    else:
        assert load_tool('visualize_pose_kernels').run(cfg_file, fit=True, out=png) == 0
    assert osp.getsize(png) > 0, family

    # visualize_gaussians on a cached entry of the plan the family fits
    sample, cache_dir, key_root, plan = _cached_entry(cfg, data_root)
    pts = str(tmp_path / 'points.npy')
    np.save(pts, np.asarray(sample.points, np.float32))
    vis = str(tmp_path / 'gaussians.png')
    load_tool('visualize_gaussians').main([sample.img_path, pts, '--cache-dir', cache_dir,
                                           '--data-root', key_root, '--plan', plan,
                                           '--out', vis])
    assert osp.getsize(vis) > 0, family

    # gstify: the family's MMPose-style source converts and the output loads
    if family in GSTIFY_SOURCES:
        from mmengine.config import Config
        out = str(tmp_path / 'gstified.py')
        load_tool('gstify_config').main([GSTIFY_SOURCES[family], out])
        assert Config.fromfile(out).model.head.type == 'gst_mm.GSTHeatmapHead'
