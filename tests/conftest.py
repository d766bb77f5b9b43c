"""Shared pytest fixtures for gst_mm."""
import json
import os
import os.path as osp
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The 5-image MPII sample lives in the workplace's shared/ folder beside the repo;
# GST_MM_MPII_SAMPLE points elsewhere.
SHARED_DATA = osp.join(osp.dirname(REPO_ROOT), 'shared', 'data')
MPII_SAMPLE = os.environ.get('GST_MM_MPII_SAMPLE', osp.join(SHARED_DATA, 'mpii_sample'))

if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# Two cores: one thread per test process keeps runs predictable.
os.environ.setdefault('OMP_NUM_THREADS', '1')


@pytest.fixture(scope='session')
def repo_root() -> str:
    return REPO_ROOT


@pytest.fixture(scope='session')
def mpii_sample_dir() -> str:
    if not osp.isdir(MPII_SAMPLE):
        message = (f'MPII sample not found at {MPII_SAMPLE} (set GST_MM_MPII_SAMPLE)')
        if os.environ.get('CI'):  # CI has shared/ beside the clone: missing data is an error
            pytest.fail(message)
        pytest.skip(message)
    return MPII_SAMPLE


@pytest.fixture(autouse=True)
def _torch_threads():
    """Each test runs with ``OMP_NUM_THREADS`` torch threads (default 1): the suite is
    run at 1 and at 2 threads, and results must not depend on it."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(max(1, int(os.environ.get('OMP_NUM_THREADS', '1') or 1)))
    yield
    torch.set_num_threads(n)


def _import_tool(name: str):
    """Import ``tools/<name>.py`` as a module (tools are scripts, not a package)."""
    import importlib.util

    path = osp.join(REPO_ROOT, 'tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_gst_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def load_tool():
    """``load_tool('train')`` -> the tools/train.py module (call its ``main(argv)``)."""
    return _import_tool


def write_mpii_headboxes(ann_file: str, out_file: str) -> str:
    """Write an MPII-style ``headboxes_src (2, 2, N)`` .mat file for ``ann_file``
    (MMPose's MPII json), one box per annotation spanned by its upper-neck (8) and
    head-top (9) joints (pixels), so ``MpiiDataset(headbox_file=...)`` and
    ``MpiiPCKAccuracy`` (PCKh) work on a subset of the sample. Returns ``out_file``."""
    import json

    import numpy as np
    from scipy.io import savemat
    with open(ann_file) as f:
        anns = json.load(f)
    boxes = np.zeros((2, 2, len(anns)), np.float64)
    for i, ann in enumerate(anns):
        j = np.asarray(ann['joints'], np.float64)
        boxes[:, :, i] = np.stack([j[8], j[9]])
    savemat(out_file, {'headboxes_src': boxes})
    return out_file


# ---------------------------------------------------------------------- shared data
# (shared by every test package: tiny data sets)

@pytest.fixture(scope='session')
def tiny_crowd(tmp_path_factory):
    """``(data_root, cache_dir)``: 8 small synthetic images (64-96 px, 4-12 objects)."""
    pytest.importorskip('mmpose')
    from gst_mm.datasets.synthetic_crowd import SyntheticCrowdConfig, write_dataset

    root = tmp_path_factory.mktemp('tiny_crowd')
    data_root = str(root / 'data') + '/'
    cfg = SyntheticCrowdConfig(num_images=8, min_size=64, max_size=96, min_objects=4,
                               max_objects=12, near_std=4.0, split_fractions=(0.5, 0.25, 0.25),
                               seed=3)
    write_dataset(data_root, cfg)
    return data_root, str(root / 'cache')


@pytest.fixture(scope='session')
def mpii(mpii_sample_dir, tmp_path_factory):
    """Paths of the MPII sample: data_root, ann_file (relative), headbox file."""
    pytest.importorskip('mmpose')
    from gst_mm.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    tmp = tmp_path_factory.mktemp('mpii')
    ann = osp.join(mpii_sample_dir, 'annotations', 'mpii_sample.json')
    headbox = write_mpii_headboxes(ann, str(tmp / 'headboxes.mat'))
    return dict(data_root=mpii_sample_dir + '/', ann_file='annotations/mpii_sample.json',
                img_prefix='images/', headbox_file=headbox, tmp=str(tmp))


@pytest.fixture(scope='session')
def registered():
    """gst_mm and MMPose components registered (no data needed)."""
    pytest.importorskip('mmpose')
    from gst_mm.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    return True


@pytest.fixture(scope='session')
def headbox_writer():
    """:func:`write_mpii_headboxes` (an MPII-style ``mpii_gt_val.mat`` from an
    annotation file)."""
    return write_mpii_headboxes


@pytest.fixture(scope='module')
def mpii_layout(mpii, headbox_writer, tmp_path_factory):
    """MMPose's MPII layout built from the sample, one per test module (its caches
    start empty): images/ (symlinked), annotations/mpii_train.json (2 images),
    mpii_val.json and mpii_gt_val.mat (the same 2, with head boxes)."""
    root = tmp_path_factory.mktemp('my_mpii')
    os.symlink(osp.join(mpii['data_root'], 'images'), str(root / 'images'))
    ann = json.load(open(osp.join(mpii['data_root'], mpii['ann_file'])))[:2]
    (root / 'annotations').mkdir()
    for split in ('train', 'val'):
        json.dump(ann, open(root / 'annotations' / f'mpii_{split}.json', 'w'))
    headbox_writer(str(root / 'annotations' / 'mpii_val.json'),
                    str(root / 'annotations' / 'mpii_gt_val.mat'))
    return str(root) + '/'
