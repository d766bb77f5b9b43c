"""The viewers' ``--fit`` goes through the one cache resolver: on a soft-plan config it
fits the soft plan into ``gst_cache_soft`` (the folder training reads) and the
figure is drawn; a rerun finds the entry valid. Before the resolver the transport
viewer fitted the hard plan into ``gst_cache`` and then failed on the soft folder,
and the pose viewer wrote a hard entry into ``gst_cache_soft`` that every later run
rejected as stale (issue 24 item 2)."""
import os
import os.path as osp
import shutil

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _small_fits(cfg, iterations=15, refine=10):
    for hook in cfg.get('custom_hooks', []):
        if str(hook['type']).endswith('GSTPrecomputeHook'):
            fit_cfg = dict(hook.get('fit_cfg') or {}, iterations=iterations)
            if 'soft' in fit_cfg or 'plan' in fit_cfg:
                fit_cfg['soft'] = dict(fit_cfg.get('soft') or {}, refine_iters=refine)
            hook['fit_cfg'] = fit_cfg
    return cfg


def _entries(folder):
    return sorted(osp.relpath(osp.join(r, f), folder)
                  for r, _, fs in os.walk(folder) for f in fs if f.endswith('.h5'))


def test_transport_viewer_fits_the_soft_plan_of_a_soft_config(tiny_crowd, tmp_path, load_tool):
    from gst_mm.splatting import GaussianCache, SoftGaussians
    from gst_mm.utils.config import load_run_config
    data_root = str(tmp_path / 'crowd') + '/'
    # a private copy: the session's tiny set may hold caches other tests fitted there
    shutil.copytree(tiny_crowd[0], data_root, ignore=shutil.ignore_patterns('gst_cache*'))
    cfg = _small_fits(load_run_config(osp.join(REPO, 'configs', 'counting',
                                               'gst-soft_vgg19_synthetic.py'),
                                      {'data_root': data_root}))
    path = str(tmp_path / 'soft.py')
    cfg.dump(path)
    tool = load_tool('visualize_transport')
    out = str(tmp_path / 'map.png')
    assert tool.main([path, '--fit', '--out', out]) == 0
    assert osp.getsize(out) > 0
    soft_dir, hard_dir = osp.join(data_root, 'gst_cache_soft'), osp.join(data_root, 'gst_cache')
    assert len(_entries(soft_dir)) == 1 and not osp.exists(hard_dir)
    img = osp.join(data_root, 'images', _entries(soft_dir)[0][len('images/'):-3])
    assert isinstance(GaussianCache(soft_dir, data_root).load(img, plan='soft'), SoftGaussians)
    # the entry is valid now: a run without --fit draws it
    assert tool.main([path, '--out', out]) == 0


def test_pose_viewer_fits_the_soft_plan_of_a_soft_config(mpii_layout, tmp_path, load_tool):
    from gst_mm.splatting import GaussianCache, SoftGaussians
    from gst_mm.utils.config import load_run_config
    cfg = _small_fits(load_run_config(osp.join(
        REPO, 'configs', 'mpii', 'gst-soft_hrnet-w32_8xb64-210e_mpii-256x256.py'),
        {'data_root': mpii_layout}))
    path = str(tmp_path / 'soft_pose.py')
    cfg.dump(path)
    tool = load_tool('visualize_pose_kernels')
    out = str(tmp_path / 'kernels.png')
    assert tool.run(path, fit=True, out=out) == 0
    soft_dir = cfg.gaussian_cache_dir
    assert soft_dir.rstrip('/').endswith('gst_cache_soft')
    assert len(_entries(soft_dir)) == 1
    img = osp.join(mpii_layout, 'images', _entries(soft_dir)[0][len('images/'):-3])
    assert isinstance(GaussianCache(soft_dir, mpii_layout).load(img, plan='soft'),
                      SoftGaussians)
    assert tool.run(path, fit=False, out=out) == 0  # valid: no refit, no stale error


def test_transport_viewer_follows_a_data_root_override(tiny_crowd, tmp_path, load_tool,
                                                       capsys):
    """``--cfg-options data_root=...`` moves every path (it used to be ignored and end in
    a FileNotFoundError traceback, issue 24 item 3); a wrong root is one line."""
    tool = load_tool('visualize_transport')
    cfg = osp.join(REPO, 'configs', 'counting', 'gst-heuristic_vgg19_synthetic.py')
    out = str(tmp_path / 'h.png')
    assert tool.main([cfg, '--out', out, '--cfg-options', f'data_root={tiny_crowd[0]}']) == 0
    assert osp.getsize(out) > 0
    assert tool.main([cfg, '--out', out, '--cfg-options',
                      f'data_root={tmp_path}/nowhere/']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'visualize_transport.py: error:' in err[0], err


@pytest.mark.parametrize('source', ['heuristic', 'gt'])
def test_transport_viewer_sources(tiny_crowd, tmp_path, load_tool, source):
    tool = load_tool('visualize_transport')
    cfg = osp.join(REPO, 'configs', 'counting', 'l2_vgg19_synthetic.py')
    out = str(tmp_path / f'{source}.png')
    assert tool.main([cfg, '--source', source, '--out', out, '--cfg-options',
                      f'data_root={tiny_crowd[0]}']) == 0
    assert osp.getsize(out) > 0
