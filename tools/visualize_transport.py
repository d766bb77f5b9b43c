"""Draw the GST transport map of one sample of a config's data set (paper Figure 5).

    python tools/visualize_transport.py CONFIG [--split train] [--index 0 | --name NAME]
        [--source fit|heuristic|gt] [--augment] [--fit] [--out FILE.png]
        [--cfg-options key=value ...]

Each annotation gets a colour; every density cell is painted with the colours
of the annotations its mass is transported to, brightness = kernel weight; the
share that goes to the virtual background stays black. The figure shows the
image with the annotations, the transport map, and both blended.

By default the sample is shown without random augmentation (the config's
pipeline minus its ``Random*`` steps); ``--augment`` runs the full training
pipeline (so the crop, scale and flip of one training draw are shown). The fitted
kernel (``--source fit``, GST) needs the sample's cached Gaussians of the config's
fit plan (hard, or soft for a ``gst-soft`` config); ``--fit`` fits them now if
missing, with the config's precompute settings, into the folder training reads
(:func:`gst_mm.engine.fit_image`, the resolver ``tools/precompute.py`` uses).
``--cfg-options data_root=...`` moves every path under the config's data root.

For a pose config (a train pipeline with ``gst_mm.LoadPoseTransportKernel``) the
per-joint plans are drawn instead, by ``tools/visualize_pose_kernels.py``
(``--split``, ``--index``, ``--augment``, ``--out`` and ``--cfg-options`` are
passed on; missing Gaussians are fitted).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from typing import Dict

import numpy as np

from gst_mm.visualization.transport_sample import _type, load_transport_sample


def parse_args(argv=None):
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description='Draw the GST transport map of a sample')
    p.add_argument('config', help='a crowd-counting config (configs/counting/*.py), or a '
                   'GST pose config (drawn by tools/visualize_pose_kernels.py)')
    p.add_argument('--split', default='train', choices=['train', 'val', 'test'])
    p.add_argument('--index', type=int, default=0, help='sample index in the split')
    p.add_argument('--name', help='sample name (img_id), instead of --index')
    p.add_argument('--source', default=None, choices=['fit', 'heuristic', 'gt'],
                   help="kernel source of LoadCrowdGaussians (default: the config's, else "
                   'fit: the GST Gaussians)')
    p.add_argument('--augment', action='store_true', help='apply the random augmentation')
    p.add_argument('--fit', action='store_true', help='fit missing Gaussians of the sample')
    p.add_argument('--out', default=None,
                   help='output PNG (default work_dirs/transport_<name>.png)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of the config, key=value')
    return p.parse_args(argv)


def transport_figure(results: Dict, height: int = 360) -> np.ndarray:
    """Image + annotations | transport map | blend, RGB uint8."""
    from gst_mm.visualization import (
        annotation_colors,
        blend,
        compose_panels,
        draw_points,
        transport_map,
        upsample,
    )

    image = np.ascontiguousarray(results['img'][..., ::-1])
    kernel = results['transport_kernel']
    points = np.asarray(results['points'], np.float64).reshape(-1, 2)
    colors = annotation_colors(len(points))
    h, w = kernel.grid_shape
    tmap = transport_map(kernel, colors)
    big = np.zeros_like(image)
    up = upsample(tmap, (h * int(kernel.stride), w * int(kernel.stride)))
    big[:up.shape[0], :up.shape[1]] = up[:image.shape[0], :image.shape[1]]
    panels = [
        (f'image, {len(points)} annotations', draw_points(image, points, colors)),
        ('transport map', draw_points(big, points, colors, radius=1)),
        ('overlay', blend(image, big, 0.6)),
    ]
    return compose_panels(panels, height=height)


def pose_main(args) -> int:
    """A pose config: its per-joint plans, drawn as tools/visualize_pose_kernels.py does."""
    if args.name is not None or args.source is not None:
        print('visualize_transport.py: error: --name and --source are crowd options; pose '
              'configs take --index (tools/visualize_pose_kernels.py)', file=sys.stderr)
        return 2
    from gst_mm.visualization.pose_kernels import draw_pose_kernels
    return draw_pose_kernels(args.config, args.cfg_options, args.split, args.index,
                             args.augment, fit=True, out=args.out,
                             prog='visualize_transport.py')


def main(argv=None):
    args = parse_args(argv)
    import gst_mm  # noqa: F401
    from gst_mm.splatting import CacheKeyError, GaussianCacheError
    from gst_mm.utils import register_all_modules
    from gst_mm.utils.config import ConfigOptionError, load_run_config
    from gst_mm.visualization import save_rgb

    register_all_modules()
    try:
        cfg = load_run_config(args.config, args.cfg_options)
    except (FileNotFoundError, ConfigOptionError) as err:
        print(f'visualize_transport.py: error: {err}', file=sys.stderr)
        return 2
    pipeline = cfg.get('train_dataloader', {}).get('dataset', {}).get('pipeline', None) or []
    if any(_type(t).split('.')[-1] == 'LoadPoseTransportKernel' for t in pipeline):
        return pose_main(args)
    try:
        results = load_transport_sample(cfg, args.split, args.index, args.name, args.source,
                                        args.augment, args.fit)
    except GaussianCacheError as err:
        hint = ('' if args.fit else 'fit it with --fit, or the whole set with '
                f'tools/precompute.py {args.config}')
        print(f'visualize_transport.py: error: {err}' + (f'; {hint}' if hint else ''),
              file=sys.stderr)
        return 2
    except (CacheKeyError, RuntimeError, ValueError, KeyError, IndexError,
            FileNotFoundError) as err:
        print(f'visualize_transport.py: error: {err}', file=sys.stderr)
        return 2
    name = results.get('img_id') or osp.splitext(osp.basename(results['img_path']))[0]
    out = args.out or osp.join('work_dirs', f'transport_{name}.png')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    save_rgb(out, transport_figure(results))
    print(f'transport map of {results["img_path"]} ({results["transport_kernel"]}) '
          f'written to {osp.abspath(out)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
