"""The pose benchmark's summaries (tools/benchmark/pose.py): paired statistics over
seeds, the decoder choice, the docs/benchmarks.md sections of a learning run and of the
``--gstify`` check. Pure functions of the runs' JSON records.

A run record (``<work>/runs/<tag>.json``) has ``arm``, ``seed``, ``data``
('synthetic' | 'mpii'), ``mode`` ('train' | 'continue' | 'timing' | 'fit') and
``metrics[decoder]`` with PCK values as fractions (synthetic ``PCK@0.2`` / ``PCK@0.1`` /
``PCK@0.05``; MPII ``PCKh`` / ``PCKh01``), ``mean_cells`` (heatmap cells) and ``hist``
(share of joints per bin of :data:`HIST_EDGES`).
"""
from __future__ import annotations

import statistics
from typing import Dict, List, Mapping, Sequence

import numpy as np

#: decoders of a density head tried on every run: name -> (decode_mode, decode_radius)
DECODERS = {'codec': ('codec', 1), 'dark': ('dark', 1), 'centroid1': ('centroid', 1),
            'centroid2': ('centroid', 2)}
#: radial error histogram bins, heatmap cells
HIST_EDGES = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, float('inf')]


def paired(runs: List[Dict], data: str, key: str, decoder: str, ref: str = 'mse') -> Dict:
    """``arm -> dict(mean, runs (per seed), diffs (paired, to ref's codec), decoder)`` of
    ``key`` over the training runs on ``data``; an arm without ``decoder`` uses 'codec'."""
    out = {}
    by = {(r['arm'], r['seed']): r for r in runs if r['data'] == data and r['mode'] == 'train'}
    for arm in dict.fromkeys(r['arm'] for r in runs if r['data'] == data):
        seeds = sorted(s for a, s in by if a == arm)
        if not seeds:
            continue
        dec = decoder if decoder in by[(arm, seeds[0])]['metrics'] else 'codec'
        vals = [by[(arm, s)]['metrics'][dec][key] for s in seeds]
        diffs = [by[(arm, s)]['metrics'][dec][key] - by[(ref, s)]['metrics']['codec'][key]
                 for s in seeds if (ref, s) in by]
        out[arm] = dict(mean=statistics.mean(vals), runs=vals, diffs=diffs, decoder=dec)
    return out


def best_decoder(runs: List[Dict]) -> str:
    """The decoder with the highest mean synthetic PCK@0.05 over the density-head runs
    (those evaluated with every decoder; MSE's heatmap has MMPose's codec only)."""
    scores = {}
    dens = [r for r in runs if r['data'] == 'synthetic' and r['mode'] == 'train'
            and len(r['metrics']) > 1]
    for name in DECODERS:
        vals = [r['metrics'][name]['PCK@0.05'] for r in dens if name in r['metrics']]
        if vals:
            scores[name] = statistics.mean(vals)
    return max(scores, key=scores.get) if scores else 'codec'


def pct(v: float) -> str:
    return f'{100 * v:.1f}'


def _cells(v: float) -> str:
    return f'{v:.2f}'


def _table(runs: List[Dict], data: str, arms: Sequence[str], keys: Sequence[str],
           decoder: str, diffs: bool) -> List[str]:
    """One row per arm: ``mean [per seed]`` of each key (and ``(paired diff to MSE)``)."""
    stats = {key: paired(runs, data, key, decoder) for key in keys}
    rows = []
    for arm in arms:
        row = [arm]
        for key in keys:
            s = stats[key].get(arm)
            if s is None:
                row.append('-')
                continue
            f = _cells if key == 'mean_cells' else pct
            extra = '' if not diffs or arm == 'mse' or not s['diffs'] else ' (' + ', '.join(
                ('+' if d >= 0 else '') + f(d) for d in s['diffs']) + ')'
            row.append(f"{f(s['mean'])} [{', '.join(f(v) for v in s['runs'])}]{extra}")
        rows.append('| ' + ' | '.join(row) + ' |')
    return rows


