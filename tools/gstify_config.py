"""Turn an MMPose top-down heatmap config into its GST (or OT-baseline) version.

    python tools/gstify_config.py SRC_CONFIG OUT_CONFIG [--loss {gst,ot}]
        [--preset {default,paper}] [--beta B] [--discrepancy {l1,log}]
        [--cost-weight L] [--entropy-weight E] [--cost {sqdist,mahalanobis}]
        [--decode MODE]
        [--nonneg MODE] [--mse-weight W] [--mse-warmup-iters N]
        [--cache-dir DIR] [--fit-iterations 1000] [--force]

``SRC_CONFIG`` is a config file or an MMPose package config
(``mmpose::body_2d_keypoint/topdown_heatmap/mpii/td-hm_res50_8xb64-210e_mpii-256x256.py``).
``OUT_CONFIG`` is a small config that inherits ``SRC_CONFIG`` through ``_base_``
(``mmpose::...`` for a package config, also when given as a file inside the
installed mmpose package; otherwise the source's absolute path, so the output
works from any directory) and changes only what the method needs.

``--loss gst`` (default):

* ``model.head``: ``HeatmapHead`` -> ``gst_mm.GSTHeatmapHead`` (same layers, forward
  and flip test) with the recipe's settings (:class:`gst_mm.models.heads.recipe.PoseRecipe`:
  ``--preset default``, the setting the pose benchmark chose, or ``--preset paper``,
  the paper's own; single fields overridden by the options below); its loss is
  ``gst_mm.JointTransportLoss`` and the source head's loss (MMPose's MSE) becomes
  ``mse_loss`` (warm-up / mix term);
* the train pipeline: ``gst_mm.LoadPoseTransportKernel`` inserted after
  ``TopdownAffine`` and ``GenerateTarget``, right before ``PackPoseInputs``;
* ``custom_hooks``: ``gst_mm.GSTPrecomputeHook`` fits the missing Gaussians of
  the training images before the run (``fit_cfg=dict(iterations=1000)``);
* ``custom_imports`` of gst_mm, ``data_root`` restated and ``gaussian_cache_dir`` /
  ``gaussian_data_root`` named once, under it.

``--loss ot``: the OT baseline (HDM-HPE-style distribution matching): the head
becomes ``gst_mm.DensityHeatmapHead`` (HeatmapHead's layers, decoding and scores
read from the softmax density the loss sees) with ``gst_mm.HeatmapOTLoss``; no
kernel transform, no hook, no cache.

Every other setting (backbone, codec, schedule, evaluator, default scope) is
the source config's. Unsupported sources (multi-stage heads such as CPMHead,
UDP codecs, ...) are refused with one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from typing import Tuple

from gst_mm.utils.gstify import (  # noqa: F401  (the tool's public names)
    LOSSES,
    UnsupportedConfig,
    gstify,
    nonneg_choices,
    portable_base,
    recipe_name,
)

#: command-line options that override one recipe field (option, field, type)
RECIPE_OPTIONS = (('--beta', 'beta', float), ('--discrepancy', 'discrepancy', str),
                  ('--cost-weight', 'cost_weight', float), ('--cost', 'cost', str),
                  ('--entropy-weight', 'entropy_weight', float),
                  ('--decode', 'decode_mode', str), ('--nonneg', 'nonneg', str),
                  ('--mse-weight', 'mse_weight', float),
                  ('--mse-warmup-iters', 'mse_warmup_iters', int),
                  ('--fit-iterations', 'fit_iterations', int))


def parse_args(argv=None) -> argparse.Namespace:
    from gst_mm.models.heads.recipe import PRESETS
    modes, _ = nonneg_choices()
    parser = argparse.ArgumentParser(
        description='Convert an MMPose top-down heatmap config into its GST (or OT) version')
    parser.add_argument('src', help='source config: a file or mmpose::<path>')
    parser.add_argument('out', help='config file to write')
    parser.add_argument('--loss', default='gst', choices=LOSSES,
                        help="gst: GSTHeatmapHead + kernel transform + precompute hook "
                        "(default); ot: gst_mm.DensityHeatmapHead with gst_mm.HeatmapOTLoss")
    parser.add_argument('--preset', default='default', choices=list(PRESETS),
                        help="GST settings: 'default' (the benchmark's choice) or 'paper' "
                        "(beta 1, L1, no transport cost, MMPose's decoder)")
    choices = dict(discrepancy=None, cost=None, decode_mode=None, nonneg=list(modes))
    for option, field, kind in RECIPE_OPTIONS:
        parser.add_argument(option, dest=field, type=kind, default=None,
                            choices=choices.get(field),
                            help=f'recipe field {field} (default: the preset\'s)')
    parser.add_argument('--cache-dir', help='Gaussian cache directory (default: '
                        '<train data_root>/gst_cache)')
    parser.add_argument('--force', action='store_true', help='overwrite OUT')
    args = parser.parse_args(argv)
    given = [opt for opt, field, _ in RECIPE_OPTIONS if getattr(args, field) is not None]
    if args.loss == 'ot':
        unused = given + (['--cache-dir'] if args.cache_dir is not None else []) + (
            ['--preset'] if args.preset != 'default' else [])
        if unused:
            parser.error(f"{', '.join(unused)}: GST options, not used by --loss ot")
        args.recipe = None
        return args
    try:
        args.recipe = PRESETS[args.preset].replace(
            **{field: getattr(args, field) for _, field, _ in RECIPE_OPTIONS})
    except ValueError as e:
        parser.error(str(e))
    return args


def _fail(message: str) -> None:
    print(f'gstify_config.py: error: {message}', file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> Tuple[str, str]:
    """Write OUT; refusals and user errors: one line on stderr, exit code 2."""
    args = parse_args(argv)
    if osp.exists(args.out) and not args.force:
        _fail(f'{args.out} exists (use --force to overwrite)')
    try:
        text = gstify(args.src, args.out, cache_dir=args.cache_dir, recipe=args.recipe,
                      loss=args.loss)
    except UnsupportedConfig as e:
        _fail(' '.join(str(e).split()))
    compile(text, args.out, 'exec')  # the output must be valid Python
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    tmp = f'{args.out}.tmp-{os.getpid()}'
    try:
        with open(tmp, 'w') as f:
            f.write(text)
        os.replace(tmp, args.out)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    kind = 'GST' if args.loss == 'gst' else 'OT-baseline'
    print(f'wrote {args.out} ({kind} version of {args.src})')
    return args.out, text


if __name__ == '__main__':
    main()
