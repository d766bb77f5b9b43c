"""Pose learning benchmark: MSE vs GST variants vs heatmap OT, random init, 2 CPU cores.

    python tools/benchmark/pose.py [--arms mse gst-paper gst ...] [--seeds 0 1 2]
        [--iters 500] [--jobs 2] [--mpii-iters 300] [--mpii-seeds 0 1 2]
        [--continue-iters 200] [--skip-mpii] [--skip-continuation] [--skip-timing]
        [--work-dir work_dirs/bench_pose] [--no-doc]

An arm is a name of :data:`ARMS` or a spec ``gst:beta=8,cost=0.1,ent=0.2,kind=sqdist,
disc=l1,warmup=100,plan=hard`` (every key optional; defaults: the paper's GST, i.e. beta 1,
cost 0, l1, with the synthetic protocol's 100 MSE warm-up steps).

* **Paired seeds**: every arm of a seed starts from the same initial weights and sees
  the same augmented crops in the same order (the recorder's ``init_hash`` and
  ``data_hash`` of every run are compared and reported).
* **Synthetic set** (``configs/synthetic_pose/``; random-init half-width ResNet-18,
  64x64 input, 32x32 heatmaps): held-out PCK@0.2 / 0.1 / 0.05 (MMPose's
  ``PCKAccuracy``, normalised by the box) for every decoder of the density head
  (MMPose's codec, DARK-style Newton step, mass centroid r = 1, 2) and the radial
  error histogram in heatmap cells.
* **MPII overfit**: the 5 MPII sample images (128x128 input, 64x64 heatmaps), trained
  and evaluated on themselves: PCKh@0.5, PCKh@0.1 (stand-in head boxes) and the mean
  error in cells.
* **Continuation**: each seed's MSE model, then ``--continue-iters`` steps of each arm
  (lr 1e-4 constant, no warm-up): PCK@0.05 before and after.
* **Health**: raw per-step values, not the smoothed log: first / last 50-step means
  of every loss term and of ``mass_on_joint``, the smallest ``joint_mass``, the
  collapse guard's warnings.
* **Step time**: each arm alone, 1 thread (``--jobs`` runs in parallel do not time).

Prints one JSON line, writes ``<work-dir>/result.json`` and appends a section to
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import statistics
from typing import Dict

import numpy as np
from _common import (
    MPII_SAMPLE,
    ROOT,
    append_section,
    init_worker,
    load_line,
    machine,
    median_step,
    point_gst_cache,
    recorder_of,
    run_pool,
    short_run,
    store_run,
    stored_run,
    utc_now,
)
from pose_report import DECODERS, HIST_EDGES, best_decoder, doc_lines, pairing

CONFIGS = dict(mse='td-hm_res18-half_1xb32-1000it_synthetic-64x64.py',
               gst='gst_res18-half_1xb32-1000it_synthetic-64x64.py',
               ot='ot_res18-half_1xb32-1000it_synthetic-64x64.py',
               soft='gst-soft_res18-half_1xb32-1000it_synthetic-64x64.py')
#: named arms (docs/pose.md has the reading)
ARMS = {
    'mse': 'mse',
    'ot': 'ot',
    'gst-paper': 'gst:',                                     # the paper: beta 1, L1, no cost
    'gst-beta': 'gst:beta=8',
    'gst-beta-log': 'gst:beta=8,disc=log',
    'gst-beta-log-cost0.2': 'gst:beta=8,disc=log,cost=0.2',  # cost without entropy
    'gst-cost0.1': 'gst:disc=log,cost=0.1,ent=0.2',          # lambda sweep at eps = 2 lambda
    'gst': 'gst:disc=log,cost=0.2,ent=0.4',                  # the default recipe at beta 1
    'gst-cost0.5': 'gst:disc=log,cost=0.5,ent=1.0',
    'gst-b8': 'gst:beta=8,disc=log,cost=0.2,ent=0.4',        # the default recipe
    'gst-b8-cost0.5': 'gst:beta=8,disc=log,cost=0.5,ent=1.0',
    'gst-nowarm': 'gst:disc=log,cost=0.2,ent=0.4,warmup=0',
    'gst-sigma2': 'gst:disc=log,cost=0.2,ent=1.6',           # variance 4 cells^2
    'gst-soft': 'gst:plan=soft,disc=log,cost=0.2,ent=0.4',
}
DEFAULT_ARMS = ['mse', 'gst-paper', 'gst-beta', 'gst-beta-log', 'gst-cost0.1', 'gst',
                'gst-cost0.5', 'gst-b8', 'ot']
#: arms of the MPII overfit check and of the continuation (defaults)
MPII_ARMS = ['mse', 'gst-paper', 'gst', 'gst-b8']
CONTINUATION_ARMS = ['mse', 'gst-paper', 'gst', 'gst-b8']
SPEC_KEYS = dict(beta=float, cost=float, kind=str, disc=str, warmup=int, plan=str,
                 nonneg=str, ent=float)


def parse_spec(arm: str) -> Dict:
    """``{'base': 'mse'|'ot'|'gst', ...}`` of an arm name or spec (module docstring)."""
    spec = ARMS.get(arm, arm)
    base, _, rest = spec.partition(':')
    if base not in ('mse', 'ot', 'gst'):
        raise SystemExit(f'pose.py: error: unknown arm {arm!r} (names: {sorted(ARMS)}, or '
                         "'gst:key=value,...')")
    out: Dict = dict(base=base)
    for item in filter(None, rest.split(',')):
        key, _, value = item.partition('=')
        if key not in SPEC_KEYS:
            raise SystemExit(f'pose.py: error: arm {arm!r}: unknown key {key!r} '
                             f'(keys: {sorted(SPEC_KEYS)})')
        out[key] = SPEC_KEYS[key](value)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arms', nargs='+', default=DEFAULT_ARMS)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--iters', type=int, default=500, help='training steps per run')
    p.add_argument('--num-train', type=int, default=400)
    p.add_argument('--num-val', type=int, default=100)
    p.add_argument('--jobs', type=int, default=2, help='runs in parallel (1 thread each)')
    p.add_argument('--timing-iters', type=int, default=40)
    p.add_argument('--mpii-iters', type=int, default=300)
    p.add_argument('--mpii-seeds', type=int, nargs='*', default=[0, 1, 2])
    p.add_argument('--mpii-arms', nargs='*', default=MPII_ARMS,
                   help='arms of the MPII overfit check')
    p.add_argument('--continue-arms', nargs='*', default=CONTINUATION_ARMS,
                   help='arms continued from each seed\'s MSE model')
    p.add_argument('--continue-iters', type=int, default=200)
    p.add_argument('--skip-mpii', action='store_true')
    p.add_argument('--skip-continuation', action='store_true')
    p.add_argument('--skip-timing', action='store_true')
    p.add_argument('--gstify-variant', type=json.loads, action='append', default=[],
                   help='with --gstify: also a gstified version with these recipe fields '
                        '(JSON, e.g. \'{"mse_warmup_iters": 100}\'); repeatable')
    p.add_argument('--gstify', nargs='*', default=[],
                   help='MMPose configs (mmpose::...) to check instead: the source recipe vs '
                   'its default gstified version on the 5 MPII images (--mpii-iters steps, '
                   '--mpii-seeds)')
    p.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'bench_pose'))
    p.add_argument('--reuse', action='store_true',
                   help='keep runs whose result file exists in the work dir')
    p.add_argument('--note', default='', help='a sentence for the doc section')
    p.add_argument('--no-doc', action='store_true', help='do not append to docs/benchmarks.md')
    args = p.parse_args(argv)
    for arm in args.arms + args.mpii_arms + args.continue_arms:
        parse_spec(arm)
    return args


# ---------------------------------------------------------------------- configs
def _register_error_metric():
    """A metric collecting each visible joint's error (normalised by the box, and in
    heatmap cells): the radial histogram and the mean error in cells."""
    from mmengine.evaluator import BaseMetric

    from gst_mm.registry import METRICS

    @METRICS.register_module(name='_BenchPoseErrors', force=True)
    class PoseErrors(BaseMetric):
        default_prefix = 'err'

        def __init__(self, heatmap_size: int, **kwargs):
            super().__init__(**kwargs)
            self.heatmap_size = int(heatmap_size)

        def process(self, data_batch, data_samples):
            for s in data_samples:
                pred = np.asarray(s['pred_instances']['keypoints'])[0]
                gt = np.asarray(s['gt_instances']['keypoints'])[0]
                vis = np.asarray(s['gt_instances']['keypoints_visible']).reshape(-1)[:len(gt)]
                crop = float(np.asarray(s['input_scale']).reshape(-1)[0])
                err = np.linalg.norm(pred - gt, axis=1)[vis > 0]
                self.results.append(err / crop * self.heatmap_size)

        def compute_metrics(self, results):
            cells = np.concatenate(results) if results else np.zeros(0)
            hist, _ = np.histogram(cells, bins=HIST_EDGES)
            out = dict(mean_cells=float(cells.mean()) if len(cells) else float('nan'))
            out.update({f'hist{i}': float(v) / max(len(cells), 1) for i, v in enumerate(hist)})
            return out

    return PoseErrors


def _set_paths(cfg, data_root: str, cache_dir: str) -> None:
    """Point every data set, the kernel transform and the hook at ``data_root``."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
    point_gst_cache(cfg, cache_dir=cache_dir, data_root=data_root)


