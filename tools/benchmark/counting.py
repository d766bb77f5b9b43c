"""Crowd-counting benchmark on the synthetic data set: GST vs. its plan ablation and baselines.

Same model (the narrow VGG-19 of ``configs/counting/gst_vgg19_synthetic.py``),
same data, same seeds, same number of steps for every method:

    gst            GST loss, plan from the fitted (cached) Gaussians
    gst-heuristic  GST loss, isotropic sigma = 8 px plan (the paper's ablation)
    l2             pseudo-density L2
    bl             Bayesian loss
    dmcount        DM-Count (Sinkhorn OT + count + TV)
    uot            unbalanced OT (semi-dual)

Reports the test MAE / MSE (mean over seeds) and the training seconds per step
(forward + loss + backward + update, median over the steps after a warm-up;
data loading is measured separately). Prints one JSON line and appends a dated
section to ``docs/benchmarks.md``.

    python tools/benchmark/counting.py [--iters 400] [--seeds 0 1 2] [--threads 1]
        [--methods gst l2 ...] [--no-doc]

Targets (issue 5): GST MAE <= 0.8 x L2's and <= the heuristic plan's; GST step
time <= 1.2 x L2's and <= 0.5 x DM-Count's.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time
from typing import Dict, List

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
METHODS = ('gst', 'gst-heuristic', 'l2', 'bl', 'dmcount', 'uot')
WARMUP = 5


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='GST crowd-counting benchmark (synthetic set)')
    p.add_argument('--iters', type=int, default=400, help='training steps per run')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--methods', nargs='+', default=list(METHODS), choices=METHODS)
    p.add_argument('--threads', type=int, default=1, help='torch threads')
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'bench_counting'))
    p.add_argument('--no-doc', action='store_true', help='do not append to docs/benchmarks.md')
    return p.parse_args(argv)


def _register_step_timer():
    """A hook timing each training step (after the batch is loaded) and each data wait."""
    from mmengine.hooks import Hook

    from gst_mm.registry import HOOKS

    @HOOKS.register_module(name='_BenchStepTimerHook', force=True)
    class StepTimerHook(Hook):
        priority = 'VERY_LOW'

        def __init__(self):
            self.steps: List[float] = []
            self.waits: List[float] = []
            self._t0 = None
            self._t1 = None

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            now = time.perf_counter()
            if self._t1 is not None:
                self.waits.append(now - self._t1)
            self._t0 = now

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self._t1 = time.perf_counter()
            self.steps.append(self._t1 - self._t0)

    return StepTimerHook


def run_one(method: str, seed: int, iters: int, work_dir: str) -> Dict:
    """Train ``method`` for ``iters`` steps with ``seed``; test MAE / MSE and step times."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(osp.join('configs', 'counting', f'{method}_vgg19_synthetic.py'))
    cfg.work_dir = osp.join(work_dir, f'{method}_seed{seed}')
    cfg.experiment_name = f'bench_{method}_seed{seed}'
    cfg.randomness = dict(seed=seed)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters + 1)
    cfg.param_scheduler = [
        dict(type='CosineAnnealingLR', T_max=iters, eta_min=1e-5, by_epoch=False, begin=0,
             end=iters)
    ]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=10**9, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=100)
    cfg.test_evaluator = dict(type='CountingMetric')
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='_BenchStepTimerHook')]
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    wall = time.perf_counter() - start
    timer = next(h for h in runner.hooks if type(h).__name__ == 'StepTimerHook')
    metrics = runner.test()
    steps = timer.steps[WARMUP:] or timer.steps
    waits = timer.waits[WARMUP:] or timer.waits or [0.0]
    return dict(method=method, seed=seed, MAE=float(metrics['MAE']), MSE=float(metrics['MSE']),
                step_s=statistics.median(steps), data_s=statistics.median(waits),
                train_wall_s=wall)


def summarise(runs: List[Dict], methods) -> Dict:
    out: Dict = {}
    for m in methods:
        rs = [r for r in runs if r['method'] == m]
        if not rs:
            continue
        out[m] = dict(
            MAE=statistics.mean(r['MAE'] for r in rs),
            MAE_seeds=[round(r['MAE'], 3) for r in rs],
            MSE=statistics.mean(r['MSE'] for r in rs),
            step_s=statistics.median(r['step_s'] for r in rs),
            data_s=statistics.median(r['data_s'] for r in rs),
        )
    return out


