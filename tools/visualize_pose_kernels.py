"""Draw the per-joint GST transport kernels ``K_fg`` of one sample of a pose config.

    python tools/visualize_pose_kernels.py CONFIG [--split train] [--index 0]
        [--augment] [--no-fit] [--out FILE.png] [--cfg-options key=value ...]

``CONFIG`` is a GST pose config (``configs/mpii/gst_*.py`` or any output of
``tools/gstify_config.py``): its training pipeline, with its
``gst_mm.LoadPoseTransportKernel`` step, is run on sample ``--index`` of the
split. By default the random steps (``RandomFlip``, ``RandomBBoxTransform``,
``RandomHalfBody``, ...) are dropped so the crop is the plain top-down crop;
``--augment`` keeps them (one training draw). When the image has no valid
Gaussian cache it is fitted first with the config's ``GSTPrecomputeHook``
settings (the same function ``tools/precompute.py`` uses) unless ``--no-fit``.

The figure (RGB PNG) has three panels:

1. the input crop with each supervised joint (MMPose's ``transformed_keypoints``)
   as a coloured dot;
2. every joint's kernel on the crop, in the joint's colour, brightness =
   ``K_fg`` (share of a heatmap cell's mass transported to the joint, 0..1; the
   rest goes to that joint's background column);
3. a grid with one tile per joint: the crop dimmed, the kernel as a heat map
   and the joint's dot; invisible / out-of-crop joints have no kernel ("no K").

Kernels live on the heatmap grid; heatmap cell ``k`` is input pixel index
``stride * k`` (MMPose's MSRAHeatmap convention), and the upsampling to the crop
keeps exactly that alignment, so a kernel's peak sits on its joint's dot. The
library: :mod:`gst_mm.visualization.pose_kernels`.
"""
from __future__ import annotations

import argparse
import sys

from gst_mm.visualization.pose_kernels import draw_pose_kernels


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description='Draw the per-joint GST kernels of a pose sample')
    p.add_argument('config', help='a GST pose config (configs/mpii/gst_*.py)')
    p.add_argument('--split', default='train', choices=['train', 'val', 'test'],
                   help="data set to take the sample from (always run through the train "
                   "pipeline's kernel step)")
    p.add_argument('--index', type=int, default=0, help='sample (instance) index in the split')
    p.add_argument('--augment', action='store_true', help='keep the random augmentation')
    p.add_argument('--no-fit', action='store_true',
                   help='do not fit a missing Gaussian cache (error instead)')
    p.add_argument('--out', default=None,
                   help='output PNG (default work_dirs/pose_kernels_<image>_<index>.png)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of the config, key=value (data_root=... moves '
                   'every path under it)')
    return p.parse_args(argv)


def run(config, cfg_options=None, split='train', index=0, augment=False, fit=True, out=None):
    """:func:`gst_mm.visualization.pose_kernels.draw_pose_kernels` (0, or 2 after one
    line on stderr)."""
    return draw_pose_kernels(config, cfg_options, split, index, augment, fit, out)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run(args.config, args.cfg_options, args.split, args.index, args.augment,
               fit=not args.no_fit, out=args.out)


if __name__ == '__main__':
    sys.exit(main())
