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
import sys
from typing import Dict, List

import numpy as np
from _common import (
    ROOT,
    append_section,
    init_worker,
    load_line,
    machine,
    median_step,
    recorder_of,
    run_pool,
    short_run,
    utc_now,
)

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
    'gst': 'gst:disc=log,cost=0.2,ent=0.4',                  # the default recipe
    'gst-cost0.5': 'gst:disc=log,cost=0.5,ent=1.0',
    'gst-b8': 'gst:beta=8,disc=log,cost=0.2,ent=0.4',
    'gst-nowarm': 'gst:disc=log,cost=0.2,ent=0.4,warmup=0',
    'gst-sigma2': 'gst:disc=log,cost=0.2,ent=1.6',           # variance 4 cells^2
    'gst-soft': 'gst:plan=soft,disc=log,cost=0.2,ent=0.4',
}
DEFAULT_ARMS = ['mse', 'gst-paper', 'gst-beta', 'gst-beta-log', 'gst-cost0.1', 'gst',
                'gst-cost0.5', 'ot']
#: arms of the MPII overfit check and of the continuation (defaults)
MPII_ARMS = ['mse', 'gst-paper', 'gst-beta-log', 'gst', 'gst-nowarm', 'gst-sigma2']
CONTINUATION_ARMS = ['mse', 'gst-paper', 'gst-beta-log', 'gst']
SPEC_KEYS = dict(beta=float, cost=float, kind=str, disc=str, warmup=int, plan=str,
                 nonneg=str, ent=float)
DECODERS = {'codec': ('codec', 1), 'dark': ('dark', 1), 'centroid1': ('centroid', 1),
            'centroid2': ('centroid', 2)}
MPII_SAMPLE = osp.join(osp.dirname(ROOT), 'shared', 'data', 'mpii_sample')
HIST_EDGES = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, float('inf')]


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
    for step in cfg.train_dataloader.dataset.pipeline:
        if str(step['type']).endswith('LoadPoseTransportKernel'):
            step.update(cache_dir=cache_dir, data_root=data_root)
    for hook in cfg.get('custom_hooks', []) or []:
        if str(hook['type']).endswith('GSTPrecomputeHook'):
            hook.update(cache_dir=cache_dir, data_root=data_root)


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
    out_file = osp.join(work_dir, 'runs', tag + '.json')
    if reuse and osp.exists(out_file):
        with open(out_file) as f:
            return json.load(f)
    _register_error_metric()
    cfg = arm_config(arm, data, data_root, work_dir)
    schedule = _schedule(iters)
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
    os.makedirs(osp.dirname(out_file), exist_ok=True)
    with open(out_file, 'w') as f:
        json.dump(out, f)
    print(f'[bench] {json.dumps(out)}', file=sys.stderr, flush=True)
    return out


# ---------------------------------------------------------------------- summary
def _paired(runs: List[Dict], data: str, key: str, decoder: str, ref: str = 'mse'):
    """``arm -> (mean, per seed, paired differences to ref)`` of ``key``."""
    out = {}
    by = {(r['arm'], r['seed']): r for r in runs if r['data'] == data and r['mode'] == 'train'}
    for arm in dict.fromkeys(r['arm'] for r in runs if r['data'] == data):
        seeds = sorted(s for a, s in by if a == arm)
        dec = decoder if decoder in by[(arm, seeds[0])]['metrics'] else 'codec'
        vals = [by[(arm, s)]['metrics'][dec][key] for s in seeds]
        diffs = [by[(arm, s)]['metrics'][dec][key] - by[(ref, s)]['metrics']['codec'][key]
                 for s in seeds if (ref, s) in by]
        out[arm] = dict(mean=statistics.mean(vals), runs=vals, diffs=diffs, decoder=dec)
    return out


def best_decoder(runs: List[Dict]) -> str:
    """The decoder with the highest mean synthetic PCK@0.05 over the GST runs."""
    scores = {}
    for name in DECODERS:
        vals = [r['metrics'][name]['PCK@0.05'] for r in runs
                if r['data'] == 'synthetic' and r['mode'] == 'train' and name in r['metrics']]
        if vals:
            scores[name] = statistics.mean(vals)
    return max(scores, key=scores.get) if scores else 'codec'


def _pct(v: float) -> str:
    return f'{100 * v:.1f}'


