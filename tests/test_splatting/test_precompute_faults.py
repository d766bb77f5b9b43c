"""Fault injection of the Gaussian precompute: SIGKILLed runs never leave a partial
cache entry; the next run resumes, refits what was not finished and removes the temp
files of the dead writers (:func:`remove_stale_temps`); corrupt entries are refitted.

The killed runs are real processes. Importing torch takes seconds, so one runner
subprocess (a script written to ``tmp_path``) imports everything once and forks one
child per precompute run; the runner kills its own child (so a pid is never signalled
after it was reaped) and reaps it before the next run starts, as a shell would (a
zombie's pid still counts as a live writer). The write window is widened only inside
the runner (``GST_FAULT_SLOW``: a sleep inside the HDF5 write or between the complete
temp file and its ``os.replace``), never in the package.
"""
import json
import os
import os.path as osp
import re
import select
import signal
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from gst_mm.splatting import GaussianCache, GaussianCacheError, GaussianSample, fit_missing
from gst_mm.splatting.cache import STALE_TMP_SECONDS, remove_stale_temps
from gst_mm.splatting.fit import fit_settings, fit_settings_key
from gst_mm.splatting.image_io import file_sha1
from gst_mm.splatting.precompute import sample_status
from gst_mm.splatting.synthetic import make_scene

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HOST = socket.gethostname()
#: temp file of a writer (the name GaussianCache.save gives)
TMP_RE = re.compile(r'^(?P<entry>.+\.h5)\.tmp-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}$')
#: two fit settings (different keys): a run with the other one refits every entry
SETTINGS = (dict(iterations=6), dict(iterations=7))
SLOW_SECONDS = 0.4  # widened write window of the runner's children
NUM_KILLS = 10

RUNNER = r'''
import json, os, signal, socket, sys, time, traceback

import h5py
import numpy as np
import torch

torch.set_num_threads(1)
from gst_mm.splatting import GaussianCache, GaussianSample, fit_missing  # noqa: E402


def _slow(where):
    mode, _, seconds = os.environ.get('GST_FAULT_SLOW', '').partition(':')
    if mode == where:
        time.sleep(float(seconds))


_replace = os.replace


def slow_replace(src, dst, *args, **kwargs):
    if '.h5.tmp-' in os.fspath(src):  # the temp file is complete and closed
        _slow('before_replace')
    return _replace(src, dst, *args, **kwargs)


_create = h5py.Group.create_dataset


def slow_create(self, name, *args, **kwargs):
    out = _create(self, name, *args, **kwargs)
    if name == 'covariances':  # half of the datasets, no attributes yet
        self.file.flush()
        _slow('mid_write')
    return out


os.replace = slow_replace
h5py.Group.create_dataset = slow_create

spec = json.load(open(sys.argv[1]))
samples = [GaussianSample(k, p, np.asarray(pts, np.float64)) for k, p, pts in spec['samples']]
cache = GaussianCache(spec['cache'], data_root=spec['data_root'])
host = socket.gethostname()


def entries():
    out = {}
    for folder, _, names in os.walk(spec['cache']):
        for n in names:
            if n.endswith('.h5'):
                st = os.stat(os.path.join(folder, n))
                out[n] = (st.st_ino, st.st_mtime_ns)
    return out


def child_temps(pid):
    tag = f'.tmp-{host}-{pid}-'
    found = set()
    for folder, _, names in os.walk(spec['cache']):
        found.update(os.path.join(folder, n) for n in names if tag in n)
    return found


print('ready', flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    old = entries()
    pid = os.fork()
    if pid == 0:  # one precompute run
        code = 1
        try:
            if cmd['mode'] in ('before_replace', 'mid_write'):
                os.environ['GST_FAULT_SLOW'] = f"{cmd['mode']}:{cmd['slow']}"
            s = fit_missing(samples, cache, cmd['fit_cfg'], workers=1, progress=False)
            with open(cmd['summary'], 'w') as f:
                json.dump(dict(fitted=s.fitted, skipped=s.skipped, failed=s.failed,
                               refitted=s.refitted, fit_key=s.fit_key), f)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    status, t0, seen, timeout = None, time.monotonic(), set(), False
    # 'random': SIGKILL `delay` after the run wrote `after` entries; window modes: once
    # the nth temp file of the run exists, plus `delay`; 'none': let it finish (all
    # bounded by a 60 s guard)
    end = t0 + 60.0
    if cmd['mode'] == 'random' and cmd['after'] == 0:
        end = t0 + cmd['delay']
    while True:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
        if time.monotonic() >= end:
            timeout = end == t0 + 60.0
            break
        if cmd['mode'] == 'random' and end == t0 + 60.0:
            new = entries()
            if sum(old.get(n) != v for n, v in new.items()) + len(set(old) - set(new)) \
                    >= cmd['after']:
                end = time.monotonic() + cmd['delay']
        elif cmd['mode'] not in ('random', 'none'):
            seen |= child_temps(pid)
            if len(seen) >= cmd['nth']:
                time.sleep(cmd['delay'])
                break
        time.sleep(0.001)
    if status is None:
        os.kill(pid, signal.SIGKILL)  # our own unreaped child: its pid is not reused
        status = os.waitpid(pid, 0)[1]
    killed = os.WIFSIGNALED(status)  # (it may have exited just before the signal)
    print(json.dumps(dict(
        pid=pid, killed=killed, timeout=timeout, seconds=time.monotonic() - t0,
        signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        exit=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None)), flush=True)
'''


