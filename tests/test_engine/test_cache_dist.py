"""GSTPrecomputeHook under two gloo processes: the shard split, and one rank failing
stops both ranks with the same message within seconds (not the 30-min timeout)."""
import os
import os.path as osp
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip('mmpose')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

SCRIPT = r'''
import datetime, os, sys
import torch.distributed as dist
dist.init_process_group('gloo', timeout=datetime.timedelta(seconds=600))
rank = dist.get_rank()
from gst_mm.utils import register_all_modules
register_all_modules()
from gst_mm.datasets import CrowdCountingDataset
from gst_mm.engine import GSTPrecomputeHook
import gst_mm.engine.hooks.precompute_hook as hook_mod

ds = CrowdCountingDataset(data_root=sys.argv[1], ann_file='all.txt', pipeline=[])
if os.environ.get('RAISE_ON_RANK') == str(rank):
    def broken(*args, **kwargs):
        raise OSError('disk full (injected)')
    hook_mod.precompute_dataset = broken


class Hook(GSTPrecomputeHook):
    @staticmethod
    def _dataset_of(runner, split):
        return ds


out = os.path.join(os.path.dirname(os.path.abspath(__file__)), f'rank{rank}.txt')
try:
    Hook(fit_cfg=dict(iterations=4)).before_run(None)
    open(out, 'w').write('OK')
except RuntimeError as e:
    open(out, 'w').write('ERROR ' + str(e).replace(chr(10), ' | '))
    sys.exit(3)
finally:
    # a gloo group left to the interpreter's exit can abort the process ("terminate
    # called without an active exception", seen once on a fresh clone): end it here
    dist.destroy_process_group()
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _run(script, root, **env_extra):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO, **env_extra)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_addr', '127.0.0.1', '--master_port', str(_free_port()), str(script), root]
    outs = [osp.join(osp.dirname(str(script)), f'rank{r}.txt') for r in (0, 1)]
    for out in outs:
        if osp.exists(out):
            os.remove(out)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - t0
    lines = {r: open(out).read() for r, out in enumerate(outs) if osp.exists(out)}
    return proc, lines, seconds


def test_one_rank_failing_stops_both_with_one_message(tmp_path):
    from .test_cache_contract import _crowd_root
    root = _crowd_root(tmp_path / 'd', n=4)
    script = tmp_path / 'run_hook.py'
    script.write_text(SCRIPT)
    # all good: each rank fits its interleaved half, both finish
    proc, lines, _ = _run(script, root)
    assert proc.returncode == 0 and lines == {0: 'OK', 1: 'OK'}, proc.stdout + proc.stderr
    assert len(os.listdir(osp.join(root, 'gst_cache', 'images'))) == 4
    # an image of rank 1's shard (sample 1) truncated: both ranks stop, same message
    img = osp.join(root, 'images', 's0_1.jpg')
    data = open(img, 'rb').read()
    open(img, 'wb').write(data[:len(data) // 2])
    proc, lines, seconds = _run(script, root)
    assert proc.returncode != 0 and set(lines) == {0, 1}, proc.stdout + proc.stderr
    assert lines[0] == lines[1] and lines[0].startswith('ERROR GSTPrecomputeHook: 1 image(s)')
    assert 's0_1.jpg: truncated JPEG' in lines[0]
    # an exception on rank 0 only (before any collective): rank 1 does not hang
    proc, lines, seconds = _run(script, root, RAISE_ON_RANK='0')
    assert proc.returncode != 0 and set(lines) == {0, 1}, proc.stdout + proc.stderr
    assert lines[0] == lines[1] == ('ERROR GSTPrecomputeHook failed on 1 of 2 ranks: rank 0: '
                                    'OSError: disk full (injected)')
    assert seconds < 120  # process start-up included; the gloo timeout is 600 s
