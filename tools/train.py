"""Train a gst_mm / MMPose model from an MMEngine config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options key=value ...] [--launcher {none,pytorch}]

Multi-process: ``tools/dist_train.sh CONFIG NPROC [args]`` (torchrun; works on
CPU-only machines through a gloo process group).

Pretrained weights named by an ``init_cfg`` (``type='Pretrained'``) are checked
before anything runs (``gst_mm.utils.pretrained``: the file exists, or the URL is
cached or its host resolves and answers within 5 s); when they cannot be loaded the
tool prints one line naming the key, the file or URL and what to do, and exits with
code 2.
"""
import argparse
import sys

from mmengine.runner import Runner

import gst_mm  # noqa: F401  (registers gst_mm components, fixes checkpoint loading)
from gst_mm.splatting import CacheKeyError
from gst_mm.utils import init_cpu_distributed, register_all_modules
from gst_mm.utils.config import add_run_arguments, load_run_config
from gst_mm.utils.pretrained import PretrainedWeightsError, check_pretrained_weights


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a gst_mm model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or from the latest checkpoint '
        'of the work dir when no path is given')
    parser.add_argument('--amp', action='store_true', help='mixed precision training')
    add_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    register_all_modules(init_default_scope=False)
    cfg = load_run_config(args.config, args.cfg_options, args.work_dir, args.launcher,
                          args.local_rank)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    try:
        check_pretrained_weights(cfg)
    except PretrainedWeightsError as err:  # a configuration / setup issue: one line
        print(f'train.py: error: {err}', file=sys.stderr)
        sys.exit(2)
    init_cpu_distributed(cfg, args.launcher)
    runner = Runner.from_cfg(cfg)
    try:
        runner.train()
    except CacheKeyError as err:  # a configuration mistake: one line, no traceback
        sys.exit(f'train.py: error: {err}')


if __name__ == '__main__':
    main()
