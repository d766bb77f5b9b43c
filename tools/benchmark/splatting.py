"""Benchmark of the Gaussian fit and the truncated-window renderer (issue 3).

Measures in one run, on synthetic scenes with known covariances
(:mod:`gst_mm.splatting.synthetic`: std 2-16 px, aspect <= 1.5, textured background):

(a) seconds per fit and the std-recovery error (median relative error of both stds)
    / orientation error (median, objects with aspect >= 1.3) for
    * ``default``: the default settings (log-std, estimated background, early stop);
    * ``default_4000``: the same model with the reference schedule (4000 Adam
      iterations at full resolution, no early stop);
    * ``reference``: the reference behaviour (``mode='reference'``: linear stds, image
      pasted only into the background mask, 4000 iterations);
    on a 1024x768 image with 1000 points and a 512x512 image with 200 points;
(b) torch renderer forward+backward time vs the dense ``O(N H W)`` reference at 1000
    Gaussians on 512x512 (the dense pass is chunked by rows to fit in memory; its cost
    is the same as one dense pass).

Prints one JSON line and appends a dated section to ``docs/benchmarks.md``.

    python tools/benchmark/splatting.py [--threads 2] [--ref-iterations 4000] [--quick]
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
import time

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from gst_mm.splatting import Gaussians2D, fit_gaussians, render  # noqa: E402
from gst_mm.splatting.render import build_pairs  # noqa: E402
from gst_mm.splatting.synthetic import make_scene, recovery_errors  # noqa: E402


def bench_fit(scene, **kwargs) -> dict:
    """Fit ``scene`` with ``kwargs``; seconds, iterations and recovery errors."""
    t = time.perf_counter()
    g, info = fit_gaussians(scene.image, scene.points, return_info=True, seed=0, **kwargs)
    sec = time.perf_counter() - t
    err = recovery_errors(scene.scales, scene.angles, g.scales.numpy(), g.angles.numpy())
    return {'seconds': round(sec, 2), 'iterations': info.iterations,
            'ms_per_iter': round(1000 * sec / max(info.iterations, 1), 1),
            'std_rel_err': round(err['std_rel_err'], 4),
            'angle_err_deg': round(err['angle_err_deg'], 2)}


def bench_render(n: int = 1000, size: int = 512, reps: int = 3, seed: int = 0) -> dict:
    """Forward+backward seconds of the torch renderer (sum and alpha compositing) and
    of the dense reference, ``n`` Gaussians (std log-uniform 2-8 px) on size x size."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 2, generator=gen) * size
    log_s = torch.empty(n, 2).uniform_(math.log(2), math.log(8), generator=gen)
    angles = torch.rand(n, generator=gen) * math.pi
    colors = torch.rand(n, 3, generator=gen)
    params = [log_s.requires_grad_(), angles.requires_grad_(), colors.requires_grad_()]

    def gaussians():
        return Gaussians2D.from_scales_angles(means, params[0].exp(), params[1], params[2])

    def sparse(compositing):
        g = gaussians()
        render(g, size, size, 'torch', compositing=compositing).sum().backward()

    def dense(rows=16):
        for r0 in range(0, size, rows):
            g = gaussians()
            render(g, size, size, 'dense', compositing='sum',
                   rows=(r0, min(size, r0 + rows))).sum().backward()

    def timed(fn, k):
        best = math.inf
        for _ in range(k):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    with torch.no_grad():
        g = gaussians()
        n_pairs = len(build_pairs(g.means, g.covariances, size, size))
    out = {'gaussians': n, 'size': size, 'pairs': n_pairs,
           'torch_sum_s': round(timed(lambda: sparse('sum'), reps), 4),
           'torch_alpha_s': round(timed(lambda: sparse('alpha'), reps), 4),
           'dense_s': round(timed(dense, 1), 3)}
    out['speedup_sum'] = round(out['dense_s'] / out['torch_sum_s'], 1)
    out['speedup_alpha'] = round(out['dense_s'] / out['torch_alpha_s'], 1)
    out['ns_per_pair_sum'] = round(out['torch_sum_s'] / n_pairs * 1e9, 1)
    return out