def _mpii(cfg) -> None:
    """Turn a synthetic config into the MPII overfit check (the 5 sample images for
    training and testing, 128x128 input, 64x64 heatmaps: the synthetic stride 2)."""
    codec = dict(type='MSRAHeatmap', input_size=(128, 128), heatmap_size=(64, 64), sigma=2)
    cfg.model.head.out_channels = 16
    cfg.model.head.decoder = codec
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dl = cfg[loader]
        dl.batch_size = 5
        dl.dataset.type = 'MpiiDataset'
        split = 'train' if loader == 'train_dataloader' else 'val'
        dl.dataset.ann_file = f'annotations/mpii_{split}.json'
        dl.dataset.data_prefix = dict(img='images/')
        if split == 'val':
            dl.dataset.headbox_file = osp.join(MPII_SAMPLE, 'annotations', 'mpii_gt_val.mat')
        for step in dl.dataset.pipeline:
            if step['type'] == 'TopdownAffine':
                step['input_size'] = (128, 128)
            if step['type'] == 'GenerateTarget':
                step['encoder'] = codec
            if step['type'] == 'GetBBoxCenterScale':
                step.pop('padding', None)
            if step['type'] == 'RandomBBoxTransform':
                step.update(rotate_factor=30, scale_factor=(0.75, 1.25))
    cfg.test_evaluator = [dict(type='MpiiPCKAccuracy', norm_item='head'),
                          dict(type='gst_mm._BenchPoseErrors', heatmap_size=64)]


