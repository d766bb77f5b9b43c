"""Shared parts of the training benchmarks (tools/benchmark/*.py).

* :func:`init_worker` — a process's setup: repository as working directory, torch
  threads, gst_mm registered, the recorder hook registered.
* :class:`Recorder` (registered as ``gst_mm._BenchRecorder``) — raw per-step outputs
  (every loss term, not the smoothed log), step and data-wait times, and the
  fingerprints that show two runs are paired: a hash of the initial weights and of the
  first batches' inputs.
* :func:`short_run` — a config turned into a short iteration-based run (its seed,
  schedule, no checkpoints unless asked, the recorder, test once at the end).
* :func:`run_pool` — jobs in parallel processes (1 thread each) or in this process.
* :func:`stored_run`, :func:`store_run` — one run's result file (``<work>/runs/<tag>.json``):
  read back with ``--reuse``, written atomically when the run ends.
* :func:`machine`, :func:`load_line`, :func:`append_section` — the header facts of a
  docs/benchmarks.md section and the writer.
* :func:`best_time`, :func:`median_time`, :func:`peak_rss_mb` — timing and memory.
"""
from __future__ import annotations

import datetime
import hashlib
import multiprocessing as mp
import os
import os.path as osp
import platform
import signal
import time
from typing import Callable, Dict, List, Optional, Sequence

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DOC = osp.join(ROOT, 'docs', 'benchmarks.md')
#: the 5 real MPII images of the shared data (read-only)
MPII_SAMPLE = osp.join(osp.dirname(ROOT), 'shared', 'data', 'mpii_sample')
#: steps left out of the step-time median (first iterations, data-loader start)
WARMUP_STEPS = 5


def _tensor_hash(tensors) -> str:
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def register_recorder():
    """Register (idempotently) and return the :class:`Recorder` hook class."""
    from mmengine.hooks import Hook

    from gst_mm.registry import HOOKS

    @HOOKS.register_module(name='_BenchRecorder', force=True)
    class Recorder(Hook):
        """Raw per-step values and pairing fingerprints of one training run.

        Attributes:
            rows: one dict per step of every float output of ``train_step``.
            steps, waits: wall seconds per step (forward to optimiser step) and
                waiting for the data loader before it.
            init_hash: hash of the model's parameters before step 1 (same seed,
                same architecture -> same value).
            data_hash: hash of the inputs of the first ``hash_batches`` batches (same
                seed -> same crops in the same order).
        """
        priority = 'VERY_LOW'

        def __init__(self, hash_batches: int = 3):
            self.rows: List[Dict[str, float]] = []
            self.steps: List[float] = []
            self.waits: List[float] = []
            self.hash_batches = int(hash_batches)
            self.init_hash = ''
            self.data_hash = ''
            self._batches: List = []
            self._t0 = self._t_end = 0.0

        def before_train(self, runner):
            self.init_hash = _tensor_hash(p for _, p in
                                          sorted(runner.model.named_parameters()))
            self._t_end = time.perf_counter()

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self._t0 = time.perf_counter()
            self.waits.append(self._t0 - self._t_end)
            if len(self._batches) < self.hash_batches and data_batch is not None:
                inputs = data_batch['inputs']
                self._batches.extend(inputs if isinstance(inputs, (list, tuple))
                                     else [inputs])
                if len(self._batches) >= self.hash_batches:
                    self.data_hash = _tensor_hash(self._batches)
                    self._batches = []

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self._t_end = time.perf_counter()
            self.steps.append(self._t_end - self._t0)
            self.rows.append({k: float(v.detach()) if hasattr(v, "detach") else float(v)
                              for k, v in (outputs or {}).items()})

    return Recorder


def init_worker(threads: int = 1) -> None:
    """Set up a benchmark process (also the pool's initialiser)."""
    os.chdir(ROOT)
    import torch
    torch.set_num_threads(int(threads))
    import gst_mm  # noqa: F401
    from gst_mm.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    register_recorder()


def short_run(cfg, work_dir: str, seed: int, iters: int, *, schedule: Optional[list] = None,
              save_last: bool = False, log_interval: int = 100, val: bool = False):
    """Make ``cfg`` (an MMEngine Config, changed in place and returned) a short
    iteration-based run: ``seed``, ``iters`` steps, ``schedule`` (MMEngine
    ``param_scheduler``; default: keep the config's), a checkpoint only at the end
    when ``save_last``, the recorder hook, no validation unless ``val``."""
    cfg.work_dir = work_dir
    cfg.experiment_name = osp.basename(work_dir.rstrip('/'))
    cfg.randomness = dict(seed=int(seed))
    cfg.train_cfg = dict(by_epoch=False, max_iters=int(iters), val_interval=int(iters) + 1)
    if not val:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if schedule is not None:
        cfg.param_scheduler = schedule
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=int(iters) if save_last else 10**9,
                                        save_last=bool(save_last))
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=int(log_interval))
    cfg.custom_hooks = list(cfg.get('custom_hooks', None) or []) + [
        dict(type='gst_mm._BenchRecorder')]
    return cfg


def recorder_of(runner):
    """The :class:`Recorder` instance of a runner built from :func:`short_run`."""
    return next(h for h in runner.hooks if type(h).__name__ == 'Recorder')


def median_step(values: Sequence[float]) -> float:
    """Median of per-step times without the first :data:`WARMUP_STEPS`."""
    import statistics
    kept = list(values)[WARMUP_STEPS:] or list(values)
    return float(statistics.median(kept)) if kept else float('nan')


