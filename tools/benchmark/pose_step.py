"""GST vs plain HRNet-W32 on MPII: training-step time and data-pipeline time.

    python tools/benchmark/pose_step.py [--batch 4] [--steps 5] [--threads 2]
        [--data-root ../shared/data/mpii_sample] [--no-doc]

* Training step: ``model.train_step`` (data preprocessor, forward, loss, backward,
  Adam step) of HRNet-W32 at 256x256 with MMPose's ``HeatmapHead`` (MSE) and with
  ``GSTHeatmapHead`` (per-joint transport loss) on the same batch; steps of the two
  models are interleaved and the median is reported. Target: ratio <= 1.15.
* Data pipeline: time per sample of MMPose's MPII train pipeline with and without
  ``LoadPoseTransportKernel`` (Gaussians from a cache fitted once beforehand;
  fit time is not part of the pipeline), with one torch thread as in DataLoader
  workers.

Prints one JSON line and appends a dated section to docs/benchmarks.md.
"""
import argparse
import datetime
import json
import os
import os.path as osp
import platform
import statistics
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GST_CFG = osp.join(REPO, 'configs', 'mpii', 'gst_hrnet-w32_8xb64-210e_mpii-256x256.py')
PLAIN_CFG = osp.join(REPO, 'configs', 'mpii', 'td-hm_hrnet-w32_8xb64-210e_mpii-256x256.py')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data-root', default=osp.join(osp.dirname(REPO), 'shared', 'data',
                                                   'mpii_sample'))
    p.add_argument('--ann-file', default='annotations/mpii_sample.json')
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--steps', type=int, default=6, help='timed steps per model')
    p.add_argument('--pipeline-reps', type=int, default=4, help='passes over the data set')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--fit-iterations', type=int, default=100,
                   help='fit iterations for the cache used here (speed only)')
    p.add_argument('--no-doc', action='store_true', help='do not append to docs/benchmarks.md')
    return p.parse_args(argv)


def _dataset(cfg, data_root, ann_file):
    from mmpose.registry import DATASETS
    ds = dict(cfg.train_dataloader.dataset)
    ds.update(data_root=data_root, ann_file=ann_file, data_prefix=dict(img='images/'))
    return DATASETS.build(ds)


def _configs(args, cache_dir):
    from mmengine.config import Config
    gst, plain = Config.fromfile(GST_CFG), Config.fromfile(PLAIN_CFG)
    root = args.data_root.rstrip('/') + '/'
    for cfg in (gst, plain):
        cfg.model.backbone.init_cfg = None
    for step in gst.train_dataloader.dataset.pipeline:
        if step['type'].endswith('LoadPoseTransportKernel'):
            step.update(cache_dir=cache_dir, data_root=root)
    return gst, plain, root


def time_pipeline(dataset, reps):
    """Seconds per sample (median over passes) of ``dataset[i]``."""
    n = len(dataset)
    for i in range(n):  # warm-up (file cache, lazy imports)
        dataset[i]
    per_pass = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for i in range(n):
            dataset[i]
        per_pass.append((time.perf_counter() - t0) / n)
    return statistics.median(per_pass)


def time_train_steps(models, batch, steps):
    """Median seconds of ``train_step`` per model, steps interleaved."""
    from mmengine.optim import build_optim_wrapper
    wrappers = [build_optim_wrapper(m, dict(optimizer=dict(type='Adam', lr=5e-4)))
                for m in models]
    times = [[] for _ in models]
    for step in range(steps + 1):  # first step = warm-up
        order = range(len(models)) if step % 2 else reversed(range(len(models)))
        for k in order:  # alternate the order so drifts hit both models alike
            m, w = models[k], wrappers[k]
            m.train()
            t0 = time.perf_counter()
            m.train_step(batch, w)
            dt = time.perf_counter() - t0
            if step:
                times[k].append(dt)
    return [statistics.median(t) for t in times]


def append_doc(record):
    path = osp.join(REPO, 'docs', 'benchmarks.md')
    lines = [
        '',
        f"## pose: GST vs plain HRNet-W32 (MPII), {record['date']}",
        '',
        f"`python tools/benchmark/pose_step.py` on {record['machine']}, "
        f"{record['threads']} torch thread(s) for training steps (1 for the data "
        f"pipeline, as in DataLoader workers); batch {record['batch']} of 256x256 crops "
        f"from the MPII sample, median of {record['steps']} interleaved steps; "
        'machine shared with other jobs.',
        '',
        '| measurement | plain HRNet-W32 | GST HRNet-W32 | ratio GST / plain |',
        '|---|---|---|---|',
        f"| training step (s) | {record['step_plain_s']:.3f} | {record['step_gst_s']:.3f} | "
        f"{record['step_ratio']:.3f} (target <= 1.15) |",
        f"| data pipeline (ms / sample) | {record['pipeline_plain_ms']:.1f} | "
        f"{record['pipeline_gst_ms']:.1f} | {record['pipeline_ratio']:.2f} |",
        '',
    ]
    with open(path, 'a') as f:
        f.write('\n'.join(lines))


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import torch
    from mmengine.dataset import pseudo_collate

    from gst_mm.engine.precompute import precompute_dataset
    from gst_mm.registry import MODELS
    from gst_mm.utils import register_all_modules

    torch.set_num_threads(args.threads)
    register_all_modules(init_default_scope=False)
    with tempfile.TemporaryDirectory() as cache_dir:
        gst_cfg, plain_cfg, root = _configs(args, cache_dir)
        gst_ds = _dataset(gst_cfg, root, args.ann_file)
        plain_ds = _dataset(plain_cfg, root, args.ann_file)
        precompute_dataset(gst_ds, cache_dir, fit_cfg=dict(iterations=args.fit_iterations),
                           data_root=root, progress=False)

        # DataLoader workers run with one torch thread
        torch.set_num_threads(1)
        np.random.seed(0)
        pipe_gst = time_pipeline(gst_ds, args.pipeline_reps)
        pipe_plain = time_pipeline(plain_ds, args.pipeline_reps)
        torch.set_num_threads(args.threads)

        np.random.seed(0)
        samples = [gst_ds[i % len(gst_ds)] for i in range(args.batch)]
        batch = pseudo_collate(samples)
        torch.manual_seed(0)
        gst_model = MODELS.build(gst_cfg.model)
        torch.manual_seed(0)
        plain_model = MODELS.build(plain_cfg.model)
        step_gst, step_plain = time_train_steps([gst_model, plain_model], batch, args.steps)

    record = dict(
        benchmark='pose', date=datetime.date.today().isoformat(),
        machine=f'{platform.machine()}, {os.cpu_count()} cores', threads=args.threads,
        batch=args.batch, steps=args.steps,
        step_plain_s=step_plain, step_gst_s=step_gst, step_ratio=step_gst / step_plain,
        step_target_met=step_gst / step_plain <= 1.15,
        pipeline_plain_ms=pipe_plain * 1e3, pipeline_gst_ms=pipe_gst * 1e3,
        pipeline_ratio=pipe_gst / pipe_plain)
    print(json.dumps(record))
    if not args.no_doc:
        append_doc(record)
    return record


if __name__ == '__main__':
    main()