def arm_config(arm: str, data: str, data_root: str, work_dir: str):
    """The MMEngine config of ``arm`` on ``data`` ('synthetic' | 'mpii')."""
    from mmengine.config import Config
    spec = parse_spec(arm)
    base = spec['base']
    name = CONFIGS['soft' if spec.get('plan') == 'soft' else base]
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'synthetic_pose', name))
    if base == 'gst':
        head = cfg.model.head
        head.mse_warmup_iters = spec.get('warmup', head.get('mse_warmup_iters', 0))
        head.beta = spec.get('beta', 1.0)
        if 'nonneg' in spec:
            head.nonneg = spec['nonneg']
        head.loss.update(discrepancy=spec.get('disc', 'l1'), cost_weight=spec.get('cost', 0.0),
                         entropy_weight=spec.get('ent', 0.0))
        for step in cfg.train_dataloader.dataset.pipeline:
            if str(step['type']).endswith('LoadPoseTransportKernel'):
                step['cost'] = spec.get('kind', 'sqdist')
    if data == 'mpii':
        _mpii(cfg)
    else:
        cfg.test_evaluator = list(cfg.test_evaluator) + [
            dict(type='gst_mm._BenchPoseErrors', heatmap_size=32)]
    plan = '_soft' if spec.get('plan') == 'soft' else ''
    _set_paths(cfg, data_root, osp.join(work_dir, f'gst_cache_{data}{plan}'))
    return cfg


