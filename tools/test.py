"""Evaluate a checkpoint of a gst_mm / MMPose model.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--pred-file FILE.{csv,json}] [--nwpu-submission FILE]
        [--show-dir DIR] [--cfg-options key=value ...]
        [--launcher {none,pytorch}]

``--pred-file`` writes one record per test image (image id, path, gt count,
predicted count, absolute error) as CSV or JSON by extension; ``--nwpu-submission``
writes NWPU-Crowd's test-server file (``<image id> <predicted count>`` per line).
Both are options of the test evaluator's ``CountingMetric`` (``out_file``,
``nwpu_submission``; ``--cfg-options test_evaluator.out_file=...`` is equivalent),
written atomically by rank 0 when the metrics are computed; formats in
``gst_mm/evaluation/prediction_files.py`` and docs/counting.md.

``--show-dir DIR`` works as in MMPose's ``tools/test.py``: it enables the
config's visualization hook (``default_hooks.visualization``, MMPose's
``PoseVisualizationHook``), which writes every test image with its box and the
predicted keypoints scoring above the hook's ``kpt_thr`` (0.3) to
``<work_dir>/<timestamp>/DIR/<image>_<n>.<ext>`` (``DIR`` itself when absolute).
"""
import argparse
import os.path as osp
import sys
from typing import Optional

from mmengine.runner import Runner  # noqa: I001

import gst_mm  # noqa: F401,I001  (first: registers gst_mm components, quiets mmengine)
from gst_mm.evaluation.prediction_files import prediction_format
from gst_mm.utils import init_cpu_distributed, register_all_modules
from gst_mm.utils.config import add_run_arguments, load_run_config, run_tool


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (evaluate) a gst_mm model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the metrics to this .json/.pkl file')
    parser.add_argument('--pred-file', help='write per-image predictions (image, gt count, '
                        'predicted count, abs error) to this .csv or .json file')
    parser.add_argument('--nwpu-submission', help="write NWPU-Crowd's test-server file "
                        '(<image id> <predicted count> per line) to this file')
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


def set_counting_outputs(cfg, pred_file: Optional[str], nwpu_submission: Optional[str],
                         name: str = 'config') -> None:
    """Set ``out_file`` / ``nwpu_submission`` on every ``CountingMetric`` of
    ``cfg.test_evaluator`` (a dict, a list of dicts, or an evaluator with ``metrics``).

    Raises:
        SystemExit: one line when the extension of ``pred_file`` is not .csv / .json,
            or the config's test evaluator has no CountingMetric.
    """
    if pred_file is None and nwpu_submission is None:
        return
    if pred_file is not None:
        try:
            prediction_format(pred_file)
        except ValueError as err:
            sys.exit(f'error: --pred-file: {err}')
    evaluator = cfg.get('test_evaluator', None)
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        evaluator = evaluator['metrics']
    metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    counting = [m for m in metrics if isinstance(m, dict)
                and str(m.get('type', '')).split('.')[-1] == 'CountingMetric']
    if not counting:
        flag = '--pred-file' if pred_file is not None else '--nwpu-submission'
        sys.exit(f"error: {flag}: {name}'s test_evaluator has no CountingMetric "
                 '(these files are written by the counting metric)')
    for metric in counting:
        if pred_file is not None:
            metric['out_file'] = pred_file
        if nwpu_submission is not None:
            metric['nwpu_submission'] = nwpu_submission


def main(argv=None):
    args = parse_args(argv)
    holder: dict = {}
    return run_tool('test.py', lambda: _test(args, holder), holder)


def _test(args, holder: dict):
    register_all_modules(init_default_scope=False)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} does not exist')
    cfg = load_run_config(args.config, args.cfg_options, args.work_dir, args.launcher,
                          args.local_rank)
    holder['cfg'] = cfg
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.show_dir is not None:
        enable_visualization(cfg, args.show_dir, args.config)
    set_counting_outputs(cfg, args.pred_file, args.nwpu_submission, args.config)
    init_cpu_distributed(cfg, args.launcher)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if args.out:
        from mmengine.fileio import dump

        dump(dict(metrics), args.out)
    return metrics


if __name__ == '__main__':
    main()
