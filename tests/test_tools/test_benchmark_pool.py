"""A killed benchmark takes its pool workers with it (tools/benchmark/_common.run_pool):
before, ``kill PID`` on ``tools/benchmark/pose.py`` left both spawned workers training."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = '''
import os, sys, time
sys.path.insert(0, {bench!r})
import _common

def work(i, out):
    open(os.path.join(out, f'{{i}}.pid'), 'w').write(str(os.getpid()))
    time.sleep(300)

if __name__ == '__main__':
    _common.run_pool(work, [(0, {out!r}), (1, {out!r})], 2)
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        with open(f'/proc/{pid}/stat') as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except OSError:
        return False


def _wait(cond, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGKILL])
def test_workers_exit_with_the_benchmark(tmp_path, sig):
    script = tmp_path / 'bench.py'
    script.write_text(SCRIPT.format(bench=osp.join(REPO, 'tools', 'benchmark'),
                                    out=str(tmp_path)))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=str(tmp_path))
    try:
        pid_files = [tmp_path / '0.pid', tmp_path / '1.pid']
        assert _wait(lambda: all(p.exists() and p.read_text() for p in pid_files), 120)
        workers = [int(p.read_text()) for p in pid_files]
        assert all(_alive(w) for w in workers)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        assert _wait(lambda: not any(_alive(w) for w in workers), 20), workers
    finally:
        if proc.poll() is None:
            proc.kill()