def _schedule(iters: int) -> list:
    return [dict(type='LinearLR', begin=0, end=min(100, iters), start_factor=0.01,
                 by_epoch=False),
            dict(type='MultiStepLR', begin=0, end=iters, milestones=[int(iters * 0.8)],
                 gamma=0.1, by_epoch=False)]


def _tag(arm: str) -> str:
    return arm.replace(':', '_').replace(',', '_').replace('=', '')


# ---------------------------------------------------------------------- one run
def run_one(arm: str, seed: int, iters: int, data: str, data_root: str, work_dir: str,
            mode: str = 'train', load_from: str = '', reuse: bool = False) -> Dict:
    """Train ``arm`` (``mode``: 'train' | 'continue' from ``load_from`` | 'timing' |
    'fit' = only fill the cache) and evaluate it with every decoder."""
    from mmengine.runner import Runner
    tag = f'{data}_{mode}_{_tag(arm)}_seed{seed}'
    stored = stored_run(work_dir, tag, reuse)
    if stored is not None:
        return stored
    _register_error_metric()
    cfg = arm_config(arm, data, data_root, work_dir)
    schedule = _schedule(iters)
    if mode == 'timing' and 'mse_warmup_iters' in cfg.model.head:
        cfg.model.head.mse_warmup_iters = 0  # time the GST step, not the MSE warm-up
    if mode == 'continue':
        cfg.load_from = load_from
        cfg.optim_wrapper.optimizer.lr = 1e-4
        schedule = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=iters)]
        if 'mse_warmup_iters' in cfg.model.head:
            cfg.model.head.mse_warmup_iters = 0
    short_run(cfg, osp.join(work_dir, tag), seed, iters, schedule=schedule,
              save_last=(mode == 'train'))
    runner = Runner.from_cfg(cfg)
    runner.train()
    rec = recorder_of(runner)
    spec = parse_spec(arm)
    out = dict(arm=arm, seed=seed, data=data, mode=mode, iters=iters,
               step_s=median_step(rec.steps), init_hash=rec.init_hash,
               data_hash=rec.data_hash)
    if mode in ('fit', 'timing'):
        return out
    keys = sorted({k for r in rec.rows for k in r if k.startswith('loss') or k in (
        'mass_on_joint', 'joint_mass')})
    for k in keys:
        vals = [r[k] for r in rec.rows if k in r]
        out[k + '_first50'] = statistics.mean(vals[:50])
        out[k + '_last50'] = statistics.mean(vals[-50:])
    if spec['base'] == 'gst':
        out['min_joint_mass'] = min(r['joint_mass'] for r in rec.rows)
        out['collapse_warnings'] = sorted(runner.model.head._warned)
    decoders = DECODERS if hasattr(runner.model.head, 'decode_mode') else {'codec': None}
    out['metrics'] = {}
    for name, setting in decoders.items():
        if setting is not None:
            runner.model.head.decode_mode, runner.model.head.decode_radius = setting
        m = runner.test()
        if data == 'mpii':
            # MpiiPCKAccuracy reports percent
            res = dict(PCKh=float(m['PCK']) / 100, PCKh01=float(m['PCK@0.1']) / 100)
        else:
            res = {f'PCK@{t}': float(m[f'pck{t}/PCK']) for t in ('0.2', '0.1', '0.05')}
        res['mean_cells'] = float(m['err/mean_cells'])
        res['hist'] = [float(m[f'err/hist{i}']) for i in range(len(HIST_EDGES) - 1)]
        out['metrics'][name] = res
    if mode == 'train':
        out['checkpoint'] = osp.join(work_dir, tag, f'iter_{iters}.pth')
    return store_run(work_dir, tag, out)


