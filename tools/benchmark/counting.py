"""Crowd-counting benchmark with power: paired runs of GST, its plan ablations and the
baselines on two synthetic variants, with paired bootstrap intervals.

    python tools/benchmark/counting.py [--arms gst gst-heuristic ...] [--variants
        perspective sizes] [--seeds 0 1 2 3 4] [--protocol ema] [--jobs 2]
        [--work-dir work_dirs/bench_counting] [--reuse] [--note TEXT] [--no-doc]
    python tools/benchmark/counting.py --protocol-study [--protocols base low-lr ema]
        [--seeds 0 1 2 3]       # the seed spread of GST under each protocol

* **Arms** (:data:`ARMS`): GST (fitted plan), the heuristic plan (sigma 8 px), the
  ground-truth-scale plan (``gt``), L2, Bayesian loss, DM-Count, UOT and GST with the
  plan's transport cost (``gst-cost<lambda>``, gst_mm's extension; the paper is 0) and
  GST without its background term (``gst-nobg``).
* **Variants** (:data:`VARIANTS`): ``perspective`` (the synthetic set of
  ``configs/counting/gst_vgg19_synthetic.py``: objects 4x smaller at the top, sizes
  follow the row) and ``sizes`` (no perspective; each object's std log-uniform in
  [3, 27] px wherever it stands, so no single sigma fits: the case of the paper's
  Table 4).
* **Paired**: for a seed every arm starts from the same initial weights and sees the
  same crops in the same order (the recorder's hashes of the weights and of the first
  batches are compared and reported). The paired difference of each arm to GST is
  reported with a 90 % bootstrap interval that resamples seeds and test images
  (hierarchically), so it covers both the training noise and the test set.
* **Metrics**: test MAE / MSE, localisation F1 (CountingMetric, original resolution;
  AP/AR radii 1..100 and F1@8 px) and the share of predicted mass inside the true
  objects (cells within Mahalanobis distance 2 of an object: the synthetic set knows
  every object's extent).
* **Protocols** (:data:`PROTOCOLS`, ``--protocol-study`` compares their GST seed spread
  per CPU-minute): the schedule, learning rate and evaluation weights of every run.

Prints one JSON line, writes ``<work-dir>/result.json`` and appends a section to
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import statistics
import time
from typing import Dict, List

import _common as common
import numpy as np

from gst_mm.transport.kernel import DEFAULT_MAX_STD

CFG_DIR = osp.join(common.ROOT, 'configs', 'counting')
#: arm -> (config, cfg options)
ARMS: Dict[str, tuple] = {
    'gst': ('gst_vgg19_synthetic.py', {}),
    'gst-heuristic': ('gst-heuristic_vgg19_synthetic.py', {}),
    'gst-gt': ('gst-gt_vgg19_synthetic.py', {}),
    'l2': ('l2_vgg19_synthetic.py', {}),
    'bl': ('bl_vgg19_synthetic.py', {}),
    'dmcount': ('dmcount_vgg19_synthetic.py', {}),
    'uot': ('uot_vgg19_synthetic.py', {}),
    'gst-soft': ('gst-soft_vgg19_synthetic.py', {}),
    # GST without the background term (the mass a kernel sends to background is free)
    'gst-nobg': ('gst_vgg19_synthetic.py', {'model.loss.background': False}),
}
COST_PREFIX = 'gst-cost'  # gst-cost0.05: GST + lambda_W 0.05 (squared distance in cells)
#: data variants: SyntheticCrowdConfig fields over the config's synthetic_data
VARIANTS = {'perspective': {},
            'sizes': dict(far_scale=1.0, near_std=9.0, size_spread=3.0),
            'jitter': dict(annotation_jitter=1.0)}  # displaced clicks (soft-plan benchmark)
#: protocols: learning rate, warm-up steps, EMA of the weights for evaluation, steps
PROTOCOLS = {
    'base': dict(lr=1e-3, warmup=0, ema=False, iters=400),
    'low-lr': dict(lr=3e-4, warmup=0, ema=False, iters=400),
    'ema': dict(lr=1e-3, warmup=50, ema=True, iters=400),
}
MASK_RADIUS = 2.0  # Mahalanobis radius of an object's extent (mass-inside figure)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arms', nargs='+',
                   default=['gst', 'gst-heuristic', 'gst-gt', 'l2', 'dmcount'])
    p.add_argument('--cost-arms', nargs='*', default=['gst-cost0.05', 'gst-cost0.2'],
                   help='transport-cost arms (perspective variant only)')
    p.add_argument('--variants', nargs='+', default=['perspective', 'sizes'],
                   choices=list(VARIANTS), help='data variants (jitter: the soft-plan case)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    p.add_argument('--protocol', default='ema', choices=list(PROTOCOLS))
    p.add_argument('--iters', type=int, default=None, help="steps (default: the protocol's)")
    p.add_argument('--protocol-study', action='store_true',
                   help='only measure the GST seed spread under --protocols')
    p.add_argument('--protocols', nargs='+', default=list(PROTOCOLS), choices=list(PROTOCOLS))
    p.add_argument('--jobs', type=int, default=2, help='runs in parallel (1 thread each)')
    p.add_argument('--boot', type=int, default=2000, help='bootstrap resamples')
    p.add_argument('--work-dir', default=osp.join(common.ROOT, 'work_dirs', 'bench_counting'))
    p.add_argument('--reuse', action='store_true', help='keep finished runs of the work dir')
    p.add_argument('--note', default='')
    p.add_argument('--no-doc', action='store_true')
    args = p.parse_args(argv)
    for arm in args.arms + args.cost_arms:
        arm_spec(arm)
    return args


def arm_spec(arm: str) -> tuple:
    """``(config file, cfg options)`` of an arm name."""
    if arm in ARMS:
        return ARMS[arm]
    if arm.startswith(COST_PREFIX):
        lam = float(arm[len(COST_PREFIX):])
        return ('gst_vgg19_synthetic.py', {'model.loss.cost_weight': lam, '_cost': True})
    raise SystemExit(f'counting.py: error: unknown arm {arm!r} (names: {sorted(ARMS)} or '
                     f'{COST_PREFIX}<lambda>)')


# ---------------------------------------------------------------------- metric
def _register_recorder_metric():
    """Per test image: predicted and true count and the share of predicted mass inside
    the true objects (from the image's annotation file: true covariances)."""
    from mmengine.evaluator import BaseMetric

    from gst_mm.datasets.layout import read_annotation
    from gst_mm.registry import METRICS

    @METRICS.register_module(name='_BenchCountRecorder', force=True)
    class CountRecorder(BaseMetric):
        default_prefix = 'rec'

        def process(self, data_batch, data_samples):
            for s in data_samples:
                path = s['img_path']
                stem = osp.splitext(osp.basename(path))[0]
                ann = read_annotation(osp.join(osp.dirname(osp.dirname(path)), 'annotations',
                                               stem + '.json'))
                dens = np.asarray(s['pred_density'].cpu()).reshape(
                    s['pred_density'].shape[-2:])
                h, w = dens.shape
                ys, xs = np.mgrid[0:h, 0:w]
                cx, cy = (xs + 0.5) * 8.0, (ys + 0.5) * 8.0
                inside = np.zeros((h, w), bool)
                for (px, py), cov in zip(ann.points, ann.covariances if ann.covariances
                                         is not None else []):
                    inv = np.linalg.inv(np.asarray(cov, np.float64))
                    dx, dy = cx - px, cy - py
                    d2 = inv[0, 0] * dx * dx + 2 * inv[0, 1] * dx * dy + inv[1, 1] * dy * dy
                    inside |= d2 <= MASK_RADIUS ** 2
                total = float(dens.sum())
                self.results.append(dict(
                    image=stem, pred=total, gt=float(len(ann.points)),
                    inside=float(dens[inside].sum() / total) if total > 0 else 0.0,
                    # cells on a true object whose output is exactly 0 (a dead relu
                    # there gets no gradient from any loss) and such cells anywhere
                    zero_inside=float(np.mean(dens[inside] <= 0)) if inside.any() else 0.0,
                    zero_all=float(np.mean(dens <= 0))))

        def compute_metrics(self, results):
            self.records = list(results)
            return {k: float(np.mean([r[k] for r in results]))
                    for k in ('inside', 'zero_inside', 'zero_all')}

    return CountRecorder


# ---------------------------------------------------------------------- one run
def _configure(cfg, arm: str, variant_root: str, protocol: Dict, iters: int, seed: int,
               work_dir: str):
    _, options = arm_spec(arm)
    options = dict(options)
    if options.pop('_cost', False):
        for step in cfg.train_dataloader.dataset.pipeline:
            if str(step['type']).endswith('LoadTransportKernel'):
                step['cost'] = 'sqdist'
    if options:
        cfg.merge_from_dict(options)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = variant_root
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.optim_wrapper.optimizer.lr = protocol['lr']
    warm = min(int(protocol['warmup']), iters // 4)
    schedule = ([dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warm)]
                if warm else [])
    schedule.append(dict(type='CosineAnnealingLR', T_max=iters - warm, eta_min=1e-5,
                         by_epoch=False, begin=warm, end=iters))
    common.short_run(cfg, work_dir, seed, iters, schedule=schedule)
    if protocol['ema']:
        cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type='EMAHook', momentum=0.01)]
    cfg.test_evaluator = [dict(type='CountingMetric', localization=True, thresholds=(8.0, )),
                          dict(type='gst_mm._BenchCountRecorder')]
    return cfg


