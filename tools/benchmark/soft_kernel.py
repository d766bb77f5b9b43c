"""Soft-assignment kernel benchmark (issue 14): plan quality of the soft, hard and
heuristic plans on scenes with known object masks, and the fit + reduction cost.

Plan quality per object (cells of a ``stride`` px grid, labelled by the object mask at
the cell centre; :func:`gst_mm.splatting.synthetic.make_plan_scene`) for the soft, hard
and heuristic plans and the *oracle* (the scene's true object parts, the ceiling of the
measure):

* recall = share of the object's cells whose kernel row sends most mass to the
  object's annotation (argmax over the annotations and the background);
* precision = share of the annotation's kernel mass lying on its object's cells;
* F1 of the two, averaged over objects, then over scenes.

Cost: the default (hard) fit vs the soft fit (hard fit + densify + free fit +
reduction) on one 1000-point crowd scene, best of ``--reps``, plus the reduction alone
vs N (its near-linear growth).

Counting (``--counting``): the synthetic crowd set of ``gst_vgg19_synthetic.py`` with
clicks displaced by one object std (``annotation_jitter=1.0``, in
``data/synthetic_crowd_jitter``), trained with the soft plan, the hard plan and the
heuristic plan by ``tools/benchmark/counting.py``'s ``run_one`` (same protocol: steps,
batch, seeds); test MAE / MSE and localisation AP / AR / F1 (``CountingMetric``).

Usage::

    python tools/benchmark/soft_kernel.py [--scenes 6] [--threads 1] [--no-doc]
    python tools/benchmark/soft_kernel.py --counting [--iters 2000] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import os.path as osp
import platform
import sys
import time
from typing import Dict

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

KINDS = ('centred', 'displaced', 'top', 'parts', 'overlap')
PLANS = ('soft', 'hard', 'heuristic', 'oracle')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--scenes', type=int, default=6, help='scenes per kind (seeds 0..)')
    p.add_argument('--size', type=int, default=192, help='scene side px')
    p.add_argument('--objects', type=int, default=10)
    p.add_argument('--stride', type=int, default=2, help='kernel grid stride px')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--reps', type=int, default=2, help='timing repetitions (best kept)')
    p.add_argument('--cost-points', type=int, default=1000)
    p.add_argument('--soft', type=json.loads, default=None,
                   help='soft-plan settings (JSON), e.g. \'{"temperature": 0.5}\'')
    p.add_argument('--skip-cost', action='store_true')
    p.add_argument('--counting', action='store_true',
                   help='the counting run on displaced clicks instead of the plan quality')
    p.add_argument('--iters', type=int, default=2000, help='training steps per run')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--note', default='', help='a sentence for the docs section')
    p.add_argument('--plans', nargs='+', default=['soft', 'hard', 'heuristic'],
                   choices=['soft', 'hard', 'heuristic'], help='counting: plans to run')
    p.add_argument('--reuse', action='store_true',
                   help='counting: keep finished runs of the same steps found in the work '
                        'dir (their test_metrics.json) instead of training them again')
    p.add_argument('--no-doc', action='store_true')
    return p.parse_args(argv)


def plan_quality(kernel, labels: np.ndarray, stride: int) -> Dict[str, float]:
    """Mean precision / recall / F1 over the objects (module docstring)."""
    dense = kernel.dense().numpy()                          # (cells, N + 1)
    h, w = labels.shape[0] // stride, labels.shape[1] // stride
    cell_lab = labels[stride // 2::stride, stride // 2::stride][:h, :w].reshape(-1)
    n = dense.shape[1] - 1
    arg = dense.argmax(1)
    prec, rec, f1 = [], [], []
    for k in range(n):
        own = cell_lab == k
        mass = dense[:, k].sum()
        p = float(dense[own, k].sum() / mass) if mass > 0 else 0.0
        r = float((arg[own] == k).mean()) if own.any() else 0.0
        prec.append(p)
        rec.append(r)
        f1.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    return dict(precision=float(np.mean(prec)), recall=float(np.mean(rec)),
                f1=float(np.mean(f1)))


def kernels_of(scene, stride: int, soft_cfg) -> Dict[str, object]:
    from gst_mm.splatting import fit_gaussians
    from gst_mm.transport import build_kernel, heuristic_kernel
    from gst_mm.transport.soft_kernel import build_soft_kernel
    h, w = scene.labels.shape
    grid = (h // stride, w // stride)
    kw = dict(min_std=float(stride))
    hard = fit_gaussians(scene.image, scene.clicks)
    soft = fit_gaussians(scene.image, scene.clicks, plan='soft', soft=soft_cfg)
    c = soft.components
    # the ceiling of the measure: the scene's true parts, each object's mixture
    # weighted by area, owned by its click
    parts = [(k, cen, cov) for k, obj in enumerate(scene.parts) for cen, cov in obj]
    pen = np.array([k for k, _, _ in parts])
    cov = np.stack([cv for _, _, cv in parts])
    area = np.sqrt(np.linalg.det(cov))
    weight = area / np.bincount(pen, weights=area)[pen]
    oracle = build_soft_kernel(np.stack([cen for _, cen, _ in parts]), cov, np.arange(len(pen)),
                               pen, weight, len(scene.parts), grid, stride, **kw)
    return dict(oracle=oracle,
        hard=build_kernel(hard.means, hard.covariances, grid, stride, **kw),
        soft=build_soft_kernel(c.means, c.covariances, soft.comp, soft.pen, soft.weight,
                               len(soft), grid, stride, **kw),
        heuristic=heuristic_kernel(scene.clicks, grid, stride, **kw))


def quality(args) -> Dict[str, Dict[str, Dict[str, float]]]:
    from gst_mm.splatting.synthetic import make_plan_scene
    out = {}
    for kind in KINDS:
        rows = {p: [] for p in PLANS}
        for seed in range(args.scenes):
            scene = make_plan_scene(kind, args.size, args.size, args.objects, seed=seed)
            for plan, k in kernels_of(scene, args.stride, args.soft).items():
                rows[plan].append(plan_quality(k, scene.labels, args.stride))
        out[kind] = {p: {m: float(np.mean([r[m] for r in rows[p]]))
                         for m in ('precision', 'recall', 'f1')} for p in PLANS}
        q = out[kind]
        print(f'[soft_kernel] {kind}: ' + ', '.join(
            f"{p} P {q[p]['precision']:.3f} R {q[p]['recall']:.3f} F1 {q[p]['f1']:.3f}"
            for p in PLANS), file=sys.stderr, flush=True)
    return out


def cost(args) -> Dict[str, object]:
    """Fit times at ``--cost-points`` points and reduction time vs N."""
    from gst_mm.datasets.synthetic_crowd import SyntheticCrowdConfig
    from gst_mm.splatting import fit_gaussians
    from gst_mm.splatting.reduction import reduce_onto_pens
    from gst_mm.splatting.synthetic import make_crowd_scene
    cfg = SyntheticCrowdConfig(annotation_jitter=1.0)
    scene = make_crowd_scene(np.random.default_rng(0), 1024, 768, args.cost_points, cfg)
    best = {}
    info_soft = None
    for _ in range(args.reps):  # interleaved, best of reps
        for plan in ('hard', 'soft'):
            t = time.perf_counter()
            _, info = fit_gaussians(scene.image, scene.points, plan=plan, return_info=True,
                                    soft=args.soft if plan == 'soft' else None)
            dt = time.perf_counter() - t
            best[plan] = min(best.get(plan, np.inf), dt)
            if plan == 'soft':
                info_soft = info
    rng = np.random.default_rng(1)
    red = []
    for n in (250, 1000, 4000, 16000):
        side = 32.0 * np.sqrt(n)
        pts = rng.uniform(0, side, (n, 2))
        comps = np.concatenate([pts, pts + rng.normal(0, 6, (n, 2))])
        cov = np.broadcast_to(np.eye(2) * 36.0, (2 * n, 2, 2)).copy()
        t = time.perf_counter()
        reduce_onto_pens(comps, cov, pts, np.broadcast_to(np.eye(2) * 36.0, (n, 2, 2)))
        red.append(dict(points=n, components=2 * n, seconds=time.perf_counter() - t))
    return dict(points=int(len(scene.points)), image=[768, 1024], hard_s=best['hard'],
                soft_s=best['soft'], ratio=best['soft'] / best['hard'],
                soft_stats=info_soft.soft_stats, reduction=red)


COUNTING_PLANS = {'soft': 'gst-soft', 'hard': 'gst', 'heuristic': 'gst-heuristic'}


def counting(args) -> Dict[str, object]:
    """Soft / hard / heuristic plans on the displaced-click synthetic set (the counting
    benchmark's runs, variant ``jitter``, protocol ``base``)."""
    from _common import init_worker
    from counting import VARIANTS, prepare, run_one  # this folder's counting benchmark
    init_worker(args.threads)
    work = osp.join(ROOT, 'work_dirs', 'bench_soft_counting')
    plans = [p for p in COUNTING_PLANS if p in args.plans]
    prepare(['jitter'], work, [COUNTING_PLANS[p] for p in plans])
    runs = []
    for plan in plans:
        for seed in args.seeds:
            r = run_one(COUNTING_PLANS[plan], 'jitter', seed, 'base', args.iters, work,
                        args.reuse)
            r = dict(r, plan=plan)
            runs.append(r)
            print(f"[soft_kernel] counting {plan} seed {seed}: MAE {r['MAE']:.3f} "
                  f"F1 {r['F1']:.3f} step {r['step_s']:.3f} s", file=sys.stderr, flush=True)
    summary = {}
    for plan in plans:
        rs = [r for r in runs if r['plan'] == plan]
        summary[plan] = {k: float(np.mean([r[k] for r in rs])) for k in ('MAE', 'MSE', 'F1',
                                                                           'AP', 'AR')}
        summary[plan]['MAE_per_seed'] = [round(r['MAE'], 3) for r in rs]
        summary[plan]['F1_per_seed'] = [round(r['F1'], 3) for r in rs]
    data = dict(VARIANTS['jitter'])
    return dict(iters=args.iters, seeds=args.seeds, jitter=data['annotation_jitter'], data=data,
                runs=[{k: v for k, v in r.items() if k != 'images'} for r in runs],
                summary=summary)


def _append(path: str, lines) -> None:
    with open(path, 'a') as f:
        f.write('\n'.join(lines) + '\n')


def _header(result: Dict, title: str, flags: str) -> str:
    """A docs section's title and its first words (tool, machine, threads, load)."""
    return (f"\n## {title} (issue 14) — {result['date']}\n\n"
            f"`tools/benchmark/soft_kernel.py{flags}`: {result['machine']}, torch threads = "
            f"{result['threads']}, load before start {result['load']}. ")


def write_counting_doc(result: Dict, path: str) -> None:
    c = result['counting']
    lines = [_header(result, 'Soft plan: counting on displaced clicks', ' --counting')
             + f"{result.get('note', '')} The synthetic crowd set of `gst_vgg19_synthetic.py` "
             f"with clicks displaced by {c['jitter']} object std (`annotation_jitter`), "
             f"{c['iters']} steps per run (the counting benchmark's are 2000), seeds "
             f"{c['seeds']}; localisation AP / AR / F1 of `CountingMetric` against the "
             'displaced clicks.\n',
             '| plan | test MAE (mean) | MAE per seed | MSE | F1 (mean) | F1 per seed | AP | AR |',
             '|---|---|---|---|---|---|---|---|']
    for plan, s in c['summary'].items():
        lines.append(f"| {plan} | {s['MAE']:.3f} | {s['MAE_per_seed']} | {s['MSE']:.3f} | "
                     f"{s['F1']:.3f} | {s['F1_per_seed']} | {s['AP']:.3f} | {s['AR']:.3f} |")
    _append(path, lines)


def write_doc(result: Dict, path: str) -> None:
    q = result['quality']
    lines = [_header(result, 'Soft-assignment kernel', '')
             + f"{result['scenes']} scenes per kind of {result['size']} px with "
             f"{result['objects']} objects (`make_plan_scene`), kernel grid stride "
             f"{result['stride']} px, soft settings {json.dumps(result['soft_settings'])}. "
             'Precision / recall / F1 per object, averaged (module docstring).\n',
             '| scene | soft P / R / F1 | hard P / R / F1 | heuristic P / R / F1 | '
             'oracle P / R / F1 | soft - hard F1 |', '|---|---|---|---|---|---|']
    for kind, row in q.items():
        cells = [' / '.join(f'{row[p][m]:.3f}' for m in ('precision', 'recall', 'f1'))
                 for p in PLANS]
        lines.append(f"| {kind} | {' | '.join(cells)} | "
                     f"{row['soft']['f1'] - row['hard']['f1']:+.3f} |")
    c = result.get('cost')
    if c:
        lines += ['', f"Cost at {c['points']} points ({c['image'][1]}x{c['image'][0]} crowd "
                      f"scene, best of {result['reps']}): hard fit {c['hard_s']:.2f} s, soft "
                      f"(hard + densify + free fit + reduction) {c['soft_s']:.2f} s, ratio "
                      f"**{c['ratio']:.2f}** (target <= 3); {json.dumps(c['soft_stats'])}.",
                  '', '| points | components | reduction s | s per 1000 points |',
                  '|---|---|---|---|']
        for r in c['reduction']:
            lines.append(f"| {r['points']} | {r['components']} | {r['seconds']:.3f} | "
                         f"{1000 * r['seconds'] / r['points']:.4f} |")
    _append(path, lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from gst_mm.splatting.fit_config import resolve_soft
    load = os.getloadavg()[0]
    t0 = time.time()
    result = dict(
        benchmark='soft_kernel',
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        machine=f'{os.cpu_count()}-core {platform.machine()}', threads=args.threads,
        load=round(load, 2), scenes=args.scenes, size=args.size, objects=args.objects,
        stride=args.stride, reps=args.reps, soft_settings=resolve_soft(args.soft))
    if args.note:
        result['note'] = args.note
    if args.counting:
        result['counting'] = counting(args)
    else:
        result['quality'] = quality(args)
        if not args.skip_cost:
            result['cost'] = cost(args)
    result['total_s'] = round(time.time() - t0, 1)
    print(json.dumps(result))
    if not args.no_doc:
        (write_counting_doc if args.counting else write_doc)(
            result, osp.join(ROOT, 'docs', 'benchmarks.md'))
        os.makedirs(osp.join(ROOT, 'docs', 'benchmark_results'), exist_ok=True)
        stamp = result['date'][:16].replace(' ', '_').replace(':', '')
        name = 'soft_counting' if args.counting else 'soft_kernel'
        with open(osp.join(ROOT, 'docs', 'benchmark_results', f'{name}_{stamp}.json'),
                  'w') as f:
            f.write(json.dumps(result) + '\n')


if __name__ == '__main__':
    main()