def write_dataset(root, n=8, size=48):
    """``n`` tiny synthetic images in two folders (PNG in ``a``, JPEG in ``b``)."""
    samples = []
    for i in range(n):
        folder, ext = ('a', 'png') if i % 2 == 0 else ('b', 'jpg')
        os.makedirs(root / folder, exist_ok=True)
        scene = make_scene(size, size, 3, std_range=(2.0, 5.0), seed=i)
        path = str(root / folder / f'img{i}.{ext}')
        assert cv2.imwrite(path, np.ascontiguousarray(scene.image[..., ::-1]))
        samples.append(GaussianSample(f'{folder}/img{i}', path, scene.points))
    return samples


def key_of(cfg):
    return fit_settings_key(fit_settings(**cfg))


def walk_files(root):
    return sorted(osp.join(d, n) for d, _, names in os.walk(root) for n in names)


def temps(root):
    return [p for p in walk_files(root) if '.tmp-' in osp.basename(p)]


def assert_entry_valid(cache, sample, fit_key, ref):
    """The entry passes the full validity rule, loads, and equals the reference fit."""
    st = sample_status(sample, cache, fit_key)
    assert st is not None and st.valid, (sample.key, st)
    g, idx = cache.load(sample.img_path, sample.points, cv2.imread(sample.img_path).shape[:2],
                        image_sha1=file_sha1(sample.img_path), fit_key=fit_key,
                        return_index=True)
    arrays = g.numpy()
    for name in ('means', 'covariances', 'colors'):
        np.testing.assert_allclose(arrays[name], ref[name], rtol=1e-5, atol=1e-6,
                                   err_msg=f'{sample.key} {name}')
    np.testing.assert_array_equal(idx, ref['point_index'])


class Runner:
    """The runner subprocess: ``run(...)`` forks one precompute run and returns how
    it ended."""

    def __init__(self, tmp_path, samples, cache):
        script = tmp_path / 'runner.py'
        script.write_text(RUNNER)
        spec = tmp_path / 'spec.json'
        spec.write_text(json.dumps(dict(
            samples=[(s.key, s.img_path, np.asarray(s.points).tolist()) for s in samples],
            cache=cache.root, data_root=cache.data_root)))
        self.errlog = tmp_path / 'runner.err'
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [REPO] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
        env.pop('GST_FAULT_SLOW', None)
        self.err = open(self.errlog, 'w')
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(spec)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.err, text=True, env=env)
        try:
            assert self._line() == 'ready'
        except BaseException:
            self.close()
            raise

    def _line(self, timeout=120.0):
        # one line per command and nothing buffered between them: select on the pipe
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            self.proc.kill()
            raise AssertionError(f'runner hangs: {self.errlog.read_text()[-3000:]}')
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            raise AssertionError(f'runner died: {self.errlog.read_text()[-3000:]}')
        return line.strip()

    def run(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + '\n')
        self.proc.stdin.flush()
        return json.loads(self._line())

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.err.close()


