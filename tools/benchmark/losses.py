"""Loss-step benchmark: GST's sparse L_BT vs the OT / posterior baselines it replaces.

One run, one density map (64 x 64 cells = a 512 x 512 crop at stride 8) and the same
points for every loss, N = 100, 1000, 4000 (uniform in the crop; covariances with
stds uniform in [4, 16] px and random orientation, clamped to [8, 20] px by the
kernel). Measures:

* per training step, forward + backward time of GSTLoss (kernel prebuilt),
  DMCountLoss, UOTLoss, BayesianLoss and PseudoDensityL2Loss (median of repeats);
* kernel build time (median) and the kernel's bytes vs a dense float32 N x HW matrix.

Uses the registered modules when MMPose is importable (full venv), otherwise the
ground-floor functions of ``gst_mm.transport`` they wrap (same maths), and says which.
Prints one JSON line and appends a dated section to ``docs/benchmarks.md``.

    python tools/benchmark/losses.py [--threads 1] [--points 100 1000 4000] [--no-doc]

Targets (issue 4): GSTLoss step >= 100x faster than DMCountLoss at N = 1000; kernel
memory >= 20x smaller than dense at N = 1000; kernel build for N = 1000 on one core
within 50 ms.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import os.path as osp
import platform
import sys
from typing import Callable, Dict

import torch
from _common import median_time

from gst_mm.transport import (
    bayesian_loss,
    build_kernel,
    dm_count_loss,
    pseudo_density_l2_loss,
    transport_loss,
    uot_loss,
)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

GRID = (64, 64)
STRIDE = 8
LOSSES = ('GSTLoss', 'DMCountLoss', 'UOTLoss', 'BayesianLoss', 'PseudoDensityL2Loss')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='GST loss-step benchmark')
    p.add_argument('--threads', type=int, default=1, help='torch threads')
    p.add_argument('--points', type=int, nargs='+', default=[100, 1000, 4000])
    p.add_argument('--budget', type=float, default=2.0,
                   help='seconds of repeats per measurement (at least 1, at most 25 repeats)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--no-doc', action='store_true', help='do not append to docs/benchmarks.md')
    return p.parse_args(argv)


def make_points(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    extent = torch.tensor([GRID[1] * STRIDE, GRID[0] * STRIDE], dtype=torch.float32)
    means = torch.rand(n, 2, generator=g) * extent
    std = torch.rand(n, 2, generator=g) * 12 + 4
    th = torch.rand(n, generator=g) * math.pi
    c, s = torch.cos(th), torch.sin(th)
    rot = torch.stack([torch.stack([c, -s], 1), torch.stack([s, c], 1)], 1)
    covs = rot @ torch.diag_embed(std ** 2) @ rot.transpose(1, 2)
    return means, covs


def loss_callables(use_modules: bool) -> Dict[str, Callable]:
    """name -> f(density (1, 1, h, w), points list, kernels list) -> scalar."""
    if use_modules:
        import gst_mm.models.losses as L  # noqa: F401  (registers the modules)
        from gst_mm.registry import MODELS
        mods = {name: MODELS.build(dict(type=name)) for name in LOSSES}
        return {name: (lambda m: lambda d, p, k: m(d, p, kernels=k, stride=STRIDE))(mods[name])
                for name in LOSSES}
    return {
        'GSTLoss': lambda d, p, k: transport_loss(d[0, 0], k[0]),
        'DMCountLoss': lambda d, p, k: dm_count_loss(d[0, 0], p[0], STRIDE)[0],
        'UOTLoss': lambda d, p, k: uot_loss(d[0, 0], p[0], STRIDE),
        'BayesianLoss': lambda d, p, k: bayesian_loss(d[0, 0], p[0], STRIDE),
        'PseudoDensityL2Loss': lambda d, p, k: pseudo_density_l2_loss(d[0, 0], p[0], STRIDE),
    }


def run(args) -> Dict:
    torch.set_num_threads(args.threads)
    try:
        import mmpose  # noqa: F401
        use_modules = True
    except ImportError:
        use_modules = False
    losses = loss_callables(use_modules)
    g = torch.Generator().manual_seed(args.seed + 1)
    base = torch.rand(1, 1, *GRID, generator=g)
    per_n = {}
    for n in args.points:
        means, covs = make_points(n, args.seed)
        density = (base * (n / base.sum())).detach()  # same map, total mass = N
        kernel = build_kernel(means, covs, GRID, STRIDE)
        build_s = median_time(lambda: build_kernel(means, covs, GRID, STRIDE), args.budget)
        dense_bytes = n * GRID[0] * GRID[1] * 4
        row = dict(build_ms=build_s * 1e3, kernel_bytes=kernel.nbytes(), nnz=kernel.nnz,
                   dense_bytes=dense_bytes, memory_ratio=dense_bytes / kernel.nbytes(), step_ms={})
        for name, fn in losses.items():
            def step():
                d = density.clone().requires_grad_(True)
                fn(d, [means], [kernel]).backward()
            row['step_ms'][name] = median_time(step, args.budget) * 1e3
            print(f'N={n} {name}: {row["step_ms"][name]:.3f} ms/step', file=sys.stderr)
        gst = row['step_ms']['GSTLoss']
        row['speedup_vs_gst'] = {k: v / gst for k, v in row['step_ms'].items() if k != 'GSTLoss'}
        per_n[str(n)] = row
    ref = per_n.get('1000')
    checks = None
    if ref is not None:
        checks = dict(
            gst_vs_dmcount_speedup=dict(value=ref['speedup_vs_gst']['DMCountLoss'],
                                        target='>= 100'),
            memory_ratio=dict(value=ref['memory_ratio'], target='>= 20'),
            build_ms=dict(value=ref['build_ms'], target='<= 50'))
        checks['gst_vs_dmcount_speedup']['met'] = checks['gst_vs_dmcount_speedup']['value'] >= 100
        checks['memory_ratio']['met'] = checks['memory_ratio']['value'] >= 20
        checks['build_ms']['met'] = checks['build_ms']['value'] <= 50
    now = datetime.datetime.now(datetime.timezone.utc)
    return dict(benchmark='losses', date=now.strftime('%Y-%m-%d %H:%M UTC'),
                machine=f'{os.cpu_count()}-core {platform.machine()}', threads=args.threads,
                load_average=[round(x, 2) for x in os.getloadavg()],
                torch=torch.__version__, backend='registered modules' if use_modules else
                'gst_mm.transport functions (mmpose not importable)',
                grid=list(GRID), stride=STRIDE, results=per_n, checks=checks)


def _ratio(x: float) -> str:
    return f'{x:.0f}x' if x >= 10 else f'{x:.2f}x'


def write_doc(result: Dict, path: str) -> None:
    lines = [
        '',
        f'## Loss step: GST vs OT baselines ({result["date"]})',
        '',
        f'`tools/benchmark/losses.py`: {result["machine"]}, torch {result["torch"]}, '
        f'threads = {result["threads"]}, load average at the end '
        f'{result["load_average"]} (machine shared); {result["backend"]}. One density map of '
        f'{result["grid"][0]}x{result["grid"][1]} cells (512x512 crop, stride '
        f'{result["stride"]}), points uniform in the crop, stds U[4, 16] px with random '
        'orientation (clamped to [8, 20] px in the kernel). Step = forward + backward of '
        'the loss alone, median; GST kernel prebuilt (its build time is reported '
        'separately); dense = float32 N x HW.',
        '',
        '| N | ' + ' | '.join(f'{n} ms/step' for n in LOSSES) +
        ' | kernel build ms | kernel KB | nnz | dense KB | memory ratio |',
        '|' + '---|' * (len(LOSSES) + 6),
    ]
    for n, r in result['results'].items():
        steps = ' | '.join(f'{r["step_ms"][k]:.3f}' for k in LOSSES)
        lines.append(f'| {n} | {steps} | {r["build_ms"]:.1f} | {r["kernel_bytes"] / 1024:.0f} | '
                     f'{r["nnz"]} | {r["dense_bytes"] / 1024:.0f} | {r["memory_ratio"]:.1f} |')
    lines += ['', '| N | ' + ' | '.join(f'{k} / GSTLoss' for k in LOSSES[1:]) + ' |',
              '|' + '---|' * len(LOSSES)]
    for n, r in result['results'].items():
        lines.append(f'| {n} | ' + ' | '.join(_ratio(r['speedup_vs_gst'][k]) for k in LOSSES[1:])
                     + ' |')
    if result['checks']:
        lines += ['', '| check (N = 1000) | value | target | met |', '|---|---|---|---|']
        for k, v in result['checks'].items():
            met = 'yes' if v['met'] else 'no'
            lines.append(f'| {k} | {v["value"]:.1f} | {v["target"]} | {met} |')
    with open(path, 'a') as f:
        f.write('\n'.join(lines) + '\n')


def main(argv=None) -> None:
    args = parse_args(argv)
    result = run(args)
    print(json.dumps(result))
    if not args.no_doc:
        write_doc(result, osp.join(ROOT, 'docs', 'benchmarks.md'))


if __name__ == '__main__':
    main()
