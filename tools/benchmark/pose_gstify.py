"""``tools/benchmark/pose.py --gstify SRC ...``: an MMPose heatmap recipe against its
default gstified version (:func:`gst_mm.utils.gstify.gstify`, what
``tools/gstify_config.py SRC OUT`` writes), both from random init on the 5 MPII sample
images for the same number of steps (``tools/train.py --iters``), paired seeds; tested on
the same images: PCKh@0.5, PCKh@0.1 (stand-in head boxes) and the step time.
"""
from __future__ import annotations

import dataclasses
import json
import os
import os.path as osp
import time
from typing import Dict, Optional

from _common import (
    MPII_SAMPLE,
    append_section,
    load_line,
    machine,
    median_step,
    point_gst_cache,
    recorder_of,
    run_pool,
    store_run,
    stored_run,
    utc_now,
)
from pose_report import gstify_lines


def variant_kind(variant: Optional[Dict]) -> str:
    """The run kind of a gstified version: ``'gst'`` (the default recipe) or
    ``'gst-<field><value>...'`` for recipe overrides ``variant``."""
    if not variant:
        return 'gst'
    return 'gst-' + '-'.join(f'{k}{v}' for k, v in sorted(variant.items()))


def _source_config(src: str, kind: str, name: str, work_dir: str,
                   variant: Optional[Dict] = None) -> str:
    """The config file of one side: the source itself (``kind='mse'``) or the gstified
    version written into ``work_dir`` (``kind='gst...'``: the default recipe with the
    ``variant`` fields)."""
    from gst_mm.models.heads.recipe import PRESETS
    from gst_mm.utils.gstify import gstify
    if kind.startswith('gst'):
        path = osp.join(work_dir, f'{name}_{kind}.py')
        recipe = dataclasses.replace(PRESETS['default'], **(variant or {}))
        with open(path, 'w') as f:
            f.write(gstify(src, path, recipe=recipe))
        return path
    if '::' in src:  # a package config: a one-line file inheriting it
        path = osp.join(work_dir, f'{name}_mse.py')
        with open(path, 'w') as f:
            f.write(f'_base_ = [{src!r}]\n')
        return path
    return src


def gstify_run(src: str, kind: str, seed: int, iters: int, work_dir: str,
               reuse: bool = False, variant: Optional[Dict] = None) -> Dict:
    """Train ``src`` (``kind='mse'``, MMPose's own recipe) or its gstified version
    (``kind='gst'``, or :func:`variant_kind` of ``variant``) for ``iters`` steps of
    batch 5 on the MPII sample and test it."""
    from mmengine.runner import Runner

    from gst_mm.utils.config import load_run_config
    from gst_mm.utils.config import short_run as iters_run
    name = osp.splitext(osp.basename(src.split('::')[-1]))[0]
    tag = f'gstify_{kind}_{name}_seed{seed}'
    stored = stored_run(work_dir, tag, reuse)
    if stored is not None:
        return stored
    os.makedirs(work_dir, exist_ok=True)
    path = _source_config(src, kind, name, work_dir, variant)
    cfg = load_run_config(path, {'data_root': MPII_SAMPLE.rstrip('/') + '/'})
    cfg.model.backbone.init_cfg = None
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].batch_size = 5
        cfg[loader].num_workers = 0
        cfg[loader].persistent_workers = False
    if kind != 'mse':  # the sample's cache in this work dir, not beside the shared data
        point_gst_cache(cfg, cache_dir=osp.join(work_dir, f'gst_cache_{name}'))
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
    out = dict(src=src, kind=kind, variant=variant or {}, seed=seed, iters=iters,
               PCKh=float(m['PCK']) / 100,
               PCKh01=float(m['PCK@0.1']) / 100, step_s=median_step(rec.steps),
               init_hash=rec.init_hash, data_hash=rec.data_hash)
    return store_run(work_dir, tag, out)


def gstify_main(args) -> Dict:
    """Each ``args.gstify`` source against its gstified version, ``args.mpii_seeds``."""
    os.makedirs(args.work_dir, exist_ok=True)
    t0 = time.perf_counter()
    variants = [None] + list(args.gstify_variant)
    sides = [('mse', None)] + [(variant_kind(v), v) for v in variants]
    jobs = [(src, kind, s, args.mpii_iters, args.work_dir, args.reuse, v)
            for src in args.gstify for s in args.mpii_seeds for kind, v in sides]
    runs = run_pool(gstify_run, jobs, args.jobs)
    record = dict(benchmark='pose_gstify', date=utc_now(), machine=machine(), load=load_line(),
                  iters=args.mpii_iters, seeds=args.mpii_seeds, runs=runs,
                  wall_s=time.perf_counter() - t0)
    print(json.dumps(record))
    with open(osp.join(args.work_dir, 'gstify.json'), 'w') as f:
        json.dump(record, f, indent=1)
    if not args.no_doc:
        append_section(f"gstify check: MMPose recipes vs their GST versions, {record['date']}",
                       gstify_lines(record, args.gstify, args.jobs, args.note,
                                    [k for k, _ in sides[1:]]))
    return record
