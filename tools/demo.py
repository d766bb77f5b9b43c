"""The crowd-counting journey end to end on CPU in a few minutes (``make demo``).

From nothing:

1. generate the synthetic crowd data set (``gst_mm.datasets.synthetic_crowd``,
   also ``tools/make_synthetic_crowd.py``) into ``data/synthetic_crowd``;
2. fit and cache the GST Gaussians of the training images (the same code
   ``GSTPrecomputeHook`` and ``tools/precompute.py`` run), with a progress bar;
3. train the GST counter of ``configs/counting/gst_vgg19_synthetic.py`` with
   MMEngine's Runner (validation at the end);
4. evaluate it on the test split (MAE, MSE, NAE, localisation AP/AR/F1);
5. write a PNG with image / ground truth / predicted density / transport maps.

    python tools/demo.py [--work-dir work_dirs/demo] [--iters N] [--workers 2]

Every step is skipped when its output is already there and valid (the data
set, the cache), so a second run only trains again.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import time
from typing import Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join('configs', 'counting', 'gst_vgg19_synthetic.py')


def say(step: str, text: str) -> None:
    print(f'\n[demo {step}] {text}', flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='gst_mm crowd-counting demo (CPU, minutes)')
    p.add_argument('--config', default=CONFIG, help='counting config (default: %(default)s)')
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'demo'))
    p.add_argument('--iters', type=int, default=None, help="training iterations (config's)")
    p.add_argument('--workers', type=int, default=2, help='Gaussian fitting processes')
    p.add_argument('--threads', type=int, default=None,
                   help='torch threads of the training process (default: cores - 1, '
                   'one core is left to the data worker)')
    return p.parse_args(argv)


def precompute(cfg, workers: int) -> Optional[str]:
    """Fit and cache the Gaussians of the training images that are not cached yet
    (:func:`gst_mm.engine.precompute_config`, the hook's resolver). Returns the cache
    folder(s) (``None`` when the config fits nothing)."""
    from gst_mm.engine import precompute_config

    summary, where = precompute_config(cfg, 'train', workers)
    if summary is None:
        print('config has no GSTPrecomputeHook: nothing to fit')
        return None
    print(f'Gaussian cache {where}: {summary}')
    return where


def predict_sample(runner, index: int = 0):
    """Run the trained model on test sample ``index``: (data sample with predictions)."""
    from mmengine.dataset import pseudo_collate

    dataset = runner.test_dataloader.dataset
    batch = pseudo_collate([dataset[index]])
    model = runner.model
    model.eval()
    return model.test_step(batch)[0]


def demo_figure(cfg, runner, out_path: str, index: int = 0) -> dict:
    """Image + ground truth | predicted density | GST transport map | heuristic plan."""
    import numpy as np

    from gst_mm.visualization import (
        annotation_colors,
        colorize_density,
        compose_panels,
        draw_points,
        save_rgb,
        transport_map,
        upsample,
    )
    from gst_mm.visualization.transport_sample import load_transport_sample

    pred = predict_sample(runner, index)
    gst = load_transport_sample(cfg, 'test', index, source='fit', fit=True)
    heuristic = load_transport_sample(cfg, 'test', index, source='heuristic')
    image = np.ascontiguousarray(gst['img'][..., ::-1])
    points = np.asarray(gst['points'], np.float64).reshape(-1, 2)
    colors = annotation_colors(len(points))
    size = image.shape[:2]

    def full_size(cells):
        canvas = np.zeros(size + (3, ), np.uint8)
        up = upsample(cells, (cells.shape[0] * 8, cells.shape[1] * 8))[:size[0], :size[1]]
        canvas[:up.shape[0], :up.shape[1]] = up
        return canvas

    density = pred.pred_density.detach().cpu().numpy()[0]
    panels = [
        ('image', image),
        (f'ground truth: {len(points)} people', draw_points(image, points, (255, 40, 40))),
        (f'predicted density: {pred.pred_count:.1f}', full_size(colorize_density(density))),
        ('GST transport map', draw_points(full_size(transport_map(gst['transport_kernel'], colors)),
                                          points, colors, radius=1)),
        ('heuristic plan (sigma 8 px)',
         draw_points(full_size(transport_map(heuristic['transport_kernel'], colors)), points,
                     colors, radius=1)),
    ]
    save_rgb(out_path, compose_panels(panels, height=300))
    return dict(image=gst['img_path'], gt_count=len(points), pred_count=float(pred.pred_count))


def main(argv=None) -> None:
    args = parse_args(argv)
    start = time.time()
    os.chdir(ROOT)
    import torch

    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2) - 1))
    from mmengine.config import Config
    from mmengine.runner import Runner

    import gst_mm  # noqa: F401
    from gst_mm.datasets.synthetic_crowd import ensure_dataset
    from gst_mm.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(args.config)
    cfg.work_dir = args.work_dir
    if args.iters is not None:
        cfg.train_cfg.max_iters = args.iters
        cfg.train_cfg.val_interval = args.iters
        cfg.default_hooks.checkpoint.interval = args.iters
        for sched in cfg.get('param_scheduler', None) or []:
            sched.update(T_max=args.iters, end=args.iters)
    data_root = cfg.train_dataloader.dataset.data_root

    say('1/5', f'synthetic crowd data set -> {osp.abspath(data_root)}')
    print(ensure_dataset(data_root, cfg.get('synthetic_data', None)))

    say('2/5', 'fitting the GST Gaussians of the training images (2D Gaussian splatting)')
    t = time.time()
    cache_dir = precompute(cfg, args.workers)
    fit_s = time.time() - t

    say('3/5', f'training {osp.basename(args.config)} on CPU '
        f'({cfg.train_cfg.max_iters} iterations) -> {osp.abspath(args.work_dir)}')
    t = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    train_s = time.time() - t

    say('4/5', 'evaluating on the test split')
    metrics = runner.test()

    say('5/5', 'drawing image / ground truth / predicted density / transport maps')
    figure = osp.join(args.work_dir, 'demo_result.png')
    sample = demo_figure(cfg, runner, figure)

    summary = dict(
        data=osp.abspath(data_root),
        gaussian_cache=cache_dir,
        work_dir=osp.abspath(args.work_dir),
        log_dir=osp.abspath(osp.join(args.work_dir, runner.timestamp)),
        figure=osp.abspath(figure),
        test_metrics={k: round(float(v), 4) for k, v in metrics.items()},
        figure_sample=sample,
        seconds=dict(fit=round(fit_s, 1), train=round(train_s, 1),
                     total=round(time.time() - start, 1)),
    )
    with open(osp.join(args.work_dir, 'demo_summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print('\n' + '=' * 72)
    print('gst_mm demo finished in {:.0f} s'.format(time.time() - start))
    for key in ('data', 'gaussian_cache', 'work_dir', 'log_dir', 'figure'):
        print(f'  {key:15s} {summary[key]}')
    print('  test metrics    ' + ', '.join(f'{k} {v:.3f}' for k, v in metrics.items()))
    print(f'  checkpoints     {osp.abspath(args.work_dir)}/*.pth')
    print(f'  next: tools/visualize_transport.py {args.config} --index 3; docs/counting.md')
    print('=' * 72)


if __name__ == '__main__':
    main()