def run_one(arm: str, variant: str, seed: int, protocol_name: str, iters: int,
            work_root: str, reuse: bool = False) -> Dict:
    from mmengine.config import Config
    from mmengine.runner import Runner

    tag = f'{variant}_{protocol_name}_it{iters}_{arm}_seed{seed}'
    stored = common.stored_run(work_root, tag, reuse)
    if stored is not None:
        return stored
    _register_recorder_metric()
    cfg = Config.fromfile(osp.join(CFG_DIR, arm_spec(arm)[0]))
    cfg = _configure(cfg, arm, osp.join(work_root, f'data_{variant}') + '/',
                     PROTOCOLS[protocol_name], iters, seed, osp.join(work_root, tag))
    runner = Runner.from_cfg(cfg)
    t0 = time.perf_counter()
    runner.train()
    train_s = time.perf_counter() - t0
    rec = common.recorder_of(runner)
    metrics = runner.test()
    recorder = next(m for m in runner.test_evaluator.metrics
                    if type(m).__name__ == 'CountRecorder')
    out = dict(arm=arm, variant=variant, seed=seed, protocol=protocol_name, iters=iters,
               MAE=float(metrics['MAE']), MSE=float(metrics['MSE']),
               F1=float(metrics.get('F1', float('nan'))), AP=float(metrics.get('AP', float('nan'))),
               AR=float(metrics.get('AR', float('nan'))),
               F1_8=float(metrics.get('F1@8', metrics.get('F1@8.0', float('nan')))),
               inside=float(metrics['rec/inside']), zero_inside=float(metrics['rec/zero_inside']),
               zero_all=float(metrics['rec/zero_all']), images=recorder.records,
               step_s=common.median_step(rec.steps), train_s=train_s,
               init_hash=rec.init_hash, data_hash=rec.data_hash,
               loss_first50=statistics.mean(r['loss'] for r in rec.rows[:50]),
               loss_last50=statistics.mean(r['loss'] for r in rec.rows[-50:]))
    return common.store_run(work_root, tag, out, f"{tag}: MAE {out['MAE']:.2f} F1 "
                            f"{out['F1']:.3f} inside {out['inside']:.3f} ({train_s:.0f} s)")


