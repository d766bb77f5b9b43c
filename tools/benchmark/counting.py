"""Crowd-counting benchmark on the synthetic data set: GST vs. its plan ablation and baselines.

Same model (the narrow VGG-19 of ``configs/counting/gst_vgg19_synthetic.py``),
same data, same seeds, same number of steps for every method:

    gst            GST loss, plan from the fitted (cached) Gaussians
    gst-heuristic  GST loss, isotropic sigma = 8 px plan (the paper's ablation)
    l2             pseudo-density L2
    bl             Bayesian loss
    dmcount        DM-Count (Sinkhorn OT + count + TV)
    uot            unbalanced OT (semi-dual)
    transformer    GST loss and plan, VGG-19 + graph-modulated transformer counter
                   (``gst_vgg19trans_synthetic.py``), trained at the first seed only

Reports the test MAE / MSE (mean over seeds) and the training seconds per step
(forward + loss + backward + update, median over the steps after a warm-up;
data loading is measured separately). Prints one JSON line and appends a dated
section to ``docs/benchmarks.md``.

    python tools/benchmark/counting.py [--iters 400] [--seeds 0 1 2] [--threads 1]
        [--methods gst l2 ...] [--note TEXT] [--no-doc]

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
from typing import Dict, List, Sequence

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
METHODS = ('gst', 'gst-heuristic', 'l2', 'bl', 'dmcount', 'uot', 'transformer')
#: methods whose config is not ``configs/counting/{method}_vgg19_synthetic.py``
METHOD_CONFIGS = {'transformer': 'gst_vgg19trans_synthetic.py'}
#: methods trained at the first seed only (slower; one seed is enough to time them)
ONE_SEED_METHODS = ('transformer', )
#: methods that train with the fitted Gaussians (the cache is filled first)
GST_PLAN_METHODS = ('gst', 'transformer')
WARMUP = 5


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='GST crowd-counting benchmark (synthetic set)')
    p.add_argument('--iters', type=int, default=400, help='training steps per run')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--methods', nargs='+', default=list(METHODS), choices=METHODS)
    p.add_argument('--threads', type=int, default=1, help='torch threads per run')
    p.add_argument('--jobs', type=int, default=1,
                   help='runs trained at the same time (separate processes)')
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'bench_counting'))
    p.add_argument('--timing-iters', type=int, default=300,
                   help='after the accuracy runs, time each method alone on the machine '
                   'for this many steps (seed 0; 0: use the accuracy runs\' step times)')
    p.add_argument('--reuse-runs', default=None, metavar='JSON',
                   help='take the accuracy runs (method, seed) that an earlier result of '
                   'this tool (its JSON line, same --iters) has, and train only the missing ones')
    p.add_argument('--sweep', type=int, nargs='*', default=[16, 64, 256, 1024],
                   metavar='N', help='also time one training step vs N points per crop '
                   '(GST, L2, DM-Count); give no value to skip')
    p.add_argument('--note', default='', help='a sentence added to the section written to '
                   'docs/benchmarks.md (e.g. what else ran on the machine)')
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


def run_one(method: str, seed: int, iters: int, work_dir: str, test: bool = True,
            cfg_options: dict = None, config: str = None) -> Dict:
    """Train ``method`` for ``iters`` steps with ``seed``; test MAE / MSE (unless ``test``
    is False) and step times.

    Args:
        cfg_options: optional overrides merged into the loaded config
            (``Config.merge_from_dict``) before the run's own settings below.
        config: optional config path used instead of
            ``configs/counting/{method}_vgg19_synthetic.py``.
    """
    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(config or method_config(method))
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    cfg.work_dir = osp.join(work_dir, f'{method}_seed{seed}' + ('' if test else '_timing'))
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
    steps = timer.steps[WARMUP:] or timer.steps
    waits = timer.waits[WARMUP:] or timer.waits or [0.0]
    out = dict(method=method, seed=seed, step_s=statistics.median(steps),
               data_s=statistics.median(waits), train_wall_s=wall)
    if test:
        metrics = runner.test()
        out.update(MAE=float(metrics['MAE']), MSE=float(metrics['MSE']))
    return out


def method_config(method: str) -> str:
    """The synthetic config a benchmark method trains (relative to the repository root)."""
    return osp.join('configs', 'counting',
                    METHOD_CONFIGS.get(method, f'{method}_vgg19_synthetic.py'))


def benchmark_jobs(methods: Sequence[str], seeds: Sequence[int], iters: int,
                   work_dir: str) -> List[tuple]:
    """``(method, seed, iters, work_dir)`` runs: every method at every seed, except
    :data:`ONE_SEED_METHODS` at the first seed only."""
    return [(m, seed, iters, work_dir) for k, seed in enumerate(seeds) for m in methods
            if k == 0 or m not in ONE_SEED_METHODS]


SWEEP_METHODS = ('gst', 'l2', 'dmcount')


def step_time_sweep(base_cfg, points_per_crop: Sequence[int], reps: int = 8) -> List[Dict]:
    """Training-step seconds of the benchmark's model and batch shape vs points per crop.

    Random images and uniformly placed points; the GST kernel is built (outside the
    timed step, as the data workers do) from isotropic ``stride``-px Gaussians. One
    step = forward + loss + backward + optimiser update, median of ``reps`` after a
    warm-up. GST and L2 cost O(cells) per image, DM-Count O(iterations x N x cells), so
    this shows where the OT loss starts to dominate the network.
    """
    import torch

    from gst_mm.registry import MODELS
    from gst_mm.transport import build_kernel

    crop = int(base_cfg.crop_size)
    batch = int(base_cfg.train_dataloader.batch_size)
    stride = int(base_cfg.stride)
    grid = (crop // stride, crop // stride)
    losses = dict(gst=dict(type='GSTLoss'), l2=dict(type='PseudoDensityL2Loss'),
                  dmcount=dict(type='DMCountLoss'))
    rows = []
    for n in points_per_crop:
        gen = torch.Generator().manual_seed(n)
        images = torch.rand(batch, 3, crop, crop, generator=gen)
        points = [torch.rand(n, 2, generator=gen) * crop for _ in range(batch)]
        cov = torch.eye(2).expand(n, 2, 2) * float(stride) ** 2
        kernels = [build_kernel(p, cov, grid, stride) for p in points]
        row: Dict = dict(points_per_crop=n)
        for name in SWEEP_METHODS:
            torch.manual_seed(0)
            backbone = MODELS.build(base_cfg.model.backbone)
            loss_fn = MODELS.build(losses[name])
            opt = torch.optim.Adam(backbone.parameters(), lr=1e-4)

            def step():
                opt.zero_grad()
                loss = loss_fn(backbone(images), points, kernels=kernels, stride=stride)
                loss.backward()
                opt.step()

            step()
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            row[name] = statistics.median(times)
        row['gst_over_dmcount'] = row['gst'] / row['dmcount']
        rows.append(row)
        print(f'[bench] sweep N={n}: ' + ' '.join(f'{k} {row[k]:.4f} s' for k in SWEEP_METHODS)
              + f' GST/DM-Count {row["gst_over_dmcount"]:.2f}', file=sys.stderr, flush=True)
    return rows


def _init_worker(threads: int) -> None:
    """Set up this process (the main one or a ``--jobs`` worker) for training runs."""
    os.chdir(ROOT)
    import torch

    torch.set_num_threads(threads)
    import gst_mm  # noqa: F401
    from gst_mm.utils import register_all_modules

    register_all_modules()
    _register_step_timer()


def summarise(runs: List[Dict], methods, timing: Sequence[Dict] = ()) -> Dict:
    """Per method: mean test MAE / MSE over seeds and the step time, from the runs
    timed alone on the machine when there are some (``timing``), else the median over
    the accuracy runs."""
    out: Dict = {}
    for m in methods:
        rs = [r for r in runs if r['method'] == m]
        ts = [r for r in timing if r['method'] == m]
        if not rs:
            continue
        out[m] = dict(
            MAE=statistics.mean(r['MAE'] for r in rs),
            MAE_seeds=[round(r['MAE'], 3) for r in rs],
            MSE=statistics.mean(r['MSE'] for r in rs),
            step_s=statistics.median(r['step_s'] for r in (ts or rs)),
            step_s_accuracy_runs=statistics.median(r['step_s'] for r in rs),
            data_s=statistics.median(r['data_s'] for r in (ts or rs)),
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
        f'{result["threads"]} per run, {result.get("jobs", 1)} run(s) at a time; '
        'narrow VGG-19 (`gst_vgg19_synthetic.py`, '
        f'{result.get("crop_size", "?")} px crops), data set '
        f'`{json.dumps(result.get("synthetic_data", {}))}`, '
        f'{result["iters"]} steps of batch {result["batch_size"]} per run, seeds '
        f'{result["seeds"]}; test MAE/MSE averaged over seeds; step = forward + loss + '
        'backward + update (median), data = wait for the next batch (median; the GST '
        'kernel is built in the data worker). '
        + (f'"s / step" is measured with each method training alone on the machine '
           f'({result["timing_iters"]} steps, seed 0; its data worker has the other core); '
           f'"{result.get("jobs", 1)} job(s)" is the median of the accuracy runs.'
           if result.get('timing') else '"s / step" is the median of the accuracy runs.')
        + (' Methods run at one seed: ' + ', '.join(f'`{m}`' for m in ONE_SEED_METHODS
                                                  if m in s) + '.'
           if any(m in s for m in ONE_SEED_METHODS) and len(result['seeds']) > 1 else '')
        + (f' {result["note"]}' if result.get('note') else '')
        + (f' Accuracy runs found in {result["reused_runs"]} (same tool, config, steps '
           'and seed) were reused, the others trained here.'
           if result.get('reused_runs') else ''),
        '',
        '| method | test MAE (mean) | MAE per seed | test MSE | s / step | '
        f's / step ({result.get("jobs", 1)} job(s)) | s data wait |',
        '|---|---|---|---|---|---|---|',
    ]
    for m, v in s.items():
        lines.append(f'| {m} | {v["MAE"]:.3f} | {v["MAE_seeds"]} | {v["MSE"]:.3f} | '
                     f'{v["step_s"]:.4f} | {v.get("step_s_accuracy_runs", v["step_s"]):.4f} | '
                     f'{v["data_s"]:.4f} |')
    lines += ['', '| check | ratio | target | met |', '|---|---|---|---|']
    for k, v in rt['ratios'].items():
        met = rt['targets_met'][k]
        lines.append(f'| {k} | {"n/a" if v is None else f"{v:.3f}"} | <= {rt["limits"][k]} | '
                     f'{"n/a" if met is None else ("yes" if met else "no")} |')
    if result.get('sweep'):
        lines += [
            '',
            f'Step time vs points per crop (same model and batch, random {result["crop_size"]}'
            ' px crops, uniform points):',
            '',
            '| points / crop | ' + ' | '.join(f'{m} s/step' for m in SWEEP_METHODS)
            + ' | GST / DM-Count |',
            '|---' * (len(SWEEP_METHODS) + 2) + '|',
        ]
        for row in result['sweep']:
            lines.append(f'| {row["points_per_crop"]} | '
                         + ' | '.join(f'{row[m]:.4f}' for m in SWEEP_METHODS)
                         + f' | {row["gst_over_dmcount"]:.2f} |')
    with open(path, 'a') as f:
        f.write('\n'.join(lines) + '\n')


def main(argv=None) -> None:
    args = parse_args(argv)
    _init_worker(args.threads)
    from mmengine.config import Config

    from gst_mm.datasets.synthetic_crowd import ensure_dataset
    from gst_mm.engine import precompute_config

    base = Config.fromfile(osp.join('configs', 'counting', 'gst_vgg19_synthetic.py'))
    print(ensure_dataset(base.train_dataloader.dataset.data_root, base.get('synthetic_data', None)))
    if any(m in GST_PLAN_METHODS for m in args.methods):
        precompute_config(base, 'train', workers=1 if args.jobs == 1 else 2)
    runs = []
    t0 = time.time()
    jobs = benchmark_jobs(args.methods, args.seeds, args.iters, args.work_dir)

    def report(r):
        runs.append(r)
        print(f'[bench] {r["method"]} seed {r["seed"]}: MAE {r["MAE"]:.3f} MSE {r["MSE"]:.3f} '
              f'step {r["step_s"]:.4f} s data {r["data_s"]:.4f} s '
              f'({time.time() - t0:.0f} s so far)', file=sys.stderr, flush=True)

    if args.reuse_runs:
        with open(args.reuse_runs) as f:
            earlier = json.loads(f.read().strip().splitlines()[-1])
        if earlier['iters'] != args.iters:
            raise SystemExit(f'{args.reuse_runs} trained {earlier["iters"]} steps per run, '
                             f'not {args.iters}')
        runs += [r for r in earlier['runs']
                 if r['method'] in args.methods and r['seed'] in args.seeds]
        have = {(r['method'], r['seed']) for r in runs}
        jobs = [job for job in jobs if (job[0], job[1]) not in have]
        print(f'[bench] reusing {len(runs)} accuracy runs of {args.reuse_runs} '
              f'({earlier["date"]}); training the {len(jobs)} missing', file=sys.stderr)
    if args.jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context('spawn'),
                                 initializer=_init_worker, initargs=(args.threads, )) as pool:
            for fut in as_completed([pool.submit(run_one, *job) for job in jobs]):
                report(fut.result())
    else:
        for job in jobs:
            report(run_one(*job))
    sweep = step_time_sweep(base, args.sweep) if args.sweep else []
    runs.sort(key=lambda r: (r['seed'], METHODS.index(r['method'])))
    timing = []
    for m in args.methods if args.timing_iters > 0 else ():
        t = run_one(m, 0, args.timing_iters, args.work_dir, test=False)
        timing.append(t)
        print(f'[bench] timing {m} alone: step {t["step_s"]:.4f} s data {t["data_s"]:.4f} s',
              file=sys.stderr, flush=True)
    summary = summarise(runs, args.methods, timing)
    result = dict(
        benchmark='counting_synthetic',
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        machine=f'{os.cpu_count()}-core {platform.machine()}',
        threads=args.threads, jobs=args.jobs, iters=args.iters, seeds=args.seeds,
        batch_size=int(base.train_dataloader.batch_size),
        crop_size=int(base.crop_size),
        synthetic_data=dict(base.get('synthetic_data', None) or {}),
        timing_iters=args.timing_iters, reused_runs=args.reuse_runs, note=args.note,
        summary=summary, checks=ratios_and_targets(summary), runs=runs, timing=timing,
        sweep=sweep,
        total_s=round(time.time() - t0, 1))
    print(json.dumps(result))
    if not args.no_doc:
        write_doc(result, osp.join(ROOT, 'docs', 'benchmarks.md'))


if __name__ == '__main__':
    main()
