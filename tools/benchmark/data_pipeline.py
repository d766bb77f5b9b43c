#!/usr/bin/env python
"""Data-side cost: synthetic generation and the crowd training pipeline.

Measures on the synthetic crowd set (default sizes, 256 crop, stride 8), one
thread: seconds per generated image; ms per training sample of the pipeline
(load image, Gaussians, random resize, crop, flip, greyscale, kernel, pack) for
the ground-truth-scale and heuristic plans, and the share of that time spent
building the transport kernel (``LoadTransportKernel``) -- the part GST adds to
a plain point pipeline. Prints one JSON line and appends a dated section to
``docs/benchmarks.md`` (``--no-doc`` to skip).
"""
import argparse
import datetime
import json
import os
import os.path as osp
import platform
import tempfile
import time

import numpy as np
import torch

from gst_mm.datasets.synthetic_crowd import SyntheticCrowdConfig, write_dataset


def pipeline(plan: str, kernel: bool):
    steps = [dict(type='LoadImageFromFile'), dict(type='LoadCrowdGaussians', plan=plan),
             dict(type='CrowdRandomResize', scale_range=(0.75, 1.25)),
             dict(type='CrowdRandomCrop', crop_size=256), dict(type='CrowdRandomFlip'),
             dict(type='RandomGrayscale')]
    if kernel:
        steps.append(dict(type='LoadTransportKernel', stride=8))
    return steps + [dict(type='PackCountingInputs')]


def time_pipeline(root: str, plan: str, kernel: bool, repeats: int) -> float:
    """Median ms per sample over ``repeats`` passes of the train split."""
    from mmengine.registry import DefaultScope

    from gst_mm.registry import DATASETS
    with DefaultScope.overwrite_default_scope('gst_mm'):
        ds = DATASETS.build(dict(type='CrowdCountingDataset', data_root=root,
                                 ann_file='train.txt', pipeline=pipeline(plan, kernel)))
        np.random.seed(0)
        times = []
        for _ in range(repeats):
            for i in range(len(ds)):
                t = time.perf_counter()
                ds[i]
                times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--num-images', type=int, default=20)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--no-doc', action='store_true')
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        cfg = SyntheticCrowdConfig(num_images=a.num_images, split_fractions=(1.0, 0.0, 0.0))
        t = time.perf_counter()
        write_dataset(root, cfg)
        gen_s = (time.perf_counter() - t) / a.num_images
        now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
        res = dict(benchmark='data_pipeline', date=now, threads=1,
                   machine=f'{os.cpu_count()}-core {platform.machine()}',
                   images=a.num_images, generate_s_per_image=round(gen_s, 4))
        for plan in ('gt', 'heuristic'):
            with_k = time_pipeline(root, plan, True, a.repeats)
            without = time_pipeline(root, plan, False, a.repeats)
            res[f'{plan}_ms_per_sample'] = round(with_k, 2)
            res[f'{plan}_ms_without_kernel'] = round(without, 2)
            res[f'{plan}_kernel_share'] = round(max(0.0, with_k - without) / with_k, 3)
    print(json.dumps(res))
    if not a.no_doc:
        doc = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
                       'docs', 'benchmarks.md')
        lines = [f"\n## Data pipeline: synthetic crowd ({res['date']})\n",
                 f"`tools/benchmark/data_pipeline.py`: {res['machine']}, threads = 1, "
                 f"torch {torch.__version__}; {a.num_images} synthetic images (256-384 px, "
                 "20-150 objects), train pipeline with 256 crop, stride-8 kernel; median per "
                 f"sample over {a.repeats} passes.\n",
                 '| quantity | value |', '|---|---|',
                 f"| generation, s / image | {res['generate_s_per_image']} |"]
        for plan in ('gt', 'heuristic'):
            lines += [f"| {plan} plan: pipeline ms / sample | {res[plan + '_ms_per_sample']} |",
                      f"| {plan} plan: without LoadTransportKernel, ms | "
                      f"{res[plan + '_ms_without_kernel']} |",
                      f"| {plan} plan: kernel share of the sample time | "
                      f"{res[plan + '_kernel_share']:.0%} |"]
        with open(doc, 'a') as f:
            f.write('\n'.join(lines) + '\n')
    return res


if __name__ == '__main__':
    main()
