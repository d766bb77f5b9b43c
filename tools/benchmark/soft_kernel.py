"""Soft-assignment kernel benchmark (issue 14): plan quality of the soft, hard and
heuristic plans on scenes with known object masks, and the fit + reduction cost.

Plan quality per object (cells of a ``stride`` px grid, labelled by the object mask at
the cell centre; :func:`gst_mm.splatting.synthetic.make_plan_scene`):

* recall = share of the object's cells whose kernel row sends most mass to the
  object's annotation (argmax over the annotations and the background);
* precision = share of the annotation's kernel mass lying on its object's cells;
* F1 of the two, averaged over objects, then over scenes.

Cost: the default (hard) fit vs the soft fit (hard fit + densify + free fit +
reduction) on one 1000-point crowd scene, best of ``--reps``, plus the reduction alone
vs N (its near-linear growth).

Usage::

    python tools/benchmark/soft_kernel.py [--scenes 6] [--threads 1] [--no-doc]
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
sys.path.insert(0, ROOT)

KINDS = ('centred', 'displaced', 'top', 'parts', 'overlap')
PLANS = ('soft', 'hard', 'heuristic')


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
    return dict(
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


def write_doc(result: Dict, path: str) -> None:
    q = result['quality']
    lines = [f"\n## Soft-assignment kernel (issue 14) — {result['date']}\n",
             f"`tools/benchmark/soft_kernel.py`: {result['machine']}, torch threads = "
             f"{result['threads']}, load before start {result['load']}; "
             f"{result['scenes']} scenes per kind of {result['size']} px with "
             f"{result['objects']} objects (`make_plan_scene`), kernel grid stride "
             f"{result['stride']} px, soft settings {json.dumps(result['soft_settings'])}. "
             'Precision / recall / F1 per object, averaged (module docstring).\n',
             '| scene | soft P / R / F1 | hard P / R / F1 | heuristic P / R / F1 | '
             'soft - hard F1 |', '|---|---|---|---|---|']
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
    with open(path, 'a') as f:
        f.write('\n'.join(lines) + '\n')


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from gst_mm.splatting.free_fit import resolve_soft
    load = os.getloadavg()[0]
    t0 = time.time()
    result = dict(
        benchmark='soft_kernel',
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        machine=f'{os.cpu_count()}-core {platform.machine()}', threads=args.threads,
        load=round(load, 2), scenes=args.scenes, size=args.size, objects=args.objects,
        stride=args.stride, reps=args.reps, soft_settings=resolve_soft(args.soft))
    result['quality'] = quality(args)
    if not args.skip_cost:
        result['cost'] = cost(args)
    result['total_s'] = round(time.time() - t0, 1)
    print(json.dumps(result))
    if not args.no_doc:
        write_doc(result, osp.join(ROOT, 'docs', 'benchmarks.md'))
        os.makedirs(osp.join(ROOT, 'docs', 'benchmark_results'), exist_ok=True)
        stamp = result['date'][:16].replace(' ', '_').replace(':', '')
        with open(osp.join(ROOT, 'docs', 'benchmark_results', f'soft_kernel_{stamp}.json'),
                  'w') as f:
            f.write(json.dumps(result) + '\n')


if __name__ == '__main__':
    main()