def doc_lines(record: Dict) -> List[str]:
    runs = record['runs']
    lines = [f"`python tools/benchmark/pose.py` on {record['machine']}, {record['load']} at "
             f"start; {record['jobs']} runs in parallel, 1 torch thread each; random-init "
             f"half-width ResNet-18; synthetic set {record['num_train']} train / "
             f"{record['num_val']} held-out images, {record['iters']} steps of batch 32; "
             f"seeds {record['seeds']} (paired: {record['pairing']}). Wall time "
             f"{record['wall_s'] / 60:.0f} min. " + record.get('note', ''), '']
    specs = {a: ARMS.get(a, a) for a in dict.fromkeys(r['arm'] for r in runs)}
    lines += ['Arms: ' + '; '.join(f'`{a}` = `{s}`' for a, s in specs.items()) + '.', '']
    # decoders
    synth = [r for r in runs if r['data'] == 'synthetic' and r['mode'] == 'train']
    if synth:
        lines += ['Held-out PCK@0.05 by decoder (mean over seeds, %):', '',
                  '| arm | ' + ' | '.join(DECODERS) + ' |',
                  '|---|' + '---|' * len(DECODERS)]
        for arm in specs:
            cells = []
            for name in DECODERS:
                vals = [r['metrics'][name]['PCK@0.05'] for r in synth
                        if r['arm'] == arm and name in r['metrics']]
                cells.append(_pct(statistics.mean(vals)) if vals else '-')
            lines.append(f'| {arm} | ' + ' | '.join(cells) + ' |')
        dec = record['decoder']
        lines += ['', f"Held-out PCK (%), decoder `{dec}` for density heads (MSE: MMPose's "
                  'codec): mean [per seed] (paired difference to MSE per seed):', '',
                  '| arm | PCK@0.2 | PCK@0.1 | PCK@0.05 | mean error (cells) |',
                  '|---|---|---|---|---|']
        for arm in specs:
            row = [arm]
            for key in ('PCK@0.2', 'PCK@0.1', 'PCK@0.05', 'mean_cells'):
                s = _paired(runs, 'synthetic', key, dec).get(arm)
                if s is None:
                    row.append('-')
                    continue
                f = (lambda v: f'{v:.2f}') if key == 'mean_cells' else _pct
                diff = '' if arm == 'mse' or not s['diffs'] else ' (' + ', '.join(
                    ('+' if d >= 0 else '') + f(d) for d in s['diffs']) + ')'
                row.append(f"{f(s['mean'])} [{', '.join(f(v) for v in s['runs'])}]{diff}")
            lines.append('| ' + ' | '.join(row) + ' |')
        edges = [f'{a:g}-{b:g}' if b != float('inf') else f'>{a:g}'
                 for a, b in zip(HIST_EDGES[:-1], HIST_EDGES[1:])]
        lines += ['', 'Radial error histogram (share of held-out joints per error bin in '
                  'heatmap cells, seed mean, same decoder):', '',
                  '| arm | ' + ' | '.join(edges) + ' |', '|---|' + '---|' * len(edges)]
        for arm in specs:
            hs = [r['metrics'].get(dec, r['metrics']['codec'])['hist'] for r in synth
                  if r['arm'] == arm]
            if hs:
                mean = np.mean(np.asarray(hs), 0)
                lines.append(f'| {arm} | ' + ' | '.join(f'{v:.2f}' for v in mean) + ' |')
    mpii = [r for r in runs if r['data'] == 'mpii']
    if mpii:
        lines += ['', f"MPII overfit (5 sample images, {record['mpii_iters']} steps, trained "
                  'and tested on themselves; stand-in head boxes): PCKh (%) mean [per '
                  'seed], mean error in cells; same decoder:', '',
                  '| arm | PCKh@0.5 | PCKh@0.1 | mean error (cells) |', '|---|---|---|---|']
        for arm in dict.fromkeys(r['arm'] for r in mpii):
            row = [arm]
            for key in ('PCKh', 'PCKh01', 'mean_cells'):
                s = _paired(runs, 'mpii', key, record['decoder']).get(arm)
                f = (lambda v: f'{v:.2f}') if key == 'mean_cells' else _pct
                row.append(f"{f(s['mean'])} [{', '.join(f(v) for v in s['runs'])}]")
            lines.append('| ' + ' | '.join(row) + ' |')
    cont = [r for r in runs if r['mode'] == 'continue']
    if cont:
        lines += ['', f"Continuation: each seed's MSE model, then {record['continue_iters']} "
                  'steps of the arm at lr 1e-4 (no warm-up); held-out PCK@0.05 (%) before '
                  '-> after, mean over seeds (per seed):', '',
                  '| arm | before | after | change per seed |', '|---|---|---|---|']
        before = {r['seed']: r['metrics']['codec']['PCK@0.05'] for r in synth
                  if r['arm'] == 'mse'}
        for arm in dict.fromkeys(r['arm'] for r in cont):
            rs = [r for r in cont if r['arm'] == arm]
            dec = record['decoder'] if record['decoder'] in rs[0]['metrics'] else 'codec'
            after = [r['metrics'][dec]['PCK@0.05'] for r in rs]
            b = [before[r['seed']] for r in rs]
            lines.append(f'| {arm} | {_pct(statistics.mean(b))} | '
                         f'{_pct(statistics.mean(after))} | ' + ', '.join(
                             f'{100 * (x - y):+.1f}' for x, y in zip(after, b)) + ' |')
    timing = record.get('timing') or []
    if timing:
        mse = next((t['step_s'] for t in timing if t['arm'] == 'mse'), None)
        lines += ['', 'Step time, each arm alone, 1 thread (s; ratio to MSE): ' + '; '.join(
            f"{t['arm']} {t['step_s']:.3f}" + (f" ({t['step_s'] / mse:.2f}x)" if mse else '')
            for t in timing) + '.']
    health = [r for r in runs if 'min_joint_mass' in r]
    if health:
        lines += ['', 'GST runs, raw per-step values (first / last 50 steps): ' + '; '.join(
            f"{r['arm']} s{r['seed']} {r['data'][:5]}{' cont' if r['mode'] == 'continue' else ''}"
            f": transport {r.get('loss_transport_first50', 0):.3f}/"
            f"{r.get('loss_transport_last50', 0):.3f}"
            + (f", cost {r['loss_cost_first50']:.3f}/{r['loss_cost_last50']:.3f}"
               if 'loss_cost_last50' in r else '')
            + f", mass on joint {r['mass_on_joint_first50']:.2f}/"
            f"{r['mass_on_joint_last50']:.2f}, min mass {r['min_joint_mass']:.2f}, "
            f"guard {len(r['collapse_warnings'])}" for r in health) + '.']
    return lines