def point_gst_cache(cfg, **fields) -> None:
    """Set ``fields`` (``cache_dir``, ``data_root``) on the config's kernel transform
    (``LoadPoseTransportKernel`` of the train pipeline) and its precompute hook."""
    for step in cfg.train_dataloader.dataset.pipeline:
        if str(step['type']).endswith('LoadPoseTransportKernel'):
            step.update(fields)
    for hook in cfg.get('custom_hooks', []) or []:
        if str(hook['type']).endswith('GSTPrecomputeHook'):
            hook.update(fields)


def run_file(work_dir: str, tag: str) -> str:
    """Where the run ``tag`` of a benchmark in ``work_dir`` keeps its result."""
    return osp.join(work_dir, 'runs', tag + '.json')


def stored_run(work_dir: str, tag: str, reuse: bool) -> Optional[Dict]:
    """The stored result of run ``tag`` when ``reuse`` and it exists, else ``None``."""
    import json
    path = run_file(work_dir, tag)
    if not (reuse and osp.exists(path)):
        return None
    with open(path) as f:
        return json.load(f)


def store_run(work_dir: str, tag: str, out: Dict, summary: Optional[str] = None) -> Dict:
    """Write run ``tag``'s result atomically and print ``[bench] <summary or JSON>`` to
    stderr (the progress line of a long benchmark); returns ``out``."""
    import json
    import sys
    path = run_file(work_dir, tag)
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        json.dump(out, f)
    os.replace(path + '.tmp', path)
    print(f'[bench] {summary or json.dumps(out)}', file=sys.stderr, flush=True)
    return out


def run_pool(func: Callable, jobs: Sequence[tuple], n_proc: int, threads: int = 1) -> List:
    """``[func(*job) for job in jobs]``, in ``n_proc`` spawned processes of ``threads``
    torch threads each when ``n_proc > 1``."""
    if n_proc <= 1:
        return [func(*job) for job in jobs]
    ctx = mp.get_context('spawn')
    # a SIGTERM to the benchmark (``kill PID``) must not leave the workers training:
    # turn it into an exception so that leaving the ``with`` terminates the pool, and
    # let each worker die with its parent (_init_pool_worker)
    previous = signal.signal(signal.SIGTERM, _raise_exit)
    try:
        with ctx.Pool(n_proc, initializer=_init_pool_worker,
                      initargs=(threads, os.getpid())) as pool:
            return pool.starmap(func, jobs, chunksize=1)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_exit(signum, frame):
    raise SystemExit(f'terminated by signal {signum}')


def _init_pool_worker(threads: int, parent: int) -> None:
    """A pool worker: :func:`init_worker`, and exit when ``parent`` is gone (a killed
    benchmark otherwise leaves its workers running: they are re-parented, not killed)."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    init_worker(threads)


def spearman(a, b) -> float:
    """Spearman rank correlation of two 1-D arrays (NaN for fewer than 3 values or a
    constant one; ties ranked by position)."""
    import numpy as np
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float('nan')
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def machine() -> str:
    """``'x86_64, 2 cores (AMD EPYC)'``: architecture, cores and the CPU's model name."""
    model = ''
    try:
        with open('/proc/cpuinfo') as f:
            model = next((ln.split(':', 1)[1].strip() for ln in f
                          if ln.startswith('model name')), '')
    except OSError:
        pass
    return f'{platform.machine()}, {os.cpu_count()} cores' + (f' ({model})' if model else '')


def load_line() -> str:
    """The 1-minute load average now, as a phrase for a section header."""
    try:
        return f'load {os.getloadavg()[0]:.2f}'
    except OSError:
        return 'load unknown'


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')


def append_section(title: str, lines: Sequence[str], path: str = DOC) -> None:
    """Append ``## title`` and ``lines`` to docs/benchmarks.md."""
    with open(path, 'a') as f:
        f.write('\n'.join(['', f'## {title}', '', *lines, '']))


def peak_rss_mb() -> float:
    """Peak RSS of this process, MB (``VmHWM``: reset by exec, unlike ``getrusage``'s
    max RSS, which a subprocess inherits from its parent; ``getrusage`` where
    ``/proc`` is missing)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def best_time(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    """Best of ``repeats`` timed calls of ``fn`` (seconds), after one untimed call when
    ``warmup``."""
    import math
    if warmup:
        fn()
    best = math.inf
    for _ in range(int(repeats)):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def median_time(fn: Callable[[], object], budget: float, max_repeats: int = 25) -> float:
    """Median seconds of ``fn`` over repeats filling ``budget`` seconds (one warm-up)."""
    import statistics
    fn()
    times: List[float] = []
    start = time.perf_counter()
    while len(times) < max_repeats and (not times or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def header(script: str, args: str, threads: int, load: str) -> str:
    """The first line of a benchmark's docs section: machine, torch, threads, load and
    the command."""
    import torch
    return (f'Machine: {machine()}, torch {torch.__version__}, {threads} torch thread(s), '
            f'{load}. Command: `python tools/benchmark/{script}{args}`.')


def write_lines(path: str, lines: Sequence[str], targets: Optional[Dict] = None) -> None:
    """Append ``lines`` (and a ``- key: value`` line per target) to a markdown file."""
    lines = list(lines)
    if targets:
        lines += [''] + [f'- {key}: {val}' for key, val in targets.items()]
    with open(path, 'a') as f:
        f.write('\n'.join(lines) + '\n')
