"""Pose learning benchmark: MSE vs GST vs heatmap OT, random init, 2 CPU cores.

    python tools/benchmark/pose.py [--seeds 0 1 2] [--iters 500] [--arms mse gst ot]
        [--jobs 2] [--mpii-iters 300] [--skip-mpii] [--work-dir work_dirs/bench_pose]
        [--no-doc]

* Synthetic set (``configs/synthetic_pose/``): the same half-width ResNet-18
  top-down model (64x64 input, 32x32 heatmaps, random init), data and schedule
  trained with
  MMPose's MSE (``td-hm_...``), GST (``gst_...``) and the heatmap-OT baseline
  (``ot_...``); held-out PCK@0.2 / 0.1 / 0.05 (normalised by the box size) on the
  val split, per seed.
* Overfit check: the same three arms on the 5 MPII sample images
  (128x128 input, 64x64 heatmaps) trained and evaluated on those images (PCKh@0.5,
  head boxes from the neck/head-top joints,
  :func:`gst_mm.utils.mpii.write_mpii_headboxes`).
* Health of every GST run, from the raw per-step values (not the smoothed log):
  the collapse guard's warnings, the smallest per-step ``joint_mass`` and the first
  / last 50-step means of the raw transport loss and of ``mass_on_joint``.
* Step time: one model step (forward, loss, backward, Adam) per arm, measured in a
  timing pass with one job alone on the machine (``--jobs`` runs in parallel do
  not time); targets GST / MSE <= 1.15, OT / GST reported.

Prints one JSON line and appends a dated section to docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import os.path as osp
import platform
import statistics
import sys
import time
from typing import Dict, List

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
CONFIGS = dict(mse='td-hm_res18-half_1xb32-1000it_synthetic-64x64.py',
               gst='gst_res18-half_1xb32-1000it_synthetic-64x64.py',
               ot='ot_res18-half_1xb32-1000it_synthetic-64x64.py',
               **{'gst-soft': 'gst-soft_res18-half_1xb32-1000it_synthetic-64x64.py'})
#: ablation arms: the GST config without its warm-up / with another non-negativity map
#: (docs/pose.md)
#: (all from step 0 without the config's MSE warm-up)
ABLATIONS = {'gst-no-warmup': dict(mse_warmup_iters=0),
             'gst-relu': dict(nonneg='relu', mse_warmup_iters=0),
             'gst-softplus': dict(nonneg='softplus', mse_warmup_iters=0)}
MPII_SAMPLE = osp.join(osp.dirname(ROOT), 'shared', 'data', 'mpii_sample')
WARMUP = 5


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--arms', nargs='+', default=['mse', 'gst', 'ot'],
                   choices=list(CONFIGS) + list(ABLATIONS))
    p.add_argument('--ablation-seeds', type=int, nargs='*', default=[0],
                   help='seeds of the ablation runs (gst-no-warmup, gst-relu, gst-softplus; '
                   'none: skip)')
    p.add_argument('--iters', type=int, default=500, help='training steps per run')
    p.add_argument('--num-train', type=int, default=400)
    p.add_argument('--num-val', type=int, default=100)
    p.add_argument('--jobs', type=int, default=2, help='runs in parallel (1 thread each)')
    p.add_argument('--timing-iters', type=int, default=40)
    p.add_argument('--mpii-iters', type=int, default=300)
    p.add_argument('--skip-mpii', action='store_true')
    p.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'bench_pose'))
    p.add_argument('--reuse-log', help="keep the runs an earlier run's stderr log printed "
                   "('[bench] {...}' lines) and train only the missing ones")
    p.add_argument('--no-doc', action='store_true', help='do not append to docs/benchmarks.md')
    return p.parse_args(argv)


def reused_runs(path) -> Dict[tuple, Dict]:
    """``(arm, seed, data) -> run`` of the finished, tested runs in a log."""
    out: Dict[tuple, Dict] = {}
    if not path:
        return out
    with open(path, errors='replace') as f:
        for line in f:
            if line.startswith('[bench] {'):
                r = json.loads(line[len('[bench] '):])
                if 'PCK@0.2' in r or 'PCKh' in r:
                    out[(r['arm'], r['seed'], r['data'])] = r
    return out


def _register_recorder():
    """A hook recording each step's raw outputs (loss terms, joint_mass) and time."""
    from mmengine.hooks import Hook

    from gst_mm.registry import HOOKS

    @HOOKS.register_module(name='_BenchPoseRecorder', force=True)
    class Recorder(Hook):
        priority = 'VERY_LOW'

        def __init__(self):
            self.rows: List[Dict[str, float]] = []
            self.steps: List[float] = []
            self._t0 = 0.0

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self._t0 = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.steps.append(time.perf_counter() - self._t0)
            self.rows.append({k: float(v) for k, v in (outputs or {}).items()})

    return Recorder