def pairing(runs: List[Dict]) -> str:
    """Whether every arm of a seed had the same initial weights and first batches."""
    ok, checked = True, 0
    for data in ('synthetic', 'mpii'):
        for seed in {r['seed'] for r in runs if r['data'] == data}:
            rs = [r for r in runs if r['data'] == data and r['seed'] == seed
                  and r['mode'] == 'train']
            if len(rs) > 1:
                checked += 1
                ok &= len({r['init_hash'] for r in rs}) == 1
                ok &= len({r['data_hash'] for r in rs}) == 1
    return (f"same initial weights and first 3 batches in all {checked} seed groups"
            if ok else 'NOT paired: initial weights or data differ within a seed (see JSON)')


# ---------------------------------------------------------------------- gstify check
def gstify_run(src: str, kind: str, seed: int, iters: int, work_dir: str,
               reuse: bool = False) -> Dict:
    """Train ``src`` (``kind='mse'``, MMPose's own recipe) or its default gstified version
    (``kind='gst'``, ``tools/gstify_config.py SRC OUT``) from random init on the 5 MPII
    sample images for ``iters`` steps (``tools/train.py --iters``) and test on them:
    PCKh@0.5, PCKh@0.1."""
    import importlib.util

    from mmengine.runner import Runner

    from gst_mm.utils.config import load_run_config
    from gst_mm.utils.config import short_run as iters_run
    name = osp.splitext(osp.basename(src.split('::')[-1]))[0]
    tag = f'gstify_{kind}_{name}_seed{seed}'
    out_file = osp.join(work_dir, 'runs', tag + '.json')
    if reuse and osp.exists(out_file):
        with open(out_file) as f:
            return json.load(f)
    path = src
    if kind == 'gst':
        spec = importlib.util.spec_from_file_location(
            '_gstify', osp.join(ROOT, 'tools', 'gstify_config.py'))
        tool = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tool)
        path = osp.join(work_dir, f'{name}_gst.py')
        with open(path, 'w') as f:
            f.write(tool.gstify(src, path))
    elif '::' in src:
        path = osp.join(work_dir, f'{name}_mse.py')
        with open(path, 'w') as f:
            f.write(f'_base_ = [{src!r}]\n')
    cfg = load_run_config(path, {'data_root': MPII_SAMPLE.rstrip('/') + '/'})
    cfg.model.backbone.init_cfg = None
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].batch_size = 5
        cfg[loader].num_workers = 0
        cfg[loader].persistent_workers = False
    if kind == 'gst':  # the sample's cache in this work dir, not beside the shared data
        cache = osp.join(work_dir, f'gst_cache_{name}')
        for step in cfg.train_dataloader.dataset.pipeline:
            if str(step['type']).endswith('LoadPoseTransportKernel'):
                step['cache_dir'] = cache
        for hook in cfg.custom_hooks:
            if str(hook['type']).endswith('GSTPrecomputeHook'):
                hook['cache_dir'] = cache
    iters_run(cfg, iters)
    cfg.default_hooks.logger.interval = 50
    cfg.work_dir = osp.join(work_dir, tag)
    cfg.randomness = dict(seed=seed)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=iters)
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type='gst_mm._BenchRecorder')]
    runner = Runner.from_cfg(cfg)
    runner.train()
    rec = recorder_of(runner)
    m = runner.test()
    out = dict(src=src, kind=kind, seed=seed, iters=iters, PCKh=float(m['PCK']) / 100,
               PCKh01=float(m['PCK@0.1']) / 100, step_s=median_step(rec.steps),
               init_hash=rec.init_hash, data_hash=rec.data_hash)
    os.makedirs(osp.dirname(out_file), exist_ok=True)
    with open(out_file, 'w') as f:
        json.dump(out, f)
    print(f'[bench] {json.dumps(out)}', file=sys.stderr, flush=True)
    return out