def write_markdown(result: dict, path: str) -> None:
    """Append a dated section with the results to ``path``."""
    lines = [f"\n## Splatting (issue 3) — {result['date']}\n",
             f"Machine: {result['machine']}, torch {result['torch']}, "
             f"{result['threads']} torch thread(s), load average at the end "
             f"{result['load_average']} (machine shared). Command: "
             f"`python tools/benchmark/splatting.py{result['args']}`.\n",
             '| scene | setting | iterations | seconds | ms/iter | std rel. err '
             '| angle err (deg) |',
             '|---|---|---|---|---|---|---|']
    for scene, rows in result['fit'].items():
        for name, r in rows.items():
            lines.append(f"| {scene} | {name} | {r['iterations']} | {r['seconds']} | "
                         f"{r['ms_per_iter']} | {100 * r['std_rel_err']:.1f} % | "
                         f"{r['angle_err_deg']} |")
    r = result['render']
    lines += ['', f"Renderer, {r['gaussians']} Gaussians on {r['size']}x{r['size']} "
              f"({r['pairs']} pixel-Gaussian pairs), forward+backward: torch sum "
              f"{r['torch_sum_s']} s ({r['ns_per_pair_sum']} ns/pair), torch alpha "
              f"{r['torch_alpha_s']} s, dense {r['dense_s']} s -> "
              f"{r['speedup_sum']}x / {r['speedup_alpha']}x faster than dense.", '']
    for key, val in result['targets'].items():
        lines.append(f'- {key}: {val}')
    with open(path, 'a') as f:
        f.write('\n'.join(lines) + '\n')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--ref-iterations', type=int, default=4000)
    p.add_argument('--quick', action='store_true', help='a small scene only (smoke test)')
    p.add_argument('--no-reference-large', action='store_true',
                   help='skip the 4000-iteration runs on the 1024x768 scene')
    p.add_argument('--scenes', default='512x512/200,1024x768/1000',
                   help='comma-separated subset of the scenes to run')
    p.add_argument('--markdown', default=osp.join(ROOT, 'docs', 'benchmarks.md'))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    scenes = [('512x512/200', (512, 512, 200)), ('1024x768/1000', (768, 1024, 1000))]
    scenes = [s for s in scenes if s[0] in args.scenes.split(',')]
    if args.quick:
        scenes = [('192x192/20', (192, 192, 20))]
    fit = {}
    for name, (h, w, n) in scenes:
        scene = make_scene(h, w, n, seed=0)
        rows = {'default': bench_fit(scene)}
        if not (args.no_reference_large and n >= 1000):
            rows[f'default_{args.ref_iterations}'] = bench_fit(
                scene, iterations=args.ref_iterations, early_stop=False, downsample=1, coarse=1)
            rows['reference'] = bench_fit(scene, mode='reference',
                                          iterations=args.ref_iterations)
        fit[name] = rows
        print(name, json.dumps(rows), file=sys.stderr, flush=True)
    rend = bench_render(reps=2 if args.quick else 3)

    targets = {}
    for name, rows in fit.items():
        d = rows['default']
        for ref in (f'default_{args.ref_iterations}', 'reference'):
            if ref in rows:
                r = rows[ref]
                targets[f'{name}: speed-up vs {ref}'] = round(r['seconds'] / d['seconds'], 1)
                if r['iterations'] < 4000:  # shortened run: linear extrapolation, labelled
                    targets[f'{name}: speed-up vs {ref} extrapolated to 4000 iterations'] = \
                        round(r['ms_per_iter'] * 4 / d['seconds'], 1)
                targets[f'{name}: std err default - {ref} (points of %)'] = round(
                    100 * (d['std_rel_err'] - r['std_rel_err']), 2)
    if '1024x768/1000' in fit:
        big = fit['1024x768/1000']['default']['seconds']
        targets['1024x768/1000 default fit <= 20 s'] = big <= 20
    targets['renderer >= 100x faster than dense (sum)'] = rend['speedup_sum'] >= 100

    result = {
        'benchmark': 'splatting', 'date': datetime.datetime.now(datetime.timezone.utc)
        .strftime('%Y-%m-%d %H:%M UTC'),
        'machine': f'{platform.machine()}, {torch.get_num_threads()} threads '
                   f'of {os.cpu_count()} cores',
        'torch': torch.__version__, 'threads': args.threads,
        'args': ''.join(f' {a}' for a in (argv if argv is not None else sys.argv[1:])),
        'load_average': [round(v, 2) for v in os.getloadavg()],
        'fit': fit, 'render': rend, 'targets': targets,
    }
    print(json.dumps(result))
    write_markdown(result, args.markdown)
    return 0


if __name__ == '__main__':
    sys.exit(main())