# ---------------------------------------------------------------------- statistics
def paired_bootstrap(runs: List[Dict], ref: List[Dict], boot: int, seed: int = 0):
    """Mean paired MAE difference (arm - ref) with a 90 % interval resampling seeds,
    then test images within the resampled seeds (the same images for both arms)."""
    by_seed = {r['seed']: r for r in runs}
    ref_seed = {r['seed']: r for r in ref}
    seeds = sorted(set(by_seed) & set(ref_seed))
    if not seeds:
        return None
    diffs = []
    for s in seeds:
        a = {i['image']: abs(i['pred'] - i['gt']) for i in by_seed[s]['images']}
        b = {i['image']: abs(i['pred'] - i['gt']) for i in ref_seed[s]['images']}
        diffs.append(np.array([a[k] - b[k] for k in sorted(a)]))
    per_seed = [float(d.mean()) for d in diffs]
    rng = np.random.default_rng(seed)
    stats = []
    n_img = len(diffs[0])
    for _ in range(boot):
        pick = rng.integers(0, len(seeds), len(seeds))
        imgs = rng.integers(0, n_img, n_img)
        stats.append(float(np.mean([diffs[k][imgs].mean() for k in pick])))
    lo, hi = np.percentile(stats, [5, 95])
    return dict(mean=float(np.mean(per_seed)), per_seed=per_seed, lo=float(lo), hi=float(hi))