# ---------------------------------------------------------------------- main
def main(argv=None) -> Dict:
    import time
    args = parse_args(argv)
    init_worker(1)
    if args.gstify:
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
                       doc_lines(record))
    return record


def gstify_main(args) -> Dict:
    """``--gstify``: each source recipe against its gstified version, paired seeds."""
    import time
    os.makedirs(args.work_dir, exist_ok=True)
    t0 = time.perf_counter()
    jobs = [(src, kind, s, args.mpii_iters, args.work_dir, args.reuse)
            for src in args.gstify for s in args.mpii_seeds for kind in ('mse', 'gst')]
    runs = run_pool(gstify_run, jobs, args.jobs)
    record = dict(benchmark='pose_gstify', date=utc_now(), machine=machine(), load=load_line(),
                  iters=args.mpii_iters, seeds=args.mpii_seeds, runs=runs,
                  wall_s=time.perf_counter() - t0)
    print(json.dumps(record))
    with open(osp.join(args.work_dir, 'gstify.json'), 'w') as f:
        json.dump(record, f, indent=1)
    if not args.no_doc:
        lines = [f"`python tools/benchmark/pose.py --gstify ...` on {record['machine']}, "
                 f"{record['load']}; random init, the 5 MPII sample images for training and "
                 f"testing (stand-in head boxes), {args.mpii_iters} steps of batch 5 "
                 f"(`tools/train.py --iters` schedule), seeds {args.mpii_seeds}; "
                 f"{args.jobs} runs in parallel, 1 thread each. Wall time "
                 f"{record['wall_s'] / 60:.0f} min. " + args.note, '',
                 '| source config | MSE PCKh@0.5 | GST PCKh@0.5 | MSE PCKh@0.1 | GST PCKh@0.1 '
                 '| step GST / MSE |', '|---|---|---|---|---|---|']
        for src in args.gstify:
            rs = {k: [r for r in runs if r['src'] == src and r['kind'] == k]
                  for k in ('mse', 'gst')}

            def mean(k, key):
                return 100 * statistics.mean(r[key] for r in rs[k])

            def per(k, key):
                return ', '.join(f'{100 * r[key]:.1f}' for r in rs[k])
            ratio = (statistics.mean(r['step_s'] for r in rs['gst'])
                     / statistics.mean(r['step_s'] for r in rs['mse']))
            lines.append(f'| `{src}` | {mean("mse", "PCKh"):.1f} [{per("mse", "PCKh")}] | '
                         f'{mean("gst", "PCKh"):.1f} [{per("gst", "PCKh")}] | '
                         f'{mean("mse", "PCKh01"):.1f} [{per("mse", "PCKh01")}] | '
                         f'{mean("gst", "PCKh01"):.1f} [{per("gst", "PCKh01")}] | {ratio:.2f} |')
        append_section(f"gstify check: MMPose recipes vs their GST versions, {record['date']}",
                       lines)
    return record


if __name__ == '__main__':
    main()
