"""Draw the GST transport map of one sample of a config's data set (paper Figure 5).

    python tools/visualize_transport.py CONFIG [--split train] [--index 0 | --name NAME]
        [--plan gst|heuristic|gt] [--augment] [--fit] [--out FILE.png]
        [--cfg-options key=value ...]

Each annotation gets a colour; every density cell is painted with the colours
of the annotations its mass is transported to, brightness = kernel weight; the
share that goes to the virtual background stays black. The figure shows the
image with the annotations, the transport map, and both blended.

By default the sample is shown without random augmentation (the config's
pipeline minus its ``Random*`` steps); ``--augment`` runs the full training
pipeline (so the crop, scale and flip of one training draw are shown). The GST
plan needs the sample's cached Gaussians; ``--fit`` fits them now if missing.

For a pose config (a train pipeline with ``gst_mm.LoadPoseTransportKernel``) the
per-joint plans are drawn instead, by ``tools/visualize_pose_kernels.py``
(``--split``, ``--index``, ``--augment``, ``--out`` and ``--cfg-options`` are
passed on; missing Gaussians are fitted).
"""
from __future__ import annotations

import argparse
import copy
import os
import os.path as osp
import sys
from typing import Dict, List, Optional

import numpy as np

KERNEL_TYPES = ('LoadTransportKernel', 'gst_mm.LoadTransportKernel')
GAUSSIAN_TYPES = ('LoadCrowdGaussians', 'gst_mm.LoadCrowdGaussians')


def parse_args(argv=None):
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description='Draw the GST transport map of a sample')
    p.add_argument('config', help='a crowd-counting config (configs/counting/*.py), or a '
                   'GST pose config (drawn by tools/visualize_pose_kernels.py)')
    p.add_argument('--split', default='train', choices=['train', 'val', 'test'])
    p.add_argument('--index', type=int, default=0, help='sample index in the split')
    p.add_argument('--name', help='sample name (img_id), instead of --index')
    p.add_argument('--plan', default=None, choices=['gst', 'heuristic', 'gt'],
                   help="transport plan (default: the config's, else gst)")
    p.add_argument('--augment', action='store_true', help='apply the random augmentation')
    p.add_argument('--fit', action='store_true', help='fit missing Gaussians of the sample')
    p.add_argument('--out', default=None,
                   help='output PNG (default work_dirs/transport_<name>.png)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of the config, key=value')
    return p.parse_args(argv)


def _type(t: Dict) -> str:
    return str(t.get('type', ''))


def transport_pipeline(cfg, plan: Optional[str], augment: bool) -> List[Dict]:
    """The config's training pipeline cut to what the transport map needs.

    Keeps loading, (random augmentation only with ``augment``), the Gaussians
    transform (its plan switched to ``plan``; inserted if the config has none,
    e.g. a baseline) and the kernel transform (inserted if absent); drops the
    pack step.
    """
    steps = [copy.deepcopy(dict(t)) for t in cfg.train_dataloader.dataset.pipeline]
    steps = [t for t in steps if not _type(t).split('.')[-1].startswith('Pack')]
    if not augment:
        steps = [t for t in steps if 'Random' not in _type(t)]
    if not any(_type(t) in GAUSSIAN_TYPES for t in steps):
        # a baseline config: the data set's default cache (<data_root>/gst_cache)
        steps.insert(1, dict(type='LoadCrowdGaussians', plan=plan or 'gst'))
    if not any(_type(t) in KERNEL_TYPES for t in steps):
        steps.append(dict(type='LoadTransportKernel', stride=8))
    for t in steps:
        if _type(t) in GAUSSIAN_TYPES and plan is not None:
            t['plan'] = plan
    return steps


def build_dataset(cfg, split: str):
    """The split's data set of ``cfg`` without pipeline (raw data infos)."""
    from gst_mm.registry import DATASETS

    ds_cfg = copy.deepcopy(cfg[f'{split}_dataloader'].dataset)
    ds_cfg['pipeline'] = []
    return DATASETS.build(ds_cfg)


def find_index(dataset, name: Optional[str], index: int) -> int:
    """Index of the sample named ``name`` (its ``img_id``), or ``index``."""
    if name is None:
        if not 0 <= index < len(dataset):
            raise IndexError(f'--index {index} outside the {len(dataset)} samples')
        return index
    for i in range(len(dataset)):
        if dataset.get_data_info(i).get('img_id') == name:
            return i
    raise KeyError(f'no sample named {name!r} in the data set')


