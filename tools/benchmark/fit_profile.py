"""Where one default fit spends its time (issue 23): per-phase wall seconds.

    python tools/benchmark/fit_profile.py [--threads 2] [--sizes 1920x960/953 ...]
        [--torch] [--out docs/benchmark_results/fit_profile.json] [--markdown]

Each phase is timed by wrapping the function that does it for the length of one fit
(the fit's code is not changed): scale selection (``initial_stds``: both readings and
the masked background between them), the median background (``background='median'``
only since fit version 3), level building, rendering forward (``Splatter.__call__``), the objective
forward (L1 + deformity), ``loss.backward()`` split into the renderer's backward (the
compiled kernel's or the torch path's autograd Function) and the rest (the L1 and
deformity graph, covariance and sigmoid chain), Adam, the growth bounds, the background
re-estimates and the post-processing. ``other`` is the fit's wall time minus the phases
(Python loop, early-stop checks, loss read-back). A scene is ``make_scene(H, W, N,
seed=0)`` (the splatting benchmark's). The ``ns/px/iter`` column divides each phase's
time by the pixels rendered per step summed over the steps (coarse steps count their
coarse pixels).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import os.path as osp
import sys
import time
from collections import defaultdict
from typing import Callable, Dict, Iterator, List, Tuple

import torch
from _common import header, load_line, peak_rss_mb, write_lines

from gst_mm.splatting import fit as fit_mod
from gst_mm.splatting import fit_steps
from gst_mm.splatting.backends import torch_backend
from gst_mm.splatting.synthetic import make_scene, recovery_errors

PHASES = ('scale selection', 'median background', 'levels', 'render forward',
          'objective forward', 'render backward', 'loss backward (rest)', 'Adam',
          'growth bounds', 'background re-estimate', 'post-process')


class PhaseTimer:
    """Accumulated wall seconds per phase name."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = defaultdict(float)
        self.pixels = 0  # pixels rendered by the fit's training steps

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t
        return timed


@contextlib.contextmanager
def patched(timer: PhaseTimer) -> Iterator[None]:
    """Wrap the fit's phase functions with ``timer`` for the duration of the block."""
    saved: List[Tuple[object, str, object]] = []

    def patch(owner, attr: str, name: str, wrapper=None) -> None:
        orig = getattr(owner, attr)
        saved.append((owner, attr, orig))
        setattr(owner, attr, wrapper(orig) if wrapper else timer.wrap(name, orig))

    def objective_counting(orig):
        timed = timer.wrap('objective forward', orig)

        def fn(rendered, *args, **kwargs):
            timer.pixels += rendered.shape[0] * rendered.shape[1]
            return timed(rendered, *args, **kwargs)
        return fn

    def backward_split(orig):
        def fn(self, *args, **kwargs):
            before = timer.seconds['render backward']
            t = time.perf_counter()
            try:
                return orig(self, *args, **kwargs)
            finally:
                rest = time.perf_counter() - t - (timer.seconds['render backward'] - before)
                timer.seconds['loss backward (rest)'] += rest
        return fn

    patch(fit_mod, 'initial_stds', 'scale selection')
    patch(fit_mod, 'median_background', 'median background')
    patch(fit_mod, 'make_level', 'levels')
    patch(fit_mod, 'objective', '', objective_counting)
    patch(fit_mod, 'reestimate_background', 'background re-estimate')
    patch(fit_mod, 'params_to_gaussians', 'post-process')
    patch(fit_steps.Splatter, '__call__', 'render forward')
    patch(fit_steps.GaussianParams, 'clamp_', 'growth bounds')
    patch(torch.optim.Adam, 'step', 'Adam')
    patch(torch.Tensor, 'backward', '', backward_split)
    for fn_cls in (torch_backend._SumSplatCompiled, torch_backend._SumSplat):
        patch(fn_cls, 'backward', '', lambda orig: staticmethod(
            timer.wrap('render backward', orig)))
    try:
        yield
    finally:
        for owner, attr, orig in reversed(saved):
            setattr(owner, attr, orig)