def test_sigkill_at_random_moments_never_leaves_a_partial_entry(tmp_path):
    """10+ SIGKILLs of resumed precompute runs (seeded moments; >= 3 proven inside
    the write window): after each, every entry file present passes the validity rule
    and equals its reference; the resumed runs fit exactly the entries not valid, skip
    the others and leave no temp file of the dead writers."""
    rng = np.random.default_rng(20240611)
    samples = write_dataset(tmp_path / 'data')
    cache = GaussianCache(tmp_path / 'cache', data_root=tmp_path / 'data')
    by_entry = {cache.path_for(s.img_path): s for s in samples}
    keys = [key_of(cfg) for cfg in SETTINGS]
    assert keys[0] != keys[1]

    # references: one uninterrupted in-process run per setting, read back from its files
    refs = []
    t0 = time.perf_counter()
    for i, cfg in enumerate(SETTINGS):
        ref_cache = GaussianCache(tmp_path / f'ref{i}', data_root=tmp_path / 'data')
        summary = fit_missing(samples, ref_cache, cfg, progress=False)
        assert sorted(summary.fitted) == sorted(s.key for s in samples) and summary.ok
        refs.append({})
        for s in samples:
            g, idx = ref_cache.load(s.img_path, s.points, fit_key=keys[i], return_index=True)
            refs[i][s.key] = dict(g.numpy(), point_index=idx)
    per_image = (time.perf_counter() - t0) / (2 * len(samples))

    plan = ['before_replace', 'before_replace', 'mid_write', 'mid_write'] + \
        ['random'] * (NUM_KILLS - 4)
    plan = [plan[i] for i in rng.permutation(len(plan))]
    # one uninterrupted resumed run right after the 2nd kill inside the write window
    # (it must remove that dead writer's temp file); every entry is then valid, so the
    # next runs switch settings and are killed while overwriting stale entries
    second = [i for i, mode in enumerate(plan) if mode != 'random'][1]
    plan.insert(second + 1, 'none')
    runner = Runner(tmp_path, samples, cache)
    cur = 0  # index of the current fit settings
    kills, completed, in_window, swept, overwrites, dead_pids = [], 0, 0, 0, 0, set()
    unfinished = set()  # entries whose write a kill interrupted, not refitted since
    try:
        for attempt in range(60):
            if not plan:
                break
            before = {s.key: sample_status(s, cache, keys[cur]) for s in samples}
            if all(st.valid for st in before.values()):  # nothing left: switch settings
                cur = 1 - cur
                before = {s.key: sample_status(s, cache, keys[cur]) for s in samples}
                assert all(st.state == 'stale' and st.kind == 'settings'
                           for st in before.values())
            todo = sorted(k for k, st in before.items() if not st.valid)
            mode = plan[0]
            nth = int(rng.integers(1, min(3, len(todo)) + 1))
            # random moments: from the start (imports, status checks, first fit) or after
            # the run wrote `after` entries (then anywhere in the remaining fits)
            after = int(rng.integers(0, min(3, len(todo))))
            if mode == 'random' and after == 0:
                delay = float(rng.uniform(0.0, 1.0))
            elif mode == 'random':
                delay = float(rng.uniform(0.0, 1.2 * per_image * (len(todo) - after)))
            else:
                delay = float(rng.uniform(0.0, SLOW_SECONDS / 2))
            summary_path = tmp_path / f'summary{attempt}.json'
            temps_before = temps(cache.root)
            res = runner.run(fit_cfg=SETTINGS[cur], mode=mode, delay=delay, nth=nth, after=after,
                             slow=SLOW_SECONDS, summary=str(summary_path))
            dead_pids.add(res['pid'])
            assert not res['timeout'], runner.errlog.read_text()

            # every file in the cache is an entry of a sample or a temp of our writers
            left = []
            for path in walk_files(cache.root):
                m = TMP_RE.match(path)
                if path.endswith('.h5.claim'):  # a killed writer's claim (taken over later)
                    assert path[:-len('.claim')] in by_entry, path
                elif m is None:
                    assert path in by_entry, path
                else:
                    assert m['entry'] in by_entry and m['host'] == HOST, path
                    assert int(m['pid']) in dead_pids, path
                    if int(m['pid']) == res['pid']:
                        left.append(m['entry'])
            # no partial entry: each present *.h5 is a complete entry of this run's
            # settings or (not yet refitted) of the previous ones, equal to its reference
            for path, s in by_entry.items():
                if not osp.exists(path):
                    continue
                i = cur if sample_status(s, cache, keys[cur]).valid else 1 - cur
                assert_entry_valid(cache, s, keys[i], refs[i][s.key])

            if res['killed']:
                assert res['signal'] == signal.SIGKILL and res['exit'] is None, res
                plan.pop(0)
                # a temp file of the dead writer outlives it: it died in its write window
                assert len(left) <= 1
                if left:
                    assert not sample_status(by_entry[left[0]], cache, keys[cur]).valid
                elif mode != 'random':  # the kill came late (a loaded machine): retry
                    plan.insert(0, mode)
                in_window += len(left)
                overwrites += any(st.state == 'stale' for st in before.values())
                unfinished.update(by_entry[e].key for e in left)
                left_todo = sum(not sample_status(s, cache, keys[cur]).valid for s in samples)
                kills.append((mode, len(todo), left_todo, round(res['seconds'], 3), bool(left)))
                continue

            # the run was not killed (it finished before its moment): it resumed
            assert res['exit'] == 0 and res['signal'] is None, runner.errlog.read_text()
            completed += 1
            if mode == 'none':
                plan.pop(0)
                assert temps_before, 'the window kill just before left no temp file'
            summary = json.loads(summary_path.read_text())
            assert summary['fit_key'] == keys[cur] and not summary['failed']
            assert sorted(summary['fitted']) == todo
            assert sorted(summary['skipped']) == sorted(set(before) - set(todo))
            assert sorted(k for k, _ in summary['refitted']) == sorted(
                k for k in todo if before[k].state != 'missing')
            assert unfinished <= set(summary['fitted']) | set(summary['skipped'])
            unfinished.clear()
            assert temps(cache.root) == []
            swept += bool(temps_before)
            for s in samples:
                assert_entry_valid(cache, s, keys[cur], refs[cur][s.key])
    finally:
        runner.close()
    assert not plan, f'only {len(kills)} kills landed: {kills}'
    assert len(kills) >= NUM_KILLS and in_window >= 3, kills
    assert completed >= 1 and swept >= 1 and overwrites >= 1, (completed, swept, overwrites)

    # the final uninterrupted run resumes: fits exactly what is not valid, skips the
    # rest, and removes the temp files the dead writers left
    before = {s.key: sample_status(s, cache, keys[cur]) for s in samples}
    todo = sorted(k for k, st in before.items() if not st.valid)
    summary = fit_missing(samples, cache, SETTINGS[cur], workers=1, progress=False)
    assert summary.ok and summary.fit_key == keys[cur]
    assert sorted(summary.fitted) == todo
    assert sorted(summary.skipped) == sorted(set(before) - set(todo))
    assert unfinished <= set(summary.fitted) | set(summary.skipped)
    assert sorted(k for k, _ in summary.refitted) == sorted(
        k for k in todo if before[k].state != 'missing')
    assert temps(cache.root) == []
    assert walk_files(cache.root) == sorted(by_entry)
    for s in samples:
        assert_entry_valid(cache, s, keys[cur], refs[cur][s.key])


