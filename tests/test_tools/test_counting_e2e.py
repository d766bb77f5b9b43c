"""Runner train + val + checkpoint + test on a tiny synthetic set (GST and a baseline)."""
import glob
import os.path as osp

import pytest
import torch

pytest.importorskip('mmpose')

from tiny_configs import tiny_counting_cfg  # noqa: E402


def _runner(cfg):
    from mmengine.runner import Runner

    from gst_mm.utils import register_all_modules

    register_all_modules()
    return Runner.from_cfg(cfg)


def test_gst_train_val_then_checkpoint_test_roundtrip(tiny_crowd, tmp_path):
    data_root, cache_dir = tiny_crowd
    cfg = tiny_counting_cfg('gst_vgg19_synthetic.py', data_root, cache_dir, tmp_path / 'gst')
    runner = _runner(cfg)
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.train()
    # the precompute hook fitted one cache file per training image
    with open(osp.join(data_root, 'train.txt')) as f:
        train_names = [line.strip() for line in f if line.strip()]
    cached = glob.glob(osp.join(cache_dir, '**', '*.h5'), recursive=True)
    assert len(cached) >= len(train_names)
    after = runner.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    assert torch.isfinite(torch.tensor(runner.message_hub.get_scalar('train/loss').current()))
    ckpts = glob.glob(osp.join(str(tmp_path / 'gst'), '*.pth'))
    assert any('best_score' in c for c in ckpts), ckpts
    metrics = runner.test()
    assert set(metrics) >= {'MAE', 'MSE', 'NAE', 'score', 'AP', 'AR', 'F1'}
    assert metrics['score'] == pytest.approx(2 * metrics['MSE'] + metrics['MAE'])
    # save -> load -> test round trip reproduces the numbers
    last = osp.join(str(tmp_path / 'gst'), 'iter_3.pth')
    cfg2 = tiny_counting_cfg('gst_vgg19_synthetic.py', data_root, cache_dir, tmp_path / 'reload')
    cfg2.load_from = last
    reloaded = _runner(cfg2).test()
    for key in ('MAE', 'MSE', 'NAE'):
        assert reloaded[key] == pytest.approx(metrics[key], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize('name', ['l2_vgg19_synthetic.py', 'gst-heuristic_vgg19_synthetic.py'])
def test_baseline_variants_train(tiny_crowd, tmp_path, name):
    data_root, cache_dir = tiny_crowd
    cfg = tiny_counting_cfg(name, data_root, cache_dir, tmp_path / 'run', iters=2)
    assert not cfg.custom_hooks  # nothing to fit
    runner = _runner(cfg)
    runner.train()
    assert torch.isfinite(torch.tensor(runner.message_hub.get_scalar('train/loss').current()))
    assert 'MAE' in runner.test()


def test_default_cache_lives_with_the_data_set(tiny_crowd, tmp_path):
    """Configs that name no cache: GSTPrecomputeHook writes ``<data_root>/gst_cache`` and
    LoadCrowdGaussians reads it (same keys), so a run trains with the fitted plan."""
    import shutil

    from gst_mm.splatting import default_cache_dir

    data_root, cache_dir = tiny_crowd
    root = str(tmp_path / 'own') + '/'
    shutil.copytree(data_root, root)
    cfg = tiny_counting_cfg('gst_vgg19_synthetic.py', root, cache_dir, tmp_path / 'run', iters=2)
    for step in cfg.train_dataloader.dataset.pipeline:
        step.pop('cache_dir', None)
    for hook in cfg.custom_hooks:
        hook.pop('cache_dir', None)
    runner = _runner(cfg)
    runner.train()
    with open(osp.join(root, 'train.txt')) as f:
        train_names = [line.strip() for line in f if line.strip()]
    cached = glob.glob(osp.join(default_cache_dir(root), '**', '*.h5'), recursive=True)
    assert len(cached) == len(train_names)
    assert not glob.glob(osp.join(root, '*.h5'))
    # the transform found every sample's Gaussians there (a miss raises GaussianCacheError)
    sample = runner.train_dataloader.dataset[0]['data_samples']
    assert sample.transport_kernel.num_points == len(sample.gt_points)


def test_soft_plan_config_fits_its_own_cache_and_trains(tiny_crowd, tmp_path):
    """gst-soft_vgg19_synthetic.py differs by one value (LoadCrowdGaussians plan='soft'):
    the hook sees it, fits the soft plan into ``<data_root>/gst_cache_soft``, and the
    run trains on mixture kernels."""
    import shutil

    from gst_mm.splatting import default_cache_dir
    from gst_mm.splatting.soft_gaussians import SoftGaussians

    data_root, cache_dir = tiny_crowd
    root = str(tmp_path / 'own') + '/'
    shutil.copytree(data_root, root)
    cfg = tiny_counting_cfg('gst-soft_vgg19_synthetic.py', root, cache_dir, tmp_path / 'run',
                            iters=2)
    for step in cfg.train_dataloader.dataset.pipeline:
        step.pop('cache_dir', None)
    for hook in cfg.custom_hooks:
        hook.pop('cache_dir', None)
        hook['fit_cfg'] = dict(hook.get('fit_cfg') or {}, soft=dict(refine_iters=10))
    runner = _runner(cfg)
    runner.train()
    assert torch.isfinite(torch.tensor(runner.message_hub.get_scalar('train/loss').current()))
    with open(osp.join(root, 'train.txt')) as f:
        train_names = [line.strip() for line in f if line.strip()]
    cached = glob.glob(osp.join(default_cache_dir(root, 'soft'), '**', '*.h5'), recursive=True)
    assert len(cached) == len(train_names)
    assert not osp.exists(default_cache_dir(root))
    ds = runner.train_dataloader.dataset
    pipeline = ds.pipeline.transforms
    load = next(t for t in pipeline if type(t).__name__ == 'LoadCrowdGaussians')
    results = ds.get_data_info(0)
    for t in pipeline[:pipeline.index(load) + 1]:
        results = t(results)
    assert isinstance(results['gaussians'], SoftGaussians)
    assert results['gaussians'].num_components >= len(results['gaussians'])