def profile_fit(height: int, width: int, n: int) -> dict:
    """One default fit of ``make_scene(height, width, n, seed=0)``, timed by phase."""
    scene = make_scene(height, width, n, seed=0)
    timer = PhaseTimer()
    with patched(timer):
        t = time.perf_counter()
        g, info = fit_mod.fit_gaussians(scene.image, scene.points, return_info=True, seed=0)
        total = time.perf_counter() - t
    err = recovery_errors(scene.scales, scene.angles, g.scales.numpy(), g.angles.numpy())
    # 'render forward' includes the no-grad render each background re-estimate starts
    # with (Splatter too); 'background re-estimate' is the re-estimate itself
    phases = {p: round(timer.seconds.get(p, 0.0), 3) for p in PHASES}
    phases['other'] = round(total - sum(timer.seconds.get(p, 0.0) for p in PHASES), 3)
    ns_px = {p: round(1e9 * s / max(timer.pixels, 1), 2) for p, s in phases.items()}
    return {'scene': f'{width}x{height}/{n}', 'seconds': round(total, 2),
            'iterations': info.iterations, 'pixels_rendered': timer.pixels,
            'std_rel_err': round(err['std_rel_err'], 4), 'phases_s': phases,
            'ns_per_px_iter': ns_px,
            'coarse_factor': info.settings.get('coarse_factor'),
            # the process's peak so far: an earlier, larger scene's when there was one
            'process_peak_rss_mb': round(peak_rss_mb()),
            'renderer': info.settings.get('backend')}


def write_markdown(results: List[dict], path: str, threads: int, args: str) -> None:
    when = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    lines = ['', f'### Fit profile (issue 23), {when}',
             '', header('fit_profile.py', args, threads, load_line()),
             '', '| phase | ' + ' | '.join(r['scene'] + ' s (ns/px/iter)' for r in results) + ' |',
        '|---|' + '---|' * len(results)]
    for p in (*PHASES, 'other'):
        lines.append(f'| {p} | ' + ' | '.join(
            f"{r['phases_s'][p]:.2f} ({r['ns_per_px_iter'][p]:.1f})" for r in results) + ' |')
    lines.append('| **total** | ' + ' | '.join(
        f"**{r['seconds']:.2f}** ({r['iterations']} steps, std err "
        f"{100 * r['std_rel_err']:.2f} %, peak RSS {r['process_peak_rss_mb']:.0f} MB)"
        for r in results) + ' |')
    write_lines(path, lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--sizes', nargs='+', default=['1920x960/953', '4110x1744/4535'],
                   help='WxH/N scenes')
    p.add_argument('--torch', action='store_true', help='the pure-torch renderer')
    p.add_argument('--out', default=None, help='JSON result file')
    p.add_argument('--markdown', default=None, help='append a section to this file')
    args = p.parse_args(argv)
    if args.torch:
        os.environ['GST_MM_NO_EXT'] = '1'
    torch.set_num_threads(args.threads)
    scenes = []
    for size in args.sizes:
        try:
            wh, n = size.split('/')
            w, h = (int(v) for v in wh.split('x'))
            scenes.append((h, w, int(n)))
        except ValueError:
            print(f'--sizes: expected WxH/N, got {size!r}', file=sys.stderr)
            return 2
    results = []
    for h, w, n in scenes:
        r = profile_fit(h, w, n)
        print(json.dumps(r), flush=True)
        results.append(r)
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        tmp = args.out + '.tmp'
        with open(tmp, 'w') as f:
            json.dump({'threads': args.threads, 'results': results}, f, indent=1)
        os.replace(tmp, args.out)
    if args.markdown:
        write_markdown(results, args.markdown, args.threads,
                       ' ' + ' '.join(argv if argv is not None else sys.argv[1:]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