def _dead_pid():
    proc = subprocess.Popen(['true'])
    proc.wait()  # reaped: the pid names no process (until the kernel reuses it)
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return proc.pid
    pytest.skip('pid reused immediately')


def test_remove_stale_temps_keeps_live_and_fresh_foreign_writers(tmp_path):
    """Removed: this host's dead writers, any writer's temp older than
    STALE_TMP_SECONDS. Kept: this host's live writers, other hosts' fresh ones (a
    host name with dashes and digits), entries, unrelated files, unswept folders."""
    folder = tmp_path / 'cache' / 'a'
    other = tmp_path / 'cache' / 'b'
    folder.mkdir(parents=True)
    other.mkdir()
    dead = _dead_pid()
    names = {
        'dead': f'x.jpg.h5.tmp-{HOST}-{dead}-0123abcd',
        'live': f'y.jpg.h5.tmp-{HOST}-{os.getpid()}-89abcdef',
        'foreign': f'z.jpg.h5.tmp-other-host-7-{dead}-00ff00ff',  # its pid is not ours
        'foreign_old': f'w.jpg.h5.tmp-other-host-7-{os.getpid()}-deadbeef',
        'entry': 'v.jpg.h5',
        'unrelated': 'notes.tmp-1-abc',
    }
    paths = {k: folder / n for k, n in names.items()}
    for p in paths.values():
        p.write_bytes(b'partial')
    old = time.time() - STALE_TMP_SECONDS - 120
    os.utime(paths['foreign_old'], (old, old))
    outside = other / f'u.jpg.h5.tmp-{HOST}-{dead}-11111111'  # a folder not swept
    outside.write_bytes(b'partial')

    removed = remove_stale_temps([str(folder), str(folder), str(tmp_path / 'missing')])
    assert sorted(removed) == sorted([str(paths['dead']), str(paths['foreign_old'])])
    assert sorted(os.listdir(folder)) == sorted(
        names[k] for k in ('live', 'foreign', 'entry', 'unrelated'))
    assert outside.exists()
    assert remove_stale_temps([str(folder)]) == []