# ---------------------------------------------------------------------- main
def main(argv=None) -> Dict:
    import time
    args = parse_args(argv)
    init_worker(1)
    if args.gstify:
        from pose_gstify import gstify_main
        return gstify_main(args)
    from gst_mm.datasets.synthetic_pose import SyntheticPoseConfig, write_dataset
    os.makedirs(args.work_dir, exist_ok=True)
    data_root = osp.join(args.work_dir, 'data') + '/'
    if not osp.exists(osp.join(data_root, 'annotations', 'val.json')):
        write_dataset(data_root, SyntheticPoseConfig(num_train=args.num_train,
                                                     num_val=args.num_val))
    mpii_root = MPII_SAMPLE.rstrip('/') + '/'
    use_mpii = not args.skip_mpii and osp.isdir(MPII_SAMPLE)
    mpii_arms = [a for a in args.mpii_arms if parse_spec(a)['base'] != 'ot'] if use_mpii else []
    # fill each plan's cache once before parallel runs share it
    for plan in sorted({parse_spec(a).get('plan', 'hard') for a in args.arms + mpii_arms
                        if parse_spec(a)['base'] == 'gst'}):
        arm = 'gst:plan=soft' if plan == 'soft' else 'gst:'
        run_one(arm, 0, 1, 'synthetic', data_root, args.work_dir, 'fit')
        if mpii_arms:
            run_one(arm, 0, 1, 'mpii', mpii_root, args.work_dir, 'fit')
    t0 = time.perf_counter()
    jobs = [(a, s, args.iters, 'synthetic', data_root, args.work_dir, 'train', '', args.reuse)
            for s in args.seeds for a in args.arms]
    jobs += [(a, s, args.mpii_iters, 'mpii', mpii_root, args.work_dir, 'train', '',
              args.reuse) for s in args.mpii_seeds for a in mpii_arms]
    runs = run_pool(run_one, jobs, args.jobs)
    if not args.skip_continuation and 'mse' in args.arms:
        ckpt = {r['seed']: r['checkpoint'] for r in runs if r['arm'] == 'mse'
                and r['data'] == 'synthetic'}
        jobs = [(a, s, args.continue_iters, 'synthetic', data_root, args.work_dir,
                 'continue', ckpt[s], args.reuse) for s in args.seeds
                for a in args.continue_arms if parse_spec(a)['base'] != 'ot']
        runs += run_pool(run_one, jobs, args.jobs)
    wall = time.perf_counter() - t0
    timing = [] if args.skip_timing else [
        run_one(a, 0, args.timing_iters, 'synthetic', data_root, args.work_dir, 'timing')
        for a in args.arms]
    record = dict(benchmark='pose_learning', date=utc_now(), machine=machine(),
                  load=load_line(), jobs=args.jobs, iters=args.iters,
                  mpii_iters=args.mpii_iters, continue_iters=args.continue_iters,
                  seeds=args.seeds, num_train=args.num_train, num_val=args.num_val,
                  wall_s=wall, runs=runs, timing=timing, note=args.note)
    record['decoder'] = best_decoder(runs)
    record['pairing'] = pairing(runs)
    print(json.dumps(record))
    with open(osp.join(args.work_dir, 'result.json'), 'w') as f:
        json.dump(record, f, indent=1)
    if not args.no_doc:
        append_section(f"pose learning: MSE vs GST variants vs heatmap OT, {record['date']}",
                       doc_lines(record, ARMS))
    return record


if __name__ == '__main__':
    main()
