"""The pose workflow from the command line: one data_root override, cache keys,
gstify refusals / --loss ot / portable _base_, tools/test.py --show-dir and the
pose kernel viewer, on the 5-image MPII sample laid out as MMPose's MPII."""
import os
import os.path as osp
import re

import numpy as np
import pytest
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GST_W32 = osp.join(REPO, 'configs', 'mpii', 'gst_hrnet-w32_8xb64-210e_mpii-256x256.py')
MMPOSE_MPII = 'mmpose::body_2d_keypoint/topdown_heatmap/mpii/'


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v)


# ----------------------------------------------------------------- one override
def test_data_root_override_moves_every_path(mpii_layout):
    from gst_mm.utils.config import load_run_config
    plain = Config.fromfile(GST_W32)
    assert plain.data_root == 'data/mpii/'
    old = [s for s in _strings(plain.to_dict()) if s.startswith('data/mpii/')]
    # the data sets, headbox file, cache and its root, transform and hook arguments
    assert len(old) >= 9, old
    cfg = load_run_config(GST_W32, {'data_root': mpii_layout})
    d = cfg.to_dict()
    assert not [s for s in _strings(d) if s.startswith('data/mpii')]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == mpii_layout
    assert cfg.val_dataloader.dataset.headbox_file == mpii_layout + 'annotations/mpii_gt_val.mat'
    assert cfg.gaussian_data_root == mpii_layout
    assert cfg.gaussian_cache_dir == mpii_layout + 'gst_cache'
    step = cfg.train_dataloader.dataset.pipeline[-2]
    hook = cfg.custom_hooks[-1]
    assert (step.cache_dir, step.data_root) == (mpii_layout + 'gst_cache', mpii_layout)
    assert (hook.cache_dir, hook.data_root) == (mpii_layout + 'gst_cache', mpii_layout)
    # an explicit override of a dependent path wins; without trailing slash works too
    cfg = load_run_config(GST_W32, {'data_root': mpii_layout.rstrip('/'),
                                    'val_dataloader.dataset.headbox_file': '/x/h.mat'})
    assert cfg.val_dataloader.dataset.headbox_file == '/x/h.mat'
    assert cfg.test_dataloader.dataset.headbox_file == mpii_layout + 'annotations/mpii_gt_val.mat'
    assert cfg.data_root == mpii_layout.rstrip('/')
    # moving the cache alone: the transform and the hook follow gaussian_cache_dir
    cfg = load_run_config(GST_W32, {'data_root': mpii_layout, 'gaussian_cache_dir': '/fast/c'})
    assert cfg.train_dataloader.dataset.pipeline[-2].cache_dir == '/fast/c'
    assert cfg.custom_hooks[-1].cache_dir == '/fast/c'
    assert cfg.custom_hooks[-1].data_root == mpii_layout


def test_rebase_matches_whole_path_components():
    from gst_mm.utils.config import rebase_paths
    cfg = Config(dict(data_root='data/mpii/', a='data/mpii_extra/x', b=['data/mpii/x.json'],
                      c=dict(d=('data/mpii', 'other/data/mpii/y'))))
    assert rebase_paths(cfg, 'data/mpii/', '/new') == 3
    assert cfg.a == 'data/mpii_extra/x' and cfg.b == ['/new/x.json']
    assert tuple(cfg.c.d) == ('/new', 'other/data/mpii/y') and cfg.data_root == '/new/'


def test_precompute_follows_the_override_and_keys_are_relative(mpii_layout, tmp_path,
                                                               monkeypatch, load_tool):
    monkeypatch.chdir(tmp_path)
    rc = load_tool('precompute').main([GST_W32, '--iterations', '2', '--no-progress',
                                       '--cfg-options', f'data_root={mpii_layout}'])
    assert rc == 0
    cache = osp.join(mpii_layout, 'gst_cache')
    files = sorted(osp.relpath(osp.join(r, f), cache) for r, _, fs in os.walk(cache) for f in fs)
    assert len(files) == 2 and all(re.fullmatch(r'images/\d+\.jpg\.h5', f) for f in files)
    assert os.listdir(tmp_path) == []  # nothing written into the working directory


