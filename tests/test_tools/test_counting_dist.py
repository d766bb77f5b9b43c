"""Two-process CPU distributed training (torchrun, --launcher pytorch, gloo)."""
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest

pytest.importorskip('mmpose')

from tiny_configs import REPO_ROOT, tiny_counting_cfg  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_process_cpu_training(tiny_crowd, tmp_path):
    train_py = osp.join(REPO_ROOT, 'tools', 'train.py')
    if not osp.isfile(train_py):
        pytest.skip('tools/train.py not written yet')
    data_root, cache_dir = tiny_crowd
    cfg = tiny_counting_cfg('gst_vgg19_synthetic.py', data_root, cache_dir, tmp_path / 'dist',
                            iters=3)
    cfg_path = str(tmp_path / 'tiny_gst_dist.py')
    cfg.dump(cfg_path)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO_ROOT)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_addr', '127.0.0.1', '--master_port', str(_free_port()), train_py, cfg_path,
           '--launcher', 'pytorch']
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert osp.isfile(osp.join(str(tmp_path / 'dist'), 'iter_3.pth')), log[-2000:]
    assert 'Distributed training: True' in log, log[-2000:]
    # the precompute hook split the missing fits between the two ranks
    assert 'rank 0/2' in log, log[-2000:]