def _synthetic_lines(synth: List[Dict], runs: List[Dict], arms: Sequence[str],
                     dec: str) -> List[str]:
    lines = ['Held-out PCK@0.05 by decoder (mean over seeds, %):', '',
             '| arm | ' + ' | '.join(DECODERS) + ' |', '|---|' + '---|' * len(DECODERS)]
    for arm in arms:
        cells = []
        for name in DECODERS:
            vals = [r['metrics'][name]['PCK@0.05'] for r in synth
                    if r['arm'] == arm and name in r['metrics']]
            cells.append(pct(statistics.mean(vals)) if vals else '-')
        lines.append(f'| {arm} | ' + ' | '.join(cells) + ' |')
    lines += ['', f"Held-out PCK (%), decoder `{dec}` for density heads (MSE: MMPose's "
              'codec): mean [per seed] (paired difference to MSE per seed):', '',
              '| arm | PCK@0.2 | PCK@0.1 | PCK@0.05 | mean error (cells) |',
              '|---|---|---|---|---|']
    lines += _table(runs, 'synthetic', arms, ('PCK@0.2', 'PCK@0.1', 'PCK@0.05', 'mean_cells'),
                    dec, diffs=True)
    edges = [f'{a:g}-{b:g}' if b != float('inf') else f'>{a:g}'
             for a, b in zip(HIST_EDGES[:-1], HIST_EDGES[1:])]
    lines += ['', 'Radial error histogram (share of held-out joints per error bin in '
              'heatmap cells, seed mean, same decoder):', '',
              '| arm | ' + ' | '.join(edges) + ' |', '|---|' + '---|' * len(edges)]
    for arm in arms:
        hs = [r['metrics'].get(dec, r['metrics']['codec'])['hist'] for r in synth
              if r['arm'] == arm]
        if hs:
            mean = np.mean(np.asarray(hs), 0)
            lines.append(f'| {arm} | ' + ' | '.join(f'{v:.2f}' for v in mean) + ' |')
    return lines


def _continuation_lines(cont: List[Dict], synth: List[Dict], record: Dict) -> List[str]:
    lines = ['', f"Continuation: each seed's MSE model, then {record['continue_iters']} "
             'steps of the arm at lr 1e-4 (no warm-up); held-out PCK@0.05 (%) before '
             '-> after, mean over seeds (per seed):', '',
             '| arm | before | after | change per seed |', '|---|---|---|---|']
    before = {r['seed']: r['metrics']['codec']['PCK@0.05'] for r in synth if r['arm'] == 'mse'}
    for arm in dict.fromkeys(r['arm'] for r in cont):
        rs = [r for r in cont if r['arm'] == arm and r['seed'] in before]
        if not rs:
            continue
        dec = record['decoder'] if record['decoder'] in rs[0]['metrics'] else 'codec'
        after = [r['metrics'][dec]['PCK@0.05'] for r in rs]
        b = [before[r['seed']] for r in rs]
        lines.append(f'| {arm} | {pct(statistics.mean(b))} | {pct(statistics.mean(after))} | '
                     + ', '.join(f'{100 * (x - y):+.1f}' for x, y in zip(after, b)) + ' |')
    return lines


def _health_line(health: List[Dict]) -> str:
    return 'GST runs, raw per-step values (first / last 50 steps): ' + '; '.join(
        f"{r['arm']} s{r['seed']} {r['data'][:5]}{' cont' if r['mode'] == 'continue' else ''}"
        f": transport {r.get('loss_transport_first50', 0):.3f}/"
        f"{r.get('loss_transport_last50', 0):.3f}"
        + (f", cost {r['loss_cost_first50']:.3f}/{r['loss_cost_last50']:.3f}"
           if 'loss_cost_last50' in r else '')
        + f", mass on joint {r['mass_on_joint_first50']:.2f}/"
        f"{r['mass_on_joint_last50']:.2f}, min mass {r['min_joint_mass']:.2f}, "
        f"guard {len(r['collapse_warnings'])}" for r in health) + '.'


