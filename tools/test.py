"""Evaluate a checkpoint of a gst_mm / MMPose model.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--cfg-options key=value ...] [--launcher {none,pytorch}]
"""
import argparse
import os.path as osp

from mmengine.runner import Runner

import gst_mm  # noqa: F401  (registers gst_mm components, fixes checkpoint loading)
from gst_mm.utils import init_cpu_distributed, register_all_modules
from gst_mm.utils.config import add_run_arguments, load_run_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (evaluate) a gst_mm model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the metrics to this .json/.pkl file')
    add_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    register_all_modules(init_default_scope=False)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} does not exist')
    cfg = load_run_config(args.config, args.cfg_options, args.work_dir, args.launcher,
                          args.local_rank)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    init_cpu_distributed(cfg, args.launcher)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if args.out:
        from mmengine.fileio import dump

        dump(dict(metrics), args.out)
    return metrics


if __name__ == '__main__':
    main()