def test_corrupt_entry_is_reported_and_refitted(tmp_path):
    """An entry truncated to half is 'corrupt', never loaded, and refitted (equal to
    the entry it replaces: the fit is deterministic); the other entries are skipped."""
    samples = write_dataset(tmp_path / 'data', n=3)
    cfg = dict(iterations=6)
    fit_key = key_of(cfg)
    cache = GaussianCache(tmp_path / 'cache', data_root=tmp_path / 'data')
    first = fit_missing(samples, cache, cfg, progress=False)
    assert sorted(first.fitted) == sorted(s.key for s in samples) and first.ok
    victim = samples[1]
    path = cache.path_for(victim.img_path)
    ref, ref_idx = cache.load(victim.img_path, victim.points, fit_key=fit_key,
                              return_index=True)
    ref = ref.numpy()
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(size // 2)

    st = sample_status(victim, cache, fit_key)
    assert st.state == 'corrupt' and not st.valid and 'corrupt' in st.message
    assert cache.status(victim.img_path).state == 'corrupt'
    with pytest.raises(GaussianCacheError, match='corrupt'):
        cache.load(victim.img_path)
    for s in (samples[0], samples[2]):
        assert sample_status(s, cache, fit_key).valid

    summary = fit_missing(samples, cache, cfg, progress=False)
    assert summary.fitted == [victim.key] and summary.ok
    assert sorted(summary.skipped) == sorted([samples[0].key, samples[2].key])
    assert [k for k, _ in summary.refitted] == [victim.key]
    assert 'corrupt' in summary.refitted[0][1]
    assert sample_status(victim, cache, fit_key).valid
    g, idx = cache.load(victim.img_path, victim.points, image_sha1=file_sha1(victim.img_path),
                        fit_key=fit_key, return_index=True)
    for name in ('means', 'covariances', 'colors'):
        np.testing.assert_allclose(g.numpy()[name], ref[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(idx, ref_idx)
    assert os.path.getsize(path) == size
    assert temps(cache.root) == []