def _init_worker(threads: int) -> None:
    os.chdir(ROOT)
    import torch
    torch.set_num_threads(threads)
    import gst_mm  # noqa: F401
    from gst_mm.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    _register_recorder()


def _set_paths(cfg, data_root: str, cache_dir: str) -> None:
    """Point every data set, the kernel transform and the hook at ``data_root``."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
    for step in cfg.train_dataloader.dataset.pipeline:
        if str(step['type']).endswith('LoadPoseTransportKernel'):
            step.update(cache_dir=cache_dir, data_root=data_root)
    for hook in cfg.get('custom_hooks', []) or []:
        if str(hook['type']).endswith('GSTPrecomputeHook'):
            hook.update(cache_dir=cache_dir, data_root=data_root)


def _mpii(cfg, headbox: str) -> None:
    """Turn a synthetic config into the MPII overfit check (5 images, 128x128 input,
    64x64 heatmaps: the same stride 2 as the synthetic model)."""
    codec = dict(type='MSRAHeatmap', input_size=(128, 128), heatmap_size=(64, 64), sigma=2)
    cfg.model.head.out_channels = 16
    cfg.model.head.decoder = codec
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dl = cfg[loader]
        dl.batch_size = 5
        dl.dataset.type = 'MpiiDataset'
        dl.dataset.ann_file = 'annotations/mpii_sample.json'
        dl.dataset.data_prefix = dict(img='images/')
        if loader != 'train_dataloader':
            dl.dataset.headbox_file = headbox
        for step in dl.dataset.pipeline:
            if step['type'] == 'TopdownAffine':
                step['input_size'] = (128, 128)
            if step['type'] == 'GenerateTarget':
                step['encoder'] = codec
            if step['type'] == 'GetBBoxCenterScale':
                step.pop('padding', None)
            if step['type'] == 'RandomBBoxTransform':
                step.update(rotate_factor=30, scale_factor=(0.75, 1.25))
    cfg.val_evaluator = cfg.test_evaluator = dict(type='MpiiPCKAccuracy', norm_item='head')


def run_one(arm: str, seed: int, iters: int, data_root: str, work_dir: str,
            mpii_headbox: str = '', test: bool = True) -> Dict:
    """Train ``arm`` with ``seed`` for ``iters`` steps; held-out metrics, health, step time."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    base = 'gst' if arm in ABLATIONS else arm
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'synthetic_pose', CONFIGS[base]))
    cfg.model.head.update(ABLATIONS.get(arm, {}))
    tag = f"{'mpii' if mpii_headbox else 'synth'}_{arm}_seed{seed}" + ('' if test else '_timing')
    cfg.work_dir = osp.join(work_dir, tag)
    cfg.experiment_name = tag
    cfg.randomness = dict(seed=seed)
    if mpii_headbox:
        _mpii(cfg, mpii_headbox)
    # each plan its own cache folder (the soft arm fits free Gaussians)
    _set_paths(cfg, data_root, osp.join(work_dir, 'gst_cache_' + ('mpii' if mpii_headbox
                                                                    else 'synth')
                                        + ('_soft' if base == 'gst-soft' else '')))
    cfg.train_cfg = dict(by_epoch=False, max_iters=iters, val_interval=iters + 1)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None  # test once at the end
    cfg.param_scheduler = [
        dict(type='LinearLR', begin=0, end=min(100, iters), start_factor=0.01, by_epoch=False),
        dict(type='MultiStepLR', begin=0, end=iters, milestones=[int(iters * 0.8)], gamma=0.1,
             by_epoch=False)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=10**9, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=100)
    cfg.custom_hooks = list(cfg.get('custom_hooks', None) or []) + [
        dict(type='gst_mm._BenchPoseRecorder')]
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    wall = time.perf_counter() - start
    rec = next(h for h in runner.hooks if type(h).__name__ == 'Recorder')
    steps = rec.steps[WARMUP:] or rec.steps
    out = dict(arm=arm, seed=seed, data='mpii' if mpii_headbox else 'synthetic',
               step_s=statistics.median(steps), train_wall_s=wall)
    loss_key = 'loss_transport' if base.startswith('gst') else 'loss_kpt'
    losses = [r[loss_key] for r in rec.rows if loss_key in r]
    if losses:
        out.update(loss_first50=statistics.mean(losses[:50]),
                   loss_last50=statistics.mean(losses[-50:]))
    if base.startswith('gst'):
        head = runner.model.head
        on_joint = [r['mass_on_joint'] for r in rec.rows]
        out.update(collapse_warnings=sorted(head._warned),
                   min_joint_mass=min(r['joint_mass'] for r in rec.rows),
                   mass_on_joint_first50=statistics.mean(on_joint[:50]),
                   mass_on_joint_last50=statistics.mean(on_joint[-50:]))
    if test:
        metrics = runner.test()
        if mpii_headbox:
            out.update(PCKh=float(metrics['PCK']))
        else:
            for thr in ('0.2', '0.1', '0.05'):
                out[f'PCK@{thr}'] = float(metrics[f'pck{thr}/PCK'])
    print(f'[bench] {json.dumps(out)}', file=sys.stderr, flush=True)
    return out