def test_moving_only_the_data_set_is_an_error_naming_the_mismatch(mpii_layout, tmp_path,
                                                                  monkeypatch, load_tool,
                                                                  capsys):
    from gst_mm.engine import precompute_dataset
    from gst_mm.splatting import CacheKeyError
    from gst_mm.utils.config import build_split_dataset, load_run_config
    monkeypatch.chdir(tmp_path)
    moved = [f'train_dataloader.dataset.data_root={mpii_layout}']
    rc = load_tool('precompute').main([GST_W32, '--iterations', '2', '--no-progress',
                                       '--cfg-options', *moved])
    err = capsys.readouterr().err
    assert rc == 2 and err.count('\n') == 1, err
    assert re.search(r"outside the Gaussian cache's data_root 'data/mpii/' \(the data set's "
                     r"data_root is '" + re.escape(mpii_layout), err), err
    assert os.listdir(tmp_path) == []  # nothing fitted, nothing written
    # the hook's path (precompute_dataset) raises the same error before fitting
    cfg = load_run_config(GST_W32, {'train_dataloader.dataset.data_root': mpii_layout})
    dataset = build_split_dataset(cfg, 'train')
    with pytest.raises(CacheKeyError, match='outside'):
        precompute_dataset(dataset, cfg.gaussian_cache_dir, data_root=cfg.gaussian_data_root,
                           fit_cfg=dict(iterations=2), progress=False)
    assert os.listdir(tmp_path) == []


def test_cache_refuses_images_outside_its_data_root(tmp_path):
    from gst_mm.splatting import CacheKeyError, GaussianCache
    cache = GaussianCache(tmp_path / 'cache', data_root=tmp_path / 'data')
    assert cache.key(str(tmp_path / 'data' / 'images' / 'a.jpg')) == osp.join('images', 'a.jpg')
    with pytest.raises(CacheKeyError, match='a.jpg is not under'):
        cache.path_for(str(tmp_path / 'elsewhere' / 'a.jpg'))
    with pytest.raises(CacheKeyError):  # not swallowed as "missing entry"
        cache.check(str(tmp_path / 'elsewhere' / 'a.jpg'))


# ------------------------------------------------ train + test --show-dir
def test_train_with_one_override_then_test_show_dir(mpii_layout, tmp_path, monkeypatch,
                                                    load_tool):
    """tools/train.py CFG --cfg-options data_root=... on the MMPose MPII layout (1
    iteration, validation with the layout's mpii_gt_val.mat), then tools/test.py
    --show-dir writes the drawn test images."""
    monkeypatch.chdir(tmp_path)
    work = str(tmp_path / 'work')
    tiny = [
        f'data_root={mpii_layout}', 'model.backbone.init_cfg=None',
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_dataloader.batch_size=2',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
        'train_cfg.max_epochs=1', 'custom_hooks.1.fit_cfg.iterations=2',
        'default_hooks.logger.interval=1',
    ]
    load_tool('train').main([GST_W32, '--work-dir', work, '--cfg-options', *tiny])
    cache = osp.join(mpii_layout, 'gst_cache', 'images')
    assert len(os.listdir(cache)) == 2
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    logs = [osp.join(r, f) for r, _, fs in os.walk(work) for f in fs if f.endswith('.log')]
    assert any('Epoch(val)' in line and ' PCK: ' in line for p in logs for line in open(p))

    # every keypoint above the draw threshold (kpt_thr 0): MMPose 1.3.2's visualiser
    # passed each radius as a 1-element array that numpy 2 refuses to int(); before the
    # shim (gst_mm.utils.compat) this raised a TypeError and wrote no image
    metrics = load_tool('test').main([GST_W32, ckpt, '--work-dir', work, '--show-dir', 'vis',
                                      '--cfg-options', *tiny,
                                      'default_hooks.visualization.kpt_thr=0.0'])
    assert 'PCK' in metrics
    drawn = [osp.join(r, f) for r, _, fs in os.walk(work) for f in fs
             if osp.basename(r) == 'vis' and f.endswith('.jpg')]
    assert len(drawn) == 2, drawn
    from gst_mm.splatting import read_image
    for path in drawn:  # skeleton and dots drawn over the image (not just the image)
        plain = read_image(osp.join(mpii_layout, 'images', osp.basename(path)[:-6] + '.jpg'))
        changed = (np.abs(read_image(path).astype(int) - plain.astype(int)).max(-1) > 80)
        assert changed.sum() > 200, (path, int(changed.sum()))
    assert os.listdir(tmp_path) == ['work']


