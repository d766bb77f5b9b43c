"""Shared pytest fixtures for gst_mm."""
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
def _one_torch_thread():
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
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