def pairing(runs: List[Dict]) -> str:
    groups = {}
    for r in runs:
        if r['arm'] == 'transformer':
            continue
        groups.setdefault((r['variant'], r['protocol'], r['seed']), []).append(r)
    bad = [k for k, rs in groups.items()
           if len({r['init_hash'] for r in rs}) > 1 or len({r['data_hash'] for r in rs}) > 1]
    if bad:
        return f'NOT paired in {len(bad)} of {len(groups)} seed groups: {bad[:3]}'
    return f'same initial weights and first 3 batches within all {len(groups)} seed groups'


def summarise(runs: List[Dict], boot: int) -> Dict:
    out: Dict = {}
    for (variant, protocol) in sorted({(r['variant'], r['protocol']) for r in runs}):
        rs = [r for r in runs if r['variant'] == variant and r['protocol'] == protocol]
        ref = [r for r in rs if r['arm'] == 'gst']
        table = {}
        arms = list(dict.fromkeys(r['arm'] for r in rs))
        for arm in sorted(arms, key=lambda a: (a != 'gst', arms.index(a))):
            ar = sorted((r for r in rs if r['arm'] == arm), key=lambda r: r['seed'])
            row = {k: float(np.mean([r[k] for r in ar])) for k in
                   ('MAE', 'MSE', 'F1', 'F1_8', 'inside', 'step_s', 'train_s')}
            for k in ('zero_inside', 'zero_all'):  # runs stored before 2026-12-03 lack them
                if all(k in r for r in ar):
                    row[k] = float(np.mean([r[k] for r in ar]))
            row['MAE_seeds'] = [round(r['MAE'], 2) for r in ar]
            # mean signed count error per image: a shared under- or over-count
            row['bias'] = float(np.mean([np.mean([i['pred'] - i['gt'] for i in r['images']])
                                         for r in ar]))
            row['MAE_sd'] = float(np.std([r['MAE'] for r in ar], ddof=1)) if len(ar) > 1 else 0.0
            if arm != 'gst' and ref:
                row['diff'] = paired_bootstrap(ar, ref, boot)
            table[arm] = row
        out[f'{variant}/{protocol}'] = table
    return out


def doc_lines(record: Dict) -> List[str]:
    lines = [f"`python tools/benchmark/counting.py` on {record['machine']}, {record['load']} at "
             f"start; {record['jobs']} runs in parallel, 1 torch thread each (data in the "
             f"training process); narrow VGG-19 (`gst_vgg19_synthetic.py`), 256 px crops, "
             f"batch 4, protocol `{record['protocol']}` ({json.dumps(record['protocol_cfg'])}), "
             f"seeds {record['seeds']}; {record['pairing']}. Wall time "
             f"{record['wall_s'] / 60:.0f} min. " + record.get('note', ''), '',
             'Test MAE mean (per seed, sd), MSE, count bias (mean predicted - true count per '
             'image), localisation F1 (AP/AR radii 1-100 px) and '
             'F1@8 px, share of predicted mass inside the true objects (Mahalanobis radius 2), '
             'and the paired MAE difference to GST with its 90 % bootstrap interval (seeds x '
             'test images; negative: better than GST):', '']
    for key, table in record['summary'].items():
        lines += [f'**{key}**', '',
                  '| arm | MAE | per seed (sd) | MSE | count bias | F1 | F1@8 | mass inside | '
                  'MAE - GST [90 % CI] | s / step |', '|---|---|---|---|---|---|---|---|---|---|']
        for arm, row in table.items():
            d = row.get('diff')
            diff = (f"{d['mean']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}]" if d else '-')
            lines.append(f"| {arm} | {row['MAE']:.2f} | {row['MAE_seeds']} "
                         f"({row['MAE_sd']:.2f}) | {row['MSE']:.2f} | {row['bias']:+.2f} | "
                         f"{row['F1']:.3f} | "
                         f"{row['F1_8']:.3f} | {row['inside']:.3f} | {diff} | "
                         f"{row['step_s']:.3f} |")
        lines.append('')
    return lines + scale_lines(record.get('plan_scales', {}))