def ratios_and_targets(summary: Dict) -> Dict:
    def ratio(a, b, key):
        if a in summary and b in summary and summary[b][key] > 0:
            return summary[a][key] / summary[b][key]
        return None

    r = dict(
        mae_gst_over_l2=ratio('gst', 'l2', 'MAE'),
        mae_gst_over_heuristic=ratio('gst', 'gst-heuristic', 'MAE'),
        step_gst_over_l2=ratio('gst', 'l2', 'step_s'),
        step_gst_over_dmcount=ratio('gst', 'dmcount', 'step_s'),
    )
    limits = dict(mae_gst_over_l2=0.8, mae_gst_over_heuristic=1.0, step_gst_over_l2=1.2,
                  step_gst_over_dmcount=0.5)
    met = {k: (None if v is None else bool(v <= limits[k])) for k, v in r.items()}
    return dict(ratios=r, limits=limits, targets_met=met)


def write_doc(result: Dict, path: str) -> None:
    s, rt = result['summary'], result['checks']
    lines = [
        '',
        f'## Crowd counting on the synthetic set ({result["date"]})',
        '',
        f'`tools/benchmark/counting.py`: {result["machine"]}, torch threads = '
        f'{result["threads"]}; narrow VGG-19 (`gst_vgg19_synthetic.py`), '
        f'{result["iters"]} steps of batch {result["batch_size"]} per run, seeds '
        f'{result["seeds"]}; test MAE/MSE averaged over seeds; step = forward + loss + '
        'backward + update (median), data = wait for the next batch (median; the GST '
        'kernel is built in the data worker).',
        '',
        '| method | test MAE (mean) | MAE per seed | test MSE | s / step | s data wait |',
        '|---|---|---|---|---|---|',
    ]
    for m, v in s.items():
        lines.append(f'| {m} | {v["MAE"]:.3f} | {v["MAE_seeds"]} | {v["MSE"]:.3f} | '
                     f'{v["step_s"]:.4f} | {v["data_s"]:.4f} |')
    lines += ['', '| check | ratio | target | met |', '|---|---|---|---|']
    for k, v in rt['ratios'].items():
        met = rt['targets_met'][k]
        lines.append(f'| {k} | {"n/a" if v is None else f"{v:.3f}"} | <= {rt["limits"][k]} | '
                     f'{"n/a" if met is None else ("yes" if met else "no")} |')
    with open(path, 'a') as f:
        f.write('\n'.join(lines) + '\n')


def main(argv=None) -> None:
    args = parse_args(argv)
    os.chdir(ROOT)
    import torch

    torch.set_num_threads(args.threads)
    from mmengine.config import Config

    import gst_mm  # noqa: F401
    from gst_mm.utils import register_all_modules

    register_all_modules()
    _register_step_timer()
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    from demo import ensure_dataset, precompute

    base = Config.fromfile(osp.join('configs', 'counting', 'gst_vgg19_synthetic.py'))
    ensure_dataset(base.train_dataloader.dataset.data_root, base.get('synthetic_data', None))
    if 'gst' in args.methods:
        precompute(base, workers=2)
    runs = []
    t0 = time.time()
    for seed in args.seeds:
        for method in args.methods:
            r = run_one(method, seed, args.iters, args.work_dir)
            runs.append(r)
            print(f'[bench] {method} seed {seed}: MAE {r["MAE"]:.3f} MSE {r["MSE"]:.3f} '
                  f'step {r["step_s"]:.4f} s data {r["data_s"]:.4f} s '
                  f'({time.time() - t0:.0f} s so far)', file=sys.stderr, flush=True)
    summary = summarise(runs, args.methods)
    result = dict(
        benchmark='counting_synthetic',
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        machine=f'{os.cpu_count()}-core {platform.machine()}',
        threads=args.threads, iters=args.iters, seeds=args.seeds,
        batch_size=int(base.train_dataloader.batch_size),
        summary=summary, checks=ratios_and_targets(summary), runs=runs,
        total_s=round(time.time() - t0, 1))
    print(json.dumps(result))
    if not args.no_doc:
        write_doc(result, osp.join(ROOT, 'docs', 'benchmarks.md'))


if __name__ == '__main__':
    main()
