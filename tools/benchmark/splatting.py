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
    is the same as one dense pass);
(c) the compiled CPU kernel (issue 13, section "Renderer (compiled CPU kernel)"):
    ns per pixel-Gaussian pair of ``render`` forward+backward on the fit's call
    (sum compositing, background image, reused pairs, accumulated alpha), the pure-torch
    path (``GST_MM_NO_EXT=1``) vs the compiled one in the same run, at 1000 Gaussians
    on 512x512 and 4535 on 4110x1744, windows of margin 1 (exactly the cut-off) and
    1.15 (the fit's); and the whole default fit of the paper's sizes (1920x960 / 953
    points, 4110x1744 / 4535) on both paths, each in a fresh subprocess (seconds,
    iterations, peak RSS (VmHWM), std error, thread count, load average).

Prints one JSON line per section and appends dated sections to ``docs/benchmarks.md``.

    python tools/benchmark/splatting.py [--threads 2] [--ref-iterations 4000] [--quick]
    python tools/benchmark/splatting.py --renderer        # only (c)
    python tools/benchmark/splatting.py --no-renderer     # only (a), (b)
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import os.path as osp
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from _common import best_time, header, peak_rss_mb, write_lines

from gst_mm.splatting import Gaussians2D, fit_gaussians, render
from gst_mm.splatting.render import build_pairs
from gst_mm.splatting.synthetic import make_scene, recovery_errors

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


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

    with torch.no_grad():
        g = gaussians()
        n_pairs = len(build_pairs(g.means, g.covariances, size, size))
    out = {'gaussians': n, 'size': size, 'pairs': n_pairs,
           'torch_sum_s': round(best_time(lambda: sparse('sum'), reps, warmup=False), 4),
           'torch_alpha_s': round(best_time(lambda: sparse('alpha'), reps, warmup=False), 4),
           'dense_s': round(best_time(dense, 1, warmup=False), 3)}
    out['speedup_sum'] = round(out['dense_s'] / out['torch_sum_s'], 1)
    out['speedup_alpha'] = round(out['dense_s'] / out['torch_alpha_s'], 1)
    out['ns_per_pair_sum'] = round(out['torch_sum_s'] / n_pairs * 1e9, 1)
    return out


def write_markdown(result: dict, path: str) -> None:
    """Append a dated section with the results to ``path``."""
    lines = [f"\n## Splatting (issue 3) — {result['date']}\n",
             header('splatting.py', result['args'], result['threads'],
                    f"load average at the end {result['load_average']} (machine shared)")
             + '\n',
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


# ---------------------------------------------------------------------- (c) compiled kernel
RENDER_SIZES = ((1000, 512, 512), (4535, 1744, 4110))
PAPER_FITS = (('1920x960/953', (960, 1920, 953)), ('4110x1744/4535', (1744, 4110, 4535)))


def _set_path(path: str) -> None:
    """Select the renderer path: ``'torch'`` (GST_MM_NO_EXT=1) or ``'compiled'``."""
    os.environ['GST_MM_NO_EXT'] = '1' if path == 'torch' else '0'


def bench_renderer_paths(n: int, height: int, width: int, margin: float, reps: int,
                         seed: int = 0) -> dict:
    """ns per listed pair of ``render`` forward+backward as the fit calls it, pure
    torch vs compiled kernel: ``n`` Gaussians (std log-uniform 2-8 px), background
    image, pairs built once with ``margin``, upstream gradients for image and alpha."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 2, generator=gen) * torch.tensor([float(width), float(height)])
    log_s = torch.empty(n, 2).uniform_(math.log(2), math.log(8), generator=gen)
    angles = torch.rand(n, generator=gen) * math.pi
    colors = torch.rand(n, 3, generator=gen)
    params = [log_s.requires_grad_(), angles.requires_grad_(), colors.requires_grad_()]
    bg = torch.rand(height, width, 3, generator=gen)
    g_out = torch.randn(height, width, 3, generator=gen)
    g_acc = torch.randn(height, width, generator=gen)
    with torch.no_grad():
        g = Gaussians2D.from_scales_angles(means, params[0].exp(), params[1], params[2])
        pairs = build_pairs(g.means, g.covariances, height, width, margin=margin)

    def step():
        g = Gaussians2D.from_scales_angles(means, params[0].exp(), params[1], params[2])
        out, acc = render(g, height, width, 'torch', compositing='sum', background=bg,
                          pairs=pairs, return_alpha=True)
        torch.autograd.backward([out, acc], [g_out, g_acc])

    out = {'gaussians': n, 'size': f'{width}x{height}', 'margin': margin,
           'pairs': len(pairs)}
    for path in ('torch', 'compiled'):
        _set_path(path)
        sec = best_time(step, reps)
        out[f'{path}_ms'] = round(1000 * sec, 2)
        out[f'{path}_ns_per_pair'] = round(sec / max(len(pairs), 1) * 1e9, 2)
    os.environ.pop('GST_MM_NO_EXT', None)
    out['speedup'] = round(out['torch_ms'] / out['compiled_ms'], 1)
    return out


def _cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def fit_worker(scene_file: str, threads: int) -> dict:
    """One default fit of the scene saved in ``scene_file`` (run in a fresh process by
    :func:`fit_case`, so the peak RSS is that of loading the scene and fitting it)."""
    from gst_mm.splatting.render import compiled_kernel_status
    torch.set_num_threads(threads)
    scene = np.load(scene_file)
    image, points = scene['image'], scene['points']
    rss_before = peak_rss_mb()
    t = time.perf_counter()
    g, info = fit_gaussians(image, points, return_info=True, seed=0)
    sec = time.perf_counter() - t
    err = recovery_errors(scene['scales'], scene['angles'], g.scales.numpy(), g.angles.numpy())
    return {'seconds': round(sec, 2), 'iterations': info.iterations,
            'ms_per_iter': round(1000 * sec / max(info.iterations, 1), 1),
            'peak_rss_mb': round(peak_rss_mb()), 'rss_before_fit_mb': round(rss_before),
            'std_rel_err': round(err['std_rel_err'], 4), 'threads': torch.get_num_threads(),
            'renderer': 'compiled' if compiled_kernel_status()[0] else 'torch'}


def fit_case(scene_file: str, path: str, threads: int) -> dict:
    """:func:`fit_worker` in a fresh subprocess on renderer ``path`` (peak memory of
    that fit alone), with the load average before and after."""
    env = dict(os.environ, GST_MM_NO_EXT='1' if path == 'torch' else '0')
    load0 = os.getloadavg()[0]
    cmd = [sys.executable, osp.abspath(__file__), '--fit-worker', scene_file,
           '--threads', str(threads)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out['load_before_after'] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    return out


def save_scene(height: int, width: int, n: int, directory: str) -> str:
    """``make_scene(height, width, n, seed=0)`` saved for the fit workers."""
    scene = make_scene(height, width, n, seed=0)
    path = osp.join(directory, f'scene_{width}x{height}_{n}.npz')
    np.savez(path, image=scene.image, points=scene.points, scales=scene.scales,
             angles=scene.angles)
    return path


def bench_compiled(threads: int, reps: int = 5, fits=PAPER_FITS, quick: bool = False,
                   fit_repeats: int = 1) -> dict:
    """Section (c): renderer paths and paper-size fits (best of ``fit_repeats``
    interleaved runs per path), one run."""
    from gst_mm.splatting import _compiled
    from gst_mm.splatting.render import compiled_kernel_status
    ok, reason = compiled_kernel_status()
    if not ok:
        raise SystemExit(f'the compiled renderer is not available: {reason}')
    module = _compiled.load()[0]
    load0 = [round(v, 2) for v in os.getloadavg()]
    sizes = ((200, 192, 256),) if quick else RENDER_SIZES
    renderer = [bench_renderer_paths(n, h, w, margin, reps)
                for (n, h, w) in sizes for margin in (1.0, 1.15)]
    for r in renderer:
        print('renderer', json.dumps(r), file=sys.stderr, flush=True)
    fit = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (h, w, n) in (((('192x256/20', (192, 256, 20)),) if quick else fits)):
            scene_file = save_scene(h, w, n, tmp)
            runs = {'torch': [], 'compiled': []}
            for _ in range(max(1, fit_repeats)):  # interleaved: both paths share the noise
                for path in runs:
                    runs[path].append(fit_case(scene_file, path, threads))
            fit[name] = {}
            for path, rs in runs.items():
                best = dict(min(rs, key=lambda r: r['seconds']))
                best['all_seconds'] = [r['seconds'] for r in rs]
                best['peak_rss_mb'] = max(r['peak_rss_mb'] for r in rs)
                fit[name][path] = best
            fit[name]['speedup'] = round(fit[name]['torch']['seconds']
                                         / fit[name]['compiled']['seconds'], 2)
            print(name, json.dumps(fit[name]), file=sys.stderr, flush=True)
    targets = {}
    main_r = [r for r in renderer if r['margin'] == 1.0]
    targets['renderer >= 5x faster per pair than the torch path (margin 1, first size)'] = \
        main_r[0]['speedup'] >= 5
    if '1920x960/953' in fit:
        targets['1920x960/953 default fit <= 2.5 s (compiled)'] = \
            fit['1920x960/953']['compiled']['seconds'] <= 2.5
    if '4110x1744/4535' in fit:
        targets['4110x1744/4535 default fit <= 13 s (compiled)'] = \
            fit['4110x1744/4535']['compiled']['seconds'] <= 13
    return {'benchmark': 'splatting-compiled',
            'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
            'machine': f'{platform.machine()}, {os.cpu_count()} cores ({_cpu_name()})',
            'torch': torch.__version__, 'threads': torch.get_num_threads(),
            'kernel_threads': int(module.openmp_threads()), 'kernel': reason,
            'load_average_start': load0,
            'load_average_end': [round(v, 2) for v in os.getloadavg()],
            'renderer': renderer, 'fit': fit, 'targets': targets}


def write_compiled_markdown(result: dict, path: str) -> None:
    """Append the "Renderer (compiled CPU kernel)" section."""
    lines = [f"\n## Renderer (compiled CPU kernel) — {result['date']}\n",
             f"Machine: {result['machine']}, torch {result['torch']}, "
             f"{result['threads']} torch thread(s), kernel {result['kernel_threads']} "
             f"OpenMP thread(s); load average (1, 5, 15 min) at the start "
             f"{result['load_average_start']}, at the end {result['load_average_end']} "
             f"(machine shared). Command: `python tools/benchmark/splatting.py"
             f"{result['args']}`. Both paths measured in this run "
             f"(pure torch: `GST_MM_NO_EXT=1`).\n",
             '`render` forward+backward as the fit calls it (sum compositing, background '
             'image, reused pairs, image and alpha gradients), best of the repetitions; '
             'ns per listed pixel-Gaussian pair. Margin 1: windows exactly the cut-off '
             '(like-for-like); 1.15: the fit\'s windows (the kernel skips the columns '
             'that cannot reach 1/255).\n',
             '| Gaussians | image | window margin | pairs | torch ms | torch ns/pair '
             '| compiled ms | compiled ns/pair | speed-up |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in result['renderer']:
        lines.append(f"| {r['gaussians']} | {r['size']} | {r['margin']} | {r['pairs']} | "
                     f"{r['torch_ms']} | {r['torch_ns_per_pair']} | {r['compiled_ms']} | "
                     f"{r['compiled_ns_per_pair']} | {r['speedup']}x |")
    lines += ['', 'Whole default fit (`fit_gaussians(image, points)`, synthetic scene '
              '`make_scene(h, w, n, seed=0)` made once and loaded), each in a fresh '
              'process; peak RSS = that process\'s `VmHWM`:', '',
              '| scene | renderer | seconds (best [all]) | iterations | ms/iter | peak RSS (MB) '
              '| RSS with the scene loaded (MB) | std rel. err | threads '
              '| load before/after |',
              '|---|---|---|---|---|---|---|---|---|---|']
    for name, rows in result['fit'].items():
        for which in ('torch', 'compiled'):
            r = rows[which]
            lines.append(f"| {name} | {which} ({r['renderer']}) | {r['seconds']} "
                         f"{r['all_seconds'] if len(r['all_seconds']) > 1 else ''} | "
                         f"{r['iterations']} | {r['ms_per_iter']} | {r['peak_rss_mb']} | "
                         f"{r['rss_before_fit_mb']} | {100 * r['std_rel_err']:.1f} % | "
                         f"{r['threads']} | {r['load_before_after']} |")
        lines.append(f"| {name} | speed-up | {rows['speedup']}x | | | | | | | |")
    write_lines(path, lines, result['targets'])


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
    p.add_argument('--renderer', action='store_true',
                   help='only (c): the compiled CPU kernel vs the torch path')
    p.add_argument('--no-renderer', action='store_true', help='skip (c)')
    p.add_argument('--renderer-reps', type=int, default=5)
    p.add_argument('--fit-repeats', type=int, default=1,
                   help='fits per path in (c), interleaved; the best is reported')
    p.add_argument('--renderer-fits', default=','.join(name for name, _ in PAPER_FITS),
                   help='comma-separated subset of the paper-size fits of (c)')
    p.add_argument('--fit-worker', default=None, help=argparse.SUPPRESS)  # internal
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cli = ''.join(f' {a}' for a in (argv if argv is not None else sys.argv[1:]))
    if args.fit_worker:
        print(json.dumps(fit_worker(args.fit_worker, args.threads)))
        return 0
    if not args.no_renderer:
        fits = [f for f in PAPER_FITS if f[0] in args.renderer_fits.split(',')]
        comp = bench_compiled(args.threads, args.renderer_reps, fits, quick=args.quick,
                              fit_repeats=args.fit_repeats)
        comp['args'] = cli
        print(json.dumps(comp))
        write_compiled_markdown(comp, args.markdown)
        if args.renderer:
            return 0

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
        'args': cli,
        'load_average': [round(v, 2) for v in os.getloadavg()],
        'fit': fit, 'render': rend, 'targets': targets,
    }
    print(json.dumps(result))
    write_markdown(result, args.markdown)
    return 0


if __name__ == '__main__':
    sys.exit(main())