# ---------------------------------------------------------------------- plans vs truth
def plan_scales(root: str, heuristic_sigma: float = 8.0, max_std: float = DEFAULT_MAX_STD
                ) -> Dict:
    """How close each plan's Gaussians are to the true objects of a variant's training
    images: the fitted covariances of ``<root>/gst_cache`` (the hard plan) and the
    heuristic's isotropic ``heuristic_sigma`` px against the generator's covariances,
    scale = det(cov)^(1/4) px (the geometric-mean std). Rank correlation, median
    relative scale error, the share of true objects above the kernel's ``max_std`` px
    clamp, and fitted / true per true-size band."""
    from gst_mm.datasets.layout import read_annotation, read_split
    from gst_mm.splatting.cache import GaussianCache, default_cache_dir
    split = osp.join(root, 'train.txt')
    if not osp.isfile(split):
        return {}
    cache = GaussianCache(default_cache_dir(root), data_root=root)
    fit, true = [], []
    for name in read_split(split):
        ann = read_annotation(osp.join(root, 'annotations', name + '.json'))
        rec = cache.read(osp.join(root, 'images', ann.image))
        fit.append(np.linalg.det(rec['covariances']) ** 0.25)
        true.append(np.linalg.det(np.asarray(ann.covariances)[rec['point_index']]) ** 0.25)
    if not fit:
        return {}
    fit, true = np.concatenate(fit), np.concatenate(true)
    bands = {}
    for lo, hi in ((0, 6), (6, 12), (12, 20), (20, np.inf)):
        m = (true >= lo) & (true < hi)
        if m.any():
            bands[f'{lo}-{hi:g}'] = dict(n=int(m.sum()),
                                         fit_over_true=float(np.median(fit[m] / true[m])))
    return dict(objects=int(len(true)),
                true_std_p5_50_95=[round(float(q), 1) for q in np.percentile(true, [5, 50, 95])],
                fit_rank_corr=common.spearman(fit, true),
                fit_rel_err=float(np.median(np.abs(fit / true - 1))),
                heuristic_rel_err=float(np.median(np.abs(heuristic_sigma / true - 1))),
                above_max_std=float(np.mean(true > max_std)), bands=bands)


def scale_lines(scales: Dict[str, Dict]) -> List[str]:
    if not any(scales.values()):
        return []
    lines = ['Plans against the true objects of the training images (scale = det(cov)^(1/4) '
             'px; median relative error; fitted / true per true-scale band):', '',
             '| variant | objects | true scale p5 / p50 / p95 px | fitted: rank corr. | '
             'fitted: error | heuristic 8 px: error | true > max_std | fitted / true by band '
             '|', '|---|---|---|---|---|---|---|---|']
    for v, s in scales.items():
        if not s:
            continue
        bands = ', '.join(f"{k} px {b['fit_over_true']:.2f}" for k, b in s['bands'].items())
        lines.append(f"| {v} | {s['objects']} | {s['true_std_p5_50_95']} | "
                     f"{s['fit_rank_corr']:.3f} | {100 * s['fit_rel_err']:.1f} % | "
                     f"{100 * s['heuristic_rel_err']:.1f} % | {100 * s['above_max_std']:.1f} % "
                     f"| {bands} |")
    return lines + ['']


# ---------------------------------------------------------------------- main
def prepare(variants: List[str], work_root: str, arms: List[str]) -> None:
    """Each variant's data set, and the cache of every fit plan the arms read (fitted
    once, before the runs share it)."""
    from mmengine.config import Config

    from gst_mm.datasets.synthetic_crowd import ensure_dataset
    from gst_mm.engine import hook_cfg_of, precompute_config
    base = Config.fromfile(osp.join(CFG_DIR, 'gst_vgg19_synthetic.py'))
    configs = dict.fromkeys(arm_spec(a)[0] for a in arms)
    for variant in variants:
        root = osp.join(work_root, f'data_{variant}') + '/'
        print(ensure_dataset(root, dict(base.synthetic_data, **VARIANTS[variant])))
        for name in configs:
            cfg = Config.fromfile(osp.join(CFG_DIR, name))
            if not hook_cfg_of(cfg):
                continue
            cfg.train_dataloader.dataset.data_root = root
            summary, where = precompute_config(cfg, 'train', workers=2, progress=False)
            print(f'[bench] {variant} {name}: {where}: {str(summary).splitlines()[0]}')