def _job(args):
    return run_one(*args)


def run_many(jobs: List[tuple], n_proc: int) -> List[Dict]:
    if n_proc <= 1:
        return [_job(j) for j in jobs]
    ctx = mp.get_context('spawn')
    with ctx.Pool(n_proc, initializer=_init_worker, initargs=(1, )) as pool:
        return pool.map(_job, jobs, chunksize=1)


def summarise(runs: List[Dict], timing: List[Dict]) -> Dict:
    out: Dict = {}
    for arm in sorted({r['arm'] for r in runs}, key=lambda a: (a in ABLATIONS, a)):
        synth = [r for r in runs if r['arm'] == arm and r['data'] == 'synthetic']
        mpii = [r for r in runs if r['arm'] == arm and r['data'] == 'mpii']
        s: Dict = {}
        for k in ('PCK@0.2', 'PCK@0.1', 'PCK@0.05'):
            vals = [r[k] for r in synth if k in r]
            if vals:
                s[k] = statistics.mean(vals)
                s[k + '_runs'] = vals
        if mpii:
            s['mpii_PCKh'] = statistics.mean(r['PCKh'] for r in mpii)
        t = [r['step_s'] for r in timing if r['arm'] == arm]
        if t:
            s['step_s'] = t[0]
        out[arm] = s
    return out


def append_doc(record: Dict) -> None:
    s = record['summary']
    names = dict(mse='MSE (MMPose)', gst='GST', ot='heatmap OT', **{
        'gst-soft': "GST, soft plan (docs/soft_kernel.md)",
        'gst-no-warmup': 'GST without MSE warm-up (ablation)',
        'gst-relu': "GST, nonneg='relu', no warm-up (ablation)",
        'gst-softplus': "GST, nonneg='softplus', no warm-up (ablation)"})
    arms = [a for a in names if a in s]

    def cell(arm, key, fmt='{:.1f}'):
        v = s[arm].get(key)
        if v is None:
            return '-'
        scale = 100.0 if key.startswith('PCK@') else 1.0  # PCKAccuracy gives fractions
        runs = s[arm].get(key + '_runs')
        text = fmt.format(scale * v)
        return text + (' [' + ', '.join(fmt.format(scale * x) for x in runs) + ']'
                       if runs and len(runs) > 1 else '')

    lines = ['', f"## pose learning: MSE vs GST vs heatmap OT, {record['date']}", '',
             f"`python tools/benchmark/pose.py` on {record['machine']}; {record['jobs']} runs "
             f"in parallel, 1 torch thread each; {record['iters']} steps of batch 32 per "
             f"run, random-init half-width ResNet-18, 64x64 input, 32x32 heatmaps; "
             "synthetic set "
             f"{record['num_train']} train / {record['num_val']} held-out images; seeds "
             f"{record['seeds']}. Step time: a separate pass, one run alone, 1 thread.", '',
             'PCK in % of held-out joints (mean [per seed]); MPII: PCKh@0.5 in % on the 5 '
             'training images after ' + str(record.get('mpii_iters', '?')) + ' steps.', '',
             '| arm | PCK@0.2 | PCK@0.1 | PCK@0.05 | MPII overfit PCKh@0.5 | step (s) |',
             '|---|---|---|---|---|---|']
    for a in arms:
        lines.append(f'| {names[a]} | {cell(a, "PCK@0.2")} | {cell(a, "PCK@0.1")} | '
                     f'{cell(a, "PCK@0.05")} | {cell(a, "mpii_PCKh")} | '
                     f'{cell(a, "step_s", "{:.3f}")} |')
    lines += ['', 'GST runs (raw per-step values): ' + '; '.join(
        f"{r['arm']} seed {r['seed']} {r['data']}: guard warnings "
        f"{r['collapse_warnings'] or 'none'}, "
        f"min joint mass {r['min_joint_mass']:.3f}, loss first/last 50 steps "
        f"{r['loss_first50']:.3f} / {r['loss_last50']:.3f}, mass on joint "
        f"{r['mass_on_joint_first50']:.3f} / {r['mass_on_joint_last50']:.3f}"
        for r in record['runs'] if r['arm'].startswith('gst')) + '.', '']
    targets = record.get('targets', {})
    if targets:
        lines += ['Targets: ' + '; '.join(f'{k}: {v}' for k, v in targets.items()) + '.', '']
    with open(osp.join(ROOT, 'docs', 'benchmarks.md'), 'a') as f:
        f.write('\n'.join(lines))


