"""A random-init GST pose model trained through MMEngine's Runner learns and stays
alive: raw per-step values (not the smoothed log), per-channel mass on held-out
images, and the collapse guard on a model that does die (relu)."""
import json
import os.path as osp

import numpy as np
import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GST_CFG = osp.join(REPO, 'configs', 'synthetic_pose',
                   'gst_res18-half_1xb32-1000it_synthetic-64x64.py')


@pytest.fixture(scope='module')
def tiny_landmarks(tmp_path_factory):
    from tiny_configs import tiny_landmarks_root
    return tiny_landmarks_root(tmp_path_factory, num_train=16, num_val=8)


def _train(root, work_dir, iters, **head):
    from mmengine.config import Config
    from mmengine.runner import Runner

    from gst_mm.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(GST_CFG)
    cache = osp.join(root, 'gst_cache')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
        cfg[loader].batch_size = 8
    for step in cfg.train_dataloader.dataset.pipeline:
        if step['type'].endswith('LoadPoseTransportKernel'):
            step.update(cache_dir=cache, data_root=root)
    cfg.custom_hooks = [dict(type='gst_mm.GSTPrecomputeHook', cache_dir=cache, data_root=root,
                             fit_cfg=dict(iterations=60), splits=('train', ))]
    cfg.model.head.update(head)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=0)
    cfg.train_cfg = dict(by_epoch=False, max_iters=iters, val_interval=iters + 1)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.param_scheduler = [dict(type='LinearLR', begin=0, end=10, start_factor=0.1,
                                by_epoch=False)]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=10**6,
                                        save_last=False)
    cfg.log_processor = dict(type='LogProcessor', window_size=1, by_epoch=False)
    runner = Runner.from_cfg(cfg)
    runner.train()
    scalars = [osp.join(r, 'vis_data', 'scalars.json') for r in [runner.log_dir]]
    rows = [json.loads(line) for line in open(scalars[0]) if '"loss"' in line]
    return runner, rows


def test_random_init_gst_pose_model_learns_and_keeps_mass(tiny_landmarks, tmp_path):
    # pure GST from step 0 (no MSE warm-up): the hardest case for a dying density
    runner, rows = _train(tiny_landmarks, str(tmp_path / 'gst'), iters=60, mse_warmup_iters=0)
    assert len(rows) == 60  # one raw value per step (window 1, interval 1)
    loss = np.array([r['loss_transport'] for r in rows])
    mass = np.array([r['joint_mass'] for r in rows])
    assert np.isfinite(loss).all()
    assert mass.min() > 0.05, mass.min()  # never dead, at any step
    assert loss[-10:].mean() < 0.8 * loss[:10].mean(), (loss[:10].mean(), loss[-10:].mean())
    assert runner.model.head._warned == set()

    # held-out images: every channel of every image keeps positive mass
    model = runner.model.eval()
    batch = next(iter(runner.build_dataloader(runner.cfg.test_dataloader)))
    with torch.no_grad():
        data = model.data_preprocessor(batch, False)
        heat = model.head.forward(model.extract_feat(data['inputs']))
        per_channel = model.head.density(heat).flatten(2).sum(-1)
    assert per_channel.shape[1] == 11
    assert (per_channel > 0.05).all(), per_channel.min()


def test_collapse_guard_fires_on_a_dead_relu_model(tiny_landmarks, tmp_path):
    """Control: a relu head whose output is below 0 everywhere (where a relu GST
    head ends up from random init, docs/pose.md) has no mass and no gradient; the
    run still "trains" with a constant loss, and the guard names every channel."""
    runner, rows = _train(tiny_landmarks, str(tmp_path / 'relu'), iters=15, nonneg='relu',
                          mse_warmup_iters=0,
                          loss=dict(type='gst_mm.JointTransportLoss', discrepancy='l1',
                                    cost_weight=0.0, entropy_weight=0.0),
                          collapse_window=10, init_cfg=dict(type='Constant', layer='Conv2d',
                                                            val=0, bias=-1.0,
                                                            override=dict(name='final_layer')))
    mass = np.array([r['joint_mass'] for r in rows])
    loss = np.array([r['loss_transport'] for r in rows])
    assert mass.max() == 0.0
    # the paper's L1 loss of an empty plan: the visible fraction of the batch
    assert (loss > 0.9).all() and (loss <= 1.0).all()
    # zero gradient: the head's last layer never moved
    final = runner.model.head.final_layer
    assert torch.all(final.weight == 0) and torch.all(final.bias == -1.0)
    assert runner.model.head._warned == set(range(11))