def main(argv=None) -> Dict:
    args = parse_args(argv)
    common.init_worker(1)
    os.makedirs(args.work_dir, exist_ok=True)
    t0 = time.perf_counter()
    if args.protocol_study:
        prepare(['perspective'], args.work_dir, ['gst'])
        jobs = [('gst', 'perspective', s, p, args.iters or PROTOCOLS[p]['iters'],
                 args.work_dir, args.reuse) for p in args.protocols for s in args.seeds]
        runs = common.run_pool(run_one, jobs, args.jobs)
        study = {}
        for p in args.protocols:
            rs = [r for r in runs if r['protocol'] == p]
            maes = [r['MAE'] for r in rs]
            minutes = sum(r['train_s'] for r in rs) / 60 / len(rs)
            study[p] = dict(MAE=float(np.mean(maes)), sd=float(np.std(maes, ddof=1)),
                            seeds=[round(m, 2) for m in maes], cpu_min_per_run=minutes,
                            sd_x_sqrt_min=float(np.std(maes, ddof=1) * np.sqrt(minutes)))
        record = dict(benchmark='counting_protocols', date=common.utc_now(),
                      machine=common.machine(),
                      load=common.load_line(), study=study, runs=runs,
                      wall_s=time.perf_counter() - t0)
        print(json.dumps({k: v for k, v in record.items() if k != 'runs'}))
        with open(osp.join(args.work_dir, 'protocols.json'), 'w') as f:
            json.dump(record, f, indent=1)
        if not args.no_doc:
            lines = [f"`python tools/benchmark/counting.py --protocol-study` on "
                     f"{record['machine']}, {record['load']}; GST on the perspective variant, "
                     f"seeds {args.seeds}, {args.jobs} runs in parallel. " + args.note, '',
                     '| protocol | settings | MAE mean | per seed | sd | train min / run | '
                     'sd x sqrt(min) |', '|---|---|---|---|---|---|---|']
            for p, v in study.items():
                settings = dict(PROTOCOLS[p], iters=args.iters or PROTOCOLS[p]['iters'])
                lines.append(f"| {p} | `{json.dumps(settings)}` | {v['MAE']:.2f} | "
                             f"{v['seeds']} | {v['sd']:.2f} | {v['cpu_min_per_run']:.1f} | "
                             f"{v['sd_x_sqrt_min']:.2f} |")
            common.append_section(
                f"Counting benchmark protocols (issue 22), {record['date']}", lines)
        return record
    prepare(args.variants, args.work_dir, args.arms + args.cost_arms)
    iters = args.iters or PROTOCOLS[args.protocol]['iters']
    jobs = [(a, v, s, args.protocol, iters, args.work_dir, args.reuse)
            for v in args.variants for s in args.seeds for a in args.arms]
    if 'perspective' in args.variants:
        jobs += [(a, 'perspective', s, args.protocol, iters, args.work_dir, args.reuse)
                 for s in args.seeds for a in args.cost_arms]
    runs = common.run_pool(run_one, jobs, args.jobs)
    record = dict(benchmark='counting', date=common.utc_now(), machine=common.machine(),
                  load=common.load_line(),
                  jobs=args.jobs, protocol=args.protocol, protocol_cfg=dict(
                      PROTOCOLS[args.protocol], iters=iters), seeds=args.seeds,
                  variants={v: VARIANTS[v] for v in args.variants},
                  wall_s=time.perf_counter() - t0, note=args.note)
    record['pairing'] = pairing(runs)
    record['plan_scales'] = {v: plan_scales(osp.join(args.work_dir, f'data_{v}'))
                             for v in args.variants}
    record['summary'] = summarise(runs, args.boot)
    print(json.dumps({k: v for k, v in record.items()}))
    with open(osp.join(args.work_dir, 'result.json'), 'w') as f:
        json.dump(dict(record, runs=runs), f, indent=1)
    if not args.no_doc:
        common.append_section(f"Crowd counting, paired (issue 22), {record['date']}",
                       doc_lines(record))
    return record


if __name__ == '__main__':
    main()
