"""Tiny counting configs for tests: a config of configs/counting/ shrunk to the tiny
synthetic crowd set of the `tiny_crowd` fixture (tests/conftest.py). Imported by tests as
`from tiny_configs import tiny_counting_cfg` (tests/ is on sys.path)."""
import copy
import os.path as osp

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(REPO_ROOT, 'configs', 'counting')
TINY_FIT = dict(iterations=20)


def _retarget(obj, data_root, cache_dir, crop_size):
    """Point every data root / cache dir / crop of a config dict at the tiny set."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ('data_root', ) and value is not None:
                obj[key] = data_root
            elif key in ('cache_dir', 'gaussian_cache_dir'):
                obj[key] = cache_dir
            elif key == 'crop_size':
                obj[key] = crop_size
            else:
                _retarget(value, data_root, cache_dir, crop_size)
        if obj.get('type') == 'GSTPrecomputeHook':
            obj['fit_cfg'] = dict(TINY_FIT)
        if obj.get('type') in ('GSTPrecomputeHook', 'LoadCrowdGaussians'):
            obj['cache_dir'] = cache_dir  # configs leave it to the default
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _retarget(value, data_root, cache_dir, crop_size)


def tiny_counting_cfg(name, data_root, cache_dir, work_dir, iters=3, crop_size=48):
    """``configs/counting/<name>`` shrunk for a seconds-long CPU run on the tiny set."""
    from mmengine.config import Config

    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    d = copy.deepcopy(cfg.to_dict())
    _retarget(d, data_root, cache_dir, crop_size)
    d['model']['backbone']['widths'] = (4, 8, 8, 16, 16)
    for split in ('train', 'val', 'test'):
        loader = d[f'{split}_dataloader']
        loader['num_workers'] = 0
        loader['persistent_workers'] = False
    d['train_dataloader']['batch_size'] = 2
    d['train_cfg'] = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters)
    d['default_hooks']['checkpoint'].update(by_epoch=False, interval=iters)
    d['default_hooks']['logger']['interval'] = 1
    d['log_processor'] = dict(type='LogProcessor', window_size=1, by_epoch=False)
    d['work_dir'] = str(work_dir)
    d['experiment_name'] = f'{osp.splitext(name)[0]}_{osp.basename(str(work_dir))}'
    d['randomness'] = dict(seed=0)
    return Config(d, filename=osp.join(CONFIG_DIR, name))


def tiny_counter_files(tiny_crowd, tmp_path, name='l2_vgg19_synthetic.py', bias_shift=0.0):
    """The tiny ``name`` counter dumped to ``tmp_path/tiny.py`` and a checkpoint of its
    initial weights (``bias_shift`` added to the last layer's single bias, e.g. to make
    the output positive): ``(cfg, cfg_file, ckpt, data_root)``."""
    import torch
    from mmengine.runner import Runner

    from gst_mm.utils import register_all_modules
    data_root, cache_dir = tiny_crowd
    cfg = tiny_counting_cfg(name, data_root, cache_dir, tmp_path / 'work')
    cfg_file = str(tmp_path / 'tiny.py')
    cfg.dump(cfg_file)
    register_all_modules()
    state = Runner.from_cfg(cfg).model.state_dict()
    for k in state:
        if k.endswith('bias') and state[k].numel() == 1:
            state[k] = state[k] + bias_shift
    ckpt = str(tmp_path / 'init.pth')
    torch.save(dict(state_dict=state, meta=dict()), ckpt)
    return cfg, cfg_file, ckpt, data_root


def tiny_landmarks_root(tmp_path_factory, num_train, num_val):
    """A tiny synthetic landmark set (64 px images, 28-50 px figures) in a new temp
    folder; returns its root (with a trailing slash)."""
    from gst_mm.datasets.synthetic_pose import SyntheticPoseConfig, write_dataset
    root = str(tmp_path_factory.mktemp('landmarks')) + '/'
    write_dataset(root, SyntheticPoseConfig(num_train=num_train, num_val=num_val,
                                            image_size=64, min_height=28, max_height=50))
    return root
