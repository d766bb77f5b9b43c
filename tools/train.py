"""Train a gst_mm / MMPose model from an MMEngine config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options key=value ...] [--launcher {none,pytorch}]

Multi-process: ``tools/dist_train.sh CONFIG NPROC [args]`` (torchrun; works on
CPU-only machines through a gloo process group).

``--iters N`` makes any config a short run (N iterations, a log line per step,
validation and a checkpoint at the end; epoch-based configs become iteration-based
with ``drop_last``). User errors (a missing file, a typo in ``--cfg-options``, a bad
annotation, a stale cache) are one line ``train.py: error: ...`` and exit code 2.

Pretrained weights named by an ``init_cfg`` (``type='Pretrained'``) are checked
before anything runs (``gst_mm.utils.pretrained``: the file exists, or the URL is
cached or its host resolves and answers within 5 s); when they cannot be loaded the
tool prints one line naming the key, the file or URL and what to do, and exits with
code 2.
"""
import argparse
import sys

from mmengine.runner import Runner  # noqa: I001

import gst_mm  # noqa: F401,I001  (first: registers gst_mm components, quiets mmengine)
from gst_mm.utils import init_cpu_distributed, register_all_modules
from gst_mm.utils.config import add_run_arguments, load_run_config, run_tool, short_run
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
    parser.add_argument('--iters', type=int, default=None,
                        help='a short run: train N iterations (an epoch-based config becomes '
                        'iteration-based, drop_last set), log every step, validate and save '
                        'at the end')
    add_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    holder: dict = {}
    return run_tool('train.py', lambda: _train(args, holder), holder)


def _train(args, holder: dict):
    register_all_modules(init_default_scope=False)
    cfg = load_run_config(args.config, args.cfg_options, args.work_dir, args.launcher,
                          args.local_rank)
    holder['cfg'] = cfg
    if args.iters is not None:
        short_run(cfg, args.iters)
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
    runner.train()


if __name__ == '__main__':
    main()