def test_show_dir_without_visualization_hook_is_one_line(tmp_path, load_tool):
    test = load_tool('test')
    cfg = Config(dict(default_hooks=dict(logger=dict(type='LoggerHook'))))
    with pytest.raises(SystemExit, match='no default_hooks.visualization'):
        test.enable_visualization(cfg, 'vis', 'x.py')


# ----------------------------------------------------------------- gstify
def _run_main(tool, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        tool.main(argv)
    err = capsys.readouterr().err
    return exc.value.code, err


@pytest.mark.parametrize('src,what', [
    ('mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_cpm_8xb64-210e_coco-256x192.py',
     'CPMHead, a multi-stage head'),
    ('mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w32_udp-8xb64-210e_coco-256x192.py',
     'UDP'),
    ('mmpose::body_2d_keypoint/topdown_regression/mpii/td-reg_res50_8xb64-210e_mpii-256x256.py',
     'model.head is RegressionHead'),
    ('no/such/config.py', 'no such config file'),
])
def test_gstify_refusals_are_one_line_exit_2(registered, tmp_path, capsys, load_tool, src, what):
    code, err = _run_main(load_tool('gstify_config'), [src, str(tmp_path / 'out.py')], capsys)
    assert code == 2 and what in err, err
    assert err.count('\n') == 1 and 'Traceback' not in err and err.startswith('gstify_config.py')
    assert not osp.exists(tmp_path / 'out.py')


def test_gstify_file_source_writes_a_portable_base(registered, tmp_path, load_tool):
    import mmpose
    gstify = load_tool('gstify_config')
    rel = 'body_2d_keypoint/topdown_heatmap/mpii/td-hm_res50_8xb64-210e_mpii-256x256.py'
    pkg_file = osp.join(osp.dirname(mmpose.__file__), '.mim', 'configs', rel)
    text = gstify.gstify(pkg_file, str(tmp_path / 'a' / 'out.py'))
    assert f"_base_ = ['mmpose::{rel}']" in text
    # a file outside the package: its absolute path, whatever the output's folder
    plain = osp.join(REPO, 'configs', 'mpii', 'td-hm_hrnet-w32_8xb64-210e_mpii-256x256.py')
    out = tmp_path / 'deep' / 'er' / 'out.py'
    gstify.main([osp.relpath(plain), str(out)])
    assert f'_base_ = [{plain!r}]' in out.read_text()
    cfg = Config.fromfile(str(out))  # parses from its new place
    assert cfg.model.head.type == 'gst_mm.GSTHeatmapHead'


def test_gstify_loss_ot_keeps_heatmap_head_layers(registered, tmp_path, load_tool):
    out = tmp_path / 'ot.py'
    load_tool('gstify_config').main([MMPOSE_MPII + 'td-hm_res50_8xb64-210e_mpii-256x256.py',
                                     str(out), '--loss', 'ot'])
    cfg = Config.fromfile(str(out))
    assert cfg.model.head.loss.to_dict() == dict(type='gst_mm.HeatmapOTLoss')
    # HeatmapHead's layers, decoding the softmax density the OT loss sees
    assert cfg.model.head.type == 'gst_mm.DensityHeatmapHead'
    assert cfg.model.head.nonneg == 'softmax'
    assert cfg.custom_imports.imports == ['gst_mm.models.heads', 'gst_mm.models.losses']
    types = [str(s['type']) for s in cfg.train_dataloader.dataset.pipeline]
    assert not any('LoadPoseTransportKernel' in t for t in types)
    assert not any('GSTPrecomputeHook' in str(h.get('type')) for h in cfg.get('custom_hooks', []))
    assert 'gaussian_cache_dir' not in cfg


def test_gstify_nonneg_follows_the_head(registered, load_tool):
    import inspect

    from gst_mm.models.heads import GSTHeatmapHead
    from gst_mm.models.heads.density_maps import NONNEG_MODES
    gstify = load_tool('gstify_config')
    modes, default = gstify.nonneg_choices()
    assert modes == tuple(NONNEG_MODES)
    assert default == inspect.signature(GSTHeatmapHead.__init__).parameters['nonneg'].default
    assert gstify.parse_args(['a.py', 'b.py']).recipe.nonneg == default


# ----------------------------------------------------------------- viewers
def test_pose_kernel_viewer_fits_and_draws(mpii_layout, tmp_path, load_tool):
    out = str(tmp_path / 'kernels.png')
    rc = load_tool('visualize_pose_kernels').main([
        GST_W32, '--index', '1', '--out', out, '--cfg-options', f'data_root={mpii_layout}',
        'custom_hooks.1.fit_cfg.iterations=2'])
    assert rc == 0
    import cv2
    img = cv2.imread(out)
    assert img is not None and img.shape[0] > 500 and img.shape[1] > 1500
    assert img.std() > 10


def test_visualize_transport_hands_pose_configs_to_the_kernel_viewer(mpii_layout, tmp_path,
                                                                    load_tool, capsys):
    out = str(tmp_path / 'transport.png')
    tool = load_tool('visualize_transport')
    cfg_opts = ['--cfg-options', f'data_root={mpii_layout}', 'custom_hooks.1.fit_cfg.iterations=2']
    assert tool.main([GST_W32, '--index', '0', '--out', out, *cfg_opts]) == 0
    assert osp.isfile(out) and 'joints with a kernel' in capsys.readouterr().out
    assert tool.main([GST_W32, '--source', 'gt', *cfg_opts]) == 2
    assert '--source are crowd options' in capsys.readouterr().err


def test_visualize_gaussians_reads_a_pose_cache(mpii_layout, tmp_path, load_tool, capsys):
    """The MPII annotation file's joints are MMPose keypoints: the viewer shifts
    them by +0.5 px like the precompute, so the cache is not reported stale."""
    from gst_mm.engine import collect_gaussian_samples
    from gst_mm.splatting import GaussianCache, fit_missing
    from gst_mm.utils.config import load_run_config
    cfg = load_run_config(GST_W32, {'data_root': mpii_layout})
    from gst_mm.utils.config import build_split_dataset
    samples, _ = collect_gaussian_samples(build_split_dataset(cfg, 'train'))
    cache_dir = str(tmp_path / 'cache')
    fit_missing(samples[:1], GaussianCache(cache_dir, data_root=mpii_layout),
                dict(iterations=2), progress=False)
    tool = load_tool('visualize_gaussians')
    ann = osp.join(mpii_layout, 'annotations', 'mpii_train.json')
    out = str(tmp_path / 'g.png')
    args = [samples[0].img_path, ann, '--cache-dir', cache_dir, '--data-root', mpii_layout]
    assert tool.main(args + ['--out', out]) == 0 and osp.isfile(out)
    np.testing.assert_array_equal(tool.load_points(ann, samples[0].img_path), samples[0].points)
    # the same joints without the shift (a .npy of MMPose keypoints): a clear hint
    npy = str(tmp_path / 'kpts.npy')
    np.save(npy, samples[0].points - np.float32(0.5))
    assert tool.main([samples[0].img_path, npy, '--cache-dir', cache_dir, '--data-root',
                      mpii_layout, '--out', out]) == 1
    assert '--mmpose-keypoints' in capsys.readouterr().err
    assert tool.main([samples[0].img_path, npy, '--mmpose-keypoints', '--cache-dir', cache_dir,
                      '--data-root', mpii_layout, '--out', out]) == 0
