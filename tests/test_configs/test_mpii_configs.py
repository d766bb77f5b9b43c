"""GST configs: what gstify_config.py produces, and tiny train/test runs on MPII."""
import json
import os
import os.path as osp
import re

import numpy as np
import pytest
from mmengine.config import Config

MPII_RES50 = 'mmpose::body_2d_keypoint/topdown_heatmap/mpii/td-hm_res50_8xb64-210e_mpii-256x256.py'

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))




def _unscoped(obj):
    """Drop the ``_scope_='mmpose'`` tags MMEngine adds to dicts of ``mmpose::`` bases."""
    if isinstance(obj, dict):
        return {k: _unscoped(v) for k, v in obj.items() if k != '_scope_'}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unscoped(v) for v in obj)
    return obj


def _types(pipeline):
    return [step['type'] for step in pipeline]


@pytest.mark.parametrize('width', [32, 48])
@pytest.mark.parametrize('preset,prefix', [('default', 'gst'), ('paper', 'gst-paper')])
def test_shipped_configs_are_gstify_output_and_change_only_gst_parts(mpii, width, preset, prefix,
                                                                     load_tool):
    from gst_mm.models.heads.recipe import PRESETS
    recipe = PRESETS[preset]
    name = f'hrnet-w{width}_8xb64-210e_mpii-256x256.py'
    src = f'mmpose::body_2d_keypoint/topdown_heatmap/mpii/td-hm_{name}'
    gst_path = osp.join(REPO, 'configs', 'mpii', f'{prefix}_{name}')
    text = load_tool('gstify_config').gstify(src, gst_path, recipe=recipe)
    assert open(gst_path).read() == text, (
        f'regenerate with tools/gstify_config.py {src} {gst_path} --preset {preset} --force')

    gst = _unscoped(Config.fromfile(gst_path).to_dict())
    plain = _unscoped(Config.fromfile(osp.join(REPO, 'configs', 'mpii', f'td-hm_{name}')).to_dict())
    # the GST parts: the recipe's head fields, MMPose's MSE loss kept as mse_loss
    head = gst['model'].pop('head')
    plain_head = plain['model'].pop('head')
    assert plain_head.pop('type') == 'HeatmapHead'
    expected = recipe.head(mse_loss=plain_head.pop('loss'))
    expected['loss'].pop('_delete_')
    for key, value in expected.items():
        assert head.pop(key) == value, key
    assert head == plain_head  # the layers, codec and test settings are MMPose's
    pipe = gst['train_dataloader']['dataset'].pop('pipeline')
    plain_pipe = plain['train_dataloader']['dataset'].pop('pipeline')
    step = pipe.pop(_types(pipe).index('gst_mm.LoadPoseTransportKernel'))
    assert _types(pipe)[_types(pipe).index('GenerateTarget') + 1] == 'PackPoseInputs'
    assert step == dict(type='gst_mm.LoadPoseTransportKernel', cache_dir='data/mpii/gst_cache',
                        data_root='data/mpii/', stride=4, **recipe.transform())
    assert pipe == plain_pipe
    hooks = gst.pop('custom_hooks')
    assert hooks == plain.pop('custom_hooks', []) + [dict(
        type='gst_mm.GSTPrecomputeHook', cache_dir='data/mpii/gst_cache', data_root='data/mpii/',
        fit_cfg=dict(iterations=recipe.fit_iterations), splits=('train', ))]
    for key in ('custom_imports', 'gaussian_cache_dir', 'gaussian_data_root', 'train_pipeline'):
        gst.pop(key)
    plain.pop('train_pipeline', None)
    assert gst == plain  # everything else is MMPose's recipe