def doc_lines(record: Dict, arm_specs: Mapping[str, str]) -> List[str]:
    """The docs/benchmarks.md section of a learning run (``arm_specs``: name -> spec)."""
    runs = record['runs']
    lines = [f"`python tools/benchmark/pose.py` on {record['machine']}, {record['load']} at "
             f"start; {record['jobs']} runs in parallel, 1 torch thread each; random-init "
             f"half-width ResNet-18; synthetic set {record['num_train']} train / "
             f"{record['num_val']} held-out images, {record['iters']} steps of batch 32; "
             f"seeds {record['seeds']} (paired: {record['pairing']}). Wall time "
             f"{record['wall_s'] / 60:.0f} min. " + record.get('note', ''), '']
    specs = {a: arm_specs.get(a, a) for a in dict.fromkeys(r['arm'] for r in runs)}
    lines += ['Arms: ' + '; '.join(f'`{a}` = `{s}`' for a, s in specs.items()) + '.', '']
    synth = [r for r in runs if r['data'] == 'synthetic' and r['mode'] == 'train']
    if synth:
        lines += _synthetic_lines(synth, runs, list(specs), record['decoder'])
    mpii = [r for r in runs if r['data'] == 'mpii']
    if mpii:
        lines += ['', f"MPII overfit (5 sample images, {record['mpii_iters']} steps, trained "
                  'and tested on themselves; stand-in head boxes): PCKh (%) mean [per '
                  'seed], mean error in cells; same decoder:', '',
                  '| arm | PCKh@0.5 | PCKh@0.1 | mean error (cells) |', '|---|---|---|---|']
        lines += _table(runs, 'mpii', list(dict.fromkeys(r['arm'] for r in mpii)),
                        ('PCKh', 'PCKh01', 'mean_cells'), record['decoder'], diffs=False)
    cont = [r for r in runs if r['mode'] == 'continue']
    if cont:
        lines += _continuation_lines(cont, synth, record)
    timing = record.get('timing') or []
    if timing:
        mse = next((t['step_s'] for t in timing if t['arm'] == 'mse'), None)
        lines += ['', 'Step time, each arm alone, 1 thread (s; ratio to MSE): ' + '; '.join(
            f"{t['arm']} {t['step_s']:.3f}" + (f" ({t['step_s'] / mse:.2f}x)" if mse else '')
            for t in timing) + '.']
    health = [r for r in runs if 'min_joint_mass' in r]
    if health:
        lines += ['', _health_line(health)]
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


def gstify_lines(record: Dict, sources: Sequence[str], jobs: int, note: str = '',
                 kinds: Sequence[str] = ('gst',)) -> List[str]:
    """The docs/benchmarks.md section of ``pose.py --gstify``: per source config and
    gstified version (``kinds``: ``'gst'`` = the default recipe, ``'gst-...'`` its
    variants), the MSE original against it (PCKh@0.5 / @0.1 mean [per seed], step
    ratio)."""
    runs = record['runs']
    lines = [f"`python tools/benchmark/pose.py --gstify ...` on {record['machine']}, "
             f"{record['load']}; random init, the 5 MPII sample images for training and "
             f"testing (stand-in head boxes), {record['iters']} steps of batch 5 "
             f"(`tools/train.py --iters` schedule), seeds {record['seeds']}; "
             f"{jobs} runs in parallel, 1 thread each. Wall time "
             f"{record['wall_s'] / 60:.0f} min. " + note, '',
             '| source config | GST version | MSE PCKh@0.5 | GST PCKh@0.5 | MSE PCKh@0.1 '
             '| GST PCKh@0.1 | step GST / MSE |', '|---|---|---|---|---|---|---|']
    for src in sources:
        mse = [r for r in runs if r['src'] == src and r['kind'] == 'mse']
        for kind in kinds:
            gst = [r for r in runs if r['src'] == src and r['kind'] == kind]
            cells = []
            for key in ('PCKh', 'PCKh01'):
                for rs in (mse, gst):
                    vals = [r[key] for r in rs]
                    cells.append(f"{pct(statistics.mean(vals))} "
                                 f"[{', '.join(pct(v) for v in vals)}]")
            ratio = (statistics.mean(r['step_s'] for r in gst)
                     / statistics.mean(r['step_s'] for r in mse))
            lines.append(f'| `{src}` | {kind} | ' + ' | '.join(cells) + f' | {ratio:.2f} |')
    return lines