def fit_sample_gaussians(info: Dict, cache_dir: str, data_root: Optional[str],
                         fit_cfg: Optional[Dict] = None) -> None:
    """Fit and cache the Gaussians of one data info (no-op when cached and valid)."""
    from gst_mm.splatting import GaussianCache, GaussianSample, fit_missing

    points = np.asarray(info['points'], np.float32).reshape(-1, 2)
    key = osp.relpath(info['img_path'], data_root) if data_root else info['img_path']
    summary = fit_missing([GaussianSample(key=key, img_path=info['img_path'], points=points)],
                          GaussianCache(cache_dir, data_root=data_root), dict(fit_cfg or {}),
                          progress=False)
    if summary.failed:
        raise RuntimeError(f'fitting the Gaussians of {info["img_path"]} failed: {summary.failed}')


def load_transport_sample(cfg, split: str = 'train', index: int = 0, name: Optional[str] = None,
                          plan: Optional[str] = None, augment: bool = False,
                          fit: bool = False) -> Dict:
    """Run the transport part of the pipeline on one sample.

    Returns:
        The pipeline results: ``img`` (BGR uint8), ``points`` (N, 2) px,
        ``gaussians``, ``transport_kernel``, ``img_path`` ...
    """
    from mmengine.dataset import Compose

    from gst_mm.splatting import GaussianCacheError, default_cache_dir

    dataset = build_dataset(cfg, split)
    idx = find_index(dataset, name, index)
    steps = transport_pipeline(cfg, plan, augment)
    pipeline = Compose(steps)
    info = dataset.get_data_info(idx)
    try:
        return pipeline(copy.deepcopy(info))
    except GaussianCacheError:
        if not fit:
            raise
    gauss = next(t for t in steps if _type(t) in GAUSSIAN_TYPES)
    data_root = gauss.get('data_root') or info.get('data_root')
    fit_sample_gaussians(info, gauss.get('cache_dir') or default_cache_dir(data_root), data_root,
                         _hook_fit_cfg(cfg))
    return pipeline(copy.deepcopy(info))


def _hook_fit_cfg(cfg) -> Dict:
    for hook in cfg.get('custom_hooks', None) or []:
        if _type(hook).split('.')[-1] == 'GSTPrecomputeHook':
            return dict(hook.get('fit_cfg') or {})
    return {}


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
    """A pose config: its per-joint plans, drawn by tools/visualize_pose_kernels.py."""
    import importlib.util

    if args.name is not None or args.plan is not None:
        print('visualize_transport.py: error: --name and --plan are crowd options; pose '
              'configs take --index (tools/visualize_pose_kernels.py)', file=sys.stderr)
        return 2
    path = osp.join(osp.dirname(osp.abspath(__file__)), 'visualize_pose_kernels.py')
    spec = importlib.util.spec_from_file_location('visualize_pose_kernels', path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool.run(args.config, args.cfg_options, args.split, args.index, args.augment,
                    fit=True, out=args.out)


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config

    import gst_mm  # noqa: F401
    from gst_mm.splatting import GaussianCacheError
    from gst_mm.utils import register_all_modules
    from gst_mm.visualization import save_rgb

    register_all_modules()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    pipeline = cfg.get('train_dataloader', {}).get('dataset', {}).get('pipeline', None) or []
    if any(_type(t).split('.')[-1] == 'LoadPoseTransportKernel' for t in pipeline):
        return pose_main(args)
    try:
        results = load_transport_sample(cfg, args.split, args.index, args.name, args.plan,
                                        args.augment, args.fit)
    except GaussianCacheError as err:
        sys.exit(f'{err}\nfit it with --fit, or the whole set with '
                 f'tools/precompute.py {args.config}')
    name = results.get('img_id') or osp.splitext(osp.basename(results['img_path']))[0]
    out = args.out or osp.join('work_dirs', f'transport_{name}.png')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    save_rgb(out, transport_figure(results))
    print(f'transport map of {results["img_path"]} ({results["transport_kernel"]}) '
          f'written to {osp.abspath(out)}')


if __name__ == '__main__':
    sys.exit(main())