def _tiny(cfg, mpii, work_dir, cache_dir, train_images=2, val=True):
    """Point a config at the MPII sample: batch 2, one iteration, random init."""
    cfg.model.backbone.init_cfg = None
    cfg.work_dir = work_dir
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dl = cfg[loader]
        dl.batch_size = 2
        dl.num_workers = 0
        dl.persistent_workers = False
        ds = dl.dataset
        ds.data_root = mpii['data_root']
        ds.ann_file = mpii['ann_file']
        ds.data_prefix = dict(img=mpii['img_prefix'])
        if loader == 'train_dataloader':
            ds.indices = train_images
        else:
            ds.headbox_file = mpii['headbox_file']
    for step in cfg.train_dataloader.dataset.pipeline:
        if step['type'].endswith('LoadPoseTransportKernel'):
            step.update(cache_dir=cache_dir, data_root=mpii['data_root'])
    for hook in cfg.get('custom_hooks', []):
        if hook['type'].endswith('GSTPrecomputeHook'):
            hook.update(cache_dir=cache_dir, data_root=mpii['data_root'],
                        fit_cfg=dict(iterations=5))
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)
    if not val:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    return cfg


def test_gst_hrnet_w32_trains_and_tests_through_the_tools(mpii, tmp_path, load_tool):
    """One training iteration (precompute via the hook) + validation, then
    tools/test.py on the saved checkpoint: both report the same MPII PCKh."""
    work = str(tmp_path / 'work')
    cache = str(tmp_path / 'cache')
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'mpii',
                                   'gst_hrnet-w32_8xb64-210e_mpii-256x256.py'))
    cfg = _tiny(cfg, mpii, work, cache)
    path = str(tmp_path / 'gst_tiny.py')
    cfg.dump(path)

    load_tool('train').main([path, '--work-dir', work])
    assert len(os.listdir(cache)) > 0  # the hook fitted the 2 training images
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    out = str(tmp_path / 'metrics.json')
    load_tool('test').main([path, ckpt, '--work-dir', work, '--out', out])
    metrics = json.load(open(out))
    pckh = metrics['PCK']  # MpiiPCKAccuracy's PCKh@0.5 (normalised by head size)
    assert 0.0 <= pckh <= 100.0 and 'Head PCK' in metrics, metrics

    # the training run's validation of the same weights logged the same PCKh
    logs = [osp.join(r, f) for r, _, fs in os.walk(work) for f in fs if f.endswith('.log')]
    vals = [float(re.search(r' PCK: ([0-9.]+)', line).group(1))
            for p in logs for line in open(p) if 'Epoch(val)' in line and ' PCK: ' in line]
    assert len(vals) == 1 and vals[0] == pytest.approx(pckh, abs=1e-5)


def test_gstify_res50_trains_one_iteration(mpii, tmp_path, load_tool):
    out = str(tmp_path / 'gst_res50.py')
    load_tool('gstify_config').main([MPII_RES50, out])
    cfg = Config.fromfile(out)
    assert cfg.model.head.type == 'gst_mm.GSTHeatmapHead'
    assert _types(cfg.train_dataloader.dataset.pipeline)[-2:] == [
        'gst_mm.LoadPoseTransportKernel', 'PackPoseInputs']
    assert cfg.custom_hooks[-1]['type'] == 'gst_mm.GSTPrecomputeHook'
    work, cache = str(tmp_path / 'work'), str(tmp_path / 'cache')
    cfg = _tiny(cfg, mpii, work, cache, val=False)
    path = str(tmp_path / 'gst_res50_tiny.py')
    cfg.dump(path)
    load_tool('train').main([path, '--work-dir', work])
    logs = [osp.join(r, f) for r, _, fs in os.walk(work) for f in fs if f.endswith('.log')]
    # MMEngine's total ' loss: ' (the head's own loss keys may change)
    steps = [float(re.search(r' loss: ([0-9.e+-]+)', line).group(1))
             for p in logs for line in open(p) if 'Epoch(train)' in line and ' loss: ' in line]
    assert len(steps) == 1 and np.isfinite(steps[0]) and steps[0] > 0


def test_gstify_refuses_non_heatmap_configs(mpii, tmp_path, load_tool):
    gstify = load_tool('gstify_config').gstify
    with pytest.raises(ValueError, match='HeatmapHead'):
        gstify('mmpose::body_2d_keypoint/topdown_regression/mpii/'
               'td-reg_res50_8xb64-210e_mpii-256x256.py')
    # an existing GST config is refused rather than converted twice
    with pytest.raises(ValueError, match='GSTHeatmapHead|HeatmapHead'):
        gstify(osp.join(REPO, 'configs', 'mpii', 'gst_hrnet-w32_8xb64-210e_mpii-256x256.py'))