def main(argv=None):
    args = parse_args(argv)
    _init_worker(1)
    from gst_mm.datasets.synthetic_pose import SyntheticPoseConfig
    from gst_mm.utils.mpii import write_mpii_headboxes
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    from make_synthetic_pose import make

    os.makedirs(args.work_dir, exist_ok=True)
    data_root = osp.join(args.work_dir, 'data') + '/'
    make(data_root, SyntheticPoseConfig(num_train=args.num_train, num_val=args.num_val),
         progress=False)
    for arm in ('gst', 'gst-soft'):  # fit each cache once, before parallel runs share it
        if arm in args.arms:
            run_one(arm, 0, 1, data_root, args.work_dir, test=False)
    t0 = time.perf_counter()
    jobs = [(a, s, args.iters, data_root, args.work_dir) for s in args.seeds for a in args.arms]
    jobs += [(a, s, args.iters, data_root, args.work_dir) for s in args.ablation_seeds
             for a in ABLATIONS if a not in args.arms]
    mpii_root = MPII_SAMPLE.rstrip('/') + '/'
    if not args.skip_mpii and osp.isdir(MPII_SAMPLE):
        headbox = write_mpii_headboxes(
            osp.join(MPII_SAMPLE, 'annotations', 'mpii_sample.json'),
            osp.join(args.work_dir, 'mpii_headboxes.mat'))
        for arm in ('gst', 'gst-soft'):
            if arm in args.arms:
                run_one(arm, 0, 1, mpii_root, args.work_dir, headbox, test=False)
        jobs += [(a, 0, args.mpii_iters, mpii_root, args.work_dir, headbox) for a in args.arms]
    done = reused_runs(args.reuse_log)
    key = {5: 'synthetic', 6: 'mpii'}
    kept = [done[(j[0], j[1], key[len(j)])] for j in jobs if (j[0], j[1], key[len(j)]) in done]
    jobs = [j for j in jobs if (j[0], j[1], key[len(j)]) not in done]
    runs = kept + run_many(jobs, args.jobs)
    wall = time.perf_counter() - t0
    timing = [run_one(a, 0, args.timing_iters, data_root, args.work_dir, test=False)
              for a in args.arms]
    summary = summarise(runs, timing)
    targets = {}
    if 'gst' in summary and 'mse' in summary:
        g, m = summary['gst'], summary['mse']
        targets['no GST run collapses'] = all(
            not r['collapse_warnings'] for r in runs if r['arm'] == 'gst')
        targets['ablation runs with guard warnings'] = ', '.join(
            f"{r['arm']} seed {r['seed']}: {len(r['collapse_warnings'])} channels"
            for r in runs if r['arm'] in ABLATIONS) or 'none run'
        if 'PCK@0.2' in g:
            targets['synthetic PCK@0.2 GST >= 0.98 x MSE'] = (
                f"{g['PCK@0.2'] / m['PCK@0.2']:.3f} x, met: {g['PCK@0.2'] >= 0.98 * m['PCK@0.2']}")
        if 'mpii_PCKh' in g:
            targets['MPII overfit GST within 2 points of MSE'] = (
                f"{g['mpii_PCKh'] - m['mpii_PCKh']:+.1f}, met: "
                f"{g['mpii_PCKh'] >= m['mpii_PCKh'] - 2}")
        if 'step_s' in g:
            targets['step GST / MSE <= 1.15'] = (
                f"{g['step_s'] / m['step_s']:.2f}, met: {g['step_s'] / m['step_s'] <= 1.15}")
        if 'ot' in summary and 'step_s' in summary['ot']:
            targets['step OT / GST (reported)'] = f"{summary['ot']['step_s'] / g['step_s']:.2f}"
    record = dict(benchmark='pose_learning', date=datetime.datetime.utcnow().strftime(
        '%Y-%m-%d %H:%M UTC'), machine=f'{platform.machine()}, {os.cpu_count()} cores',
        jobs=args.jobs, iters=args.iters, mpii_iters=args.mpii_iters, seeds=args.seeds,
        num_train=args.num_train, num_val=args.num_val, wall_s=wall, runs=runs,
        timing=timing, summary=summary, targets=targets)
    print(json.dumps(record))
    with open(osp.join(args.work_dir, 'result.json'), 'w') as f:
        json.dump(record, f, indent=1)
    if not args.no_doc:
        append_doc(record)
    return record


if __name__ == '__main__':
    main()
