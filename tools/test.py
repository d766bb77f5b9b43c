"""Evaluate a checkpoint of a gst_mm / MMPose model.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--show-dir DIR] [--cfg-options key=value ...]
        [--launcher {none,pytorch}]

``--show-dir DIR`` works as in MMPose's ``tools/test.py``: it enables the
config's visualization hook (``default_hooks.visualization``, MMPose's
``PoseVisualizationHook``), which writes every test image with its box and the
predicted keypoints scoring above the hook's ``kpt_thr`` (0.3) to
``<work_dir>/<timestamp>/DIR/<image>_<n>.<ext>`` (``DIR`` itself when absolute).
"""
import argparse
import os.path as osp
import sys

from mmengine.runner import Runner

import gst_mm  # noqa: F401  (registers gst_mm components, fixes checkpoint loading)
from gst_mm.utils import init_cpu_distributed, register_all_modules
from gst_mm.utils.config import add_run_arguments, load_run_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (evaluate) a gst_mm model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the metrics to this .json/.pkl file')
    parser.add_argument('--show-dir', help='write the test images with predictions to this '
                        'folder (inside <work_dir>/<timestamp>/ unless absolute)')
    add_run_arguments(parser)
    return parser.parse_args(argv)


def enable_visualization(cfg, show_dir: str, name: str = 'config') -> None:
    """Turn on ``default_hooks.visualization`` (MMPose's ``PoseVisualizationHook``)
    with ``out_dir=show_dir``, as MMPose's ``tools/test.py --show-dir`` does.

    Raises:
        SystemExit: one line naming the config when it has no visualization hook.
    """
    hooks = cfg.get('default_hooks', None) or {}
    if 'visualization' not in hooks or not hooks['visualization']:
        sys.exit(f'error: --show-dir: {name} has no default_hooks.visualization (MMPose configs '
                 "use dict(type='PoseVisualizationHook')); add one to draw predictions")
    vis = hooks['visualization']
    vis['enable'] = True
    vis['show'] = False
    vis['out_dir'] = show_dir


def main(argv=None):
    args = parse_args(argv)
    register_all_modules(init_default_scope=False)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} does not exist')
    cfg = load_run_config(args.config, args.cfg_options, args.work_dir, args.launcher,
                          args.local_rank)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.show_dir is not None:
        enable_visualization(cfg, args.show_dir, args.config)
    init_cpu_distributed(cfg, args.launcher)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if args.out:
        from mmengine.fileio import dump

        dump(dict(metrics), args.out)
    return metrics


if __name__ == '__main__':
    main()
