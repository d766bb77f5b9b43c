"""Turn an MMPose top-down heatmap config into its GST version.

    python tools/gstify_config.py SRC_CONFIG OUT_CONFIG [--cache-dir DIR]
        [--fit-iterations 1000] [--mse-weight 0] [--nonneg relu] [--force]

``SRC_CONFIG`` is a config file or an MMPose package config
(``mmpose::body_2d_keypoint/topdown_heatmap/mpii/td-hm_res50_8xb64-210e_mpii-256x256.py``).
``OUT_CONFIG`` is a small config that inherits ``SRC_CONFIG`` through ``_base_``
and changes only what GST needs:

* ``model.head.type``: ``HeatmapHead`` -> ``gst_mm.GSTHeatmapHead`` (same
  forward / decode / flip test; per-joint transport loss, method.md 5);
* the train pipeline: ``gst_mm.LoadPoseTransportKernel`` inserted after
  ``TopdownAffine`` and ``GenerateTarget``, right before ``PackPoseInputs``;
* ``custom_hooks``: ``gst_mm.GSTPrecomputeHook`` fits the missing Gaussians of
  the training images before the run (``fit_cfg=dict(iterations=1000)``);
* ``custom_imports`` of gst_mm, and ``gaussian_cache_dir`` named once.

Every other setting (backbone, codec, schedule, evaluator, default scope) is
the source config's.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from typing import Any, Dict, List, Optional, Tuple

HEAD_TYPES = ('HeatmapHead', 'mmpose.HeatmapHead')
SUPPORTED_CODECS = ('MSRAHeatmap', 'mmpose.MSRAHeatmap')


def _type_of(step: Dict[str, Any]) -> str:
    t = step.get('type', '')
    return t.split('.')[-1] if isinstance(t, str) else getattr(t, '__name__', str(t))


def _index(pipeline: List[Dict[str, Any]], name: str, src: str) -> int:
    for i, step in enumerate(pipeline):
        if _type_of(step) == name:
            return i
    raise ValueError(f'{src}: the train pipeline has no {name} step; gstify_config.py '
                     'handles top-down heatmap pipelines (... TopdownAffine, '
                     'GenerateTarget, PackPoseInputs)')


def heatmap_stride(encoder: Dict[str, Any], src: str) -> int:
    """Input pixels per heatmap cell of an ``MSRAHeatmap`` codec config."""
    if isinstance(encoder, (list, tuple)):
        raise ValueError(f'{src}: GenerateTarget has several encoders; only one '
                         'MSRAHeatmap codec is supported')
    if encoder.get('type') not in SUPPORTED_CODECS:
        raise ValueError(f"{src}: codec {encoder.get('type')} is not supported (GST "
                         'kernels follow MSRAHeatmap\'s pixel <-> cell mapping)')
    (iw, ih), (hw, hh) = encoder['input_size'], encoder['heatmap_size']
    if iw % hw or ih % hh or iw // hw != ih // hh:
        raise ValueError(f'{src}: input_size {encoder["input_size"]} is not an integer '
                         f'multiple of heatmap_size {encoder["heatmap_size"]} '
                         'with the same stride on both axes')
    return iw // hw


def gst_train_pipeline(pipeline: List[Dict[str, Any]], cache_dir: str,
                       data_root: Optional[str], stride: int,
                       src: str = 'config') -> List[Dict[str, Any]]:
    """A copy of ``pipeline`` with ``LoadPoseTransportKernel`` before ``PackPoseInputs``."""
    affine = _index(pipeline, 'TopdownAffine', src)
    target = _index(pipeline, 'GenerateTarget', src)
    pack = _index(pipeline, 'PackPoseInputs', src)
    if not affine < target < pack:
        raise ValueError(f'{src}: expected TopdownAffine, GenerateTarget, PackPoseInputs '
                         'in this order in the train pipeline')
    if pipeline[affine].get('use_udp', False):
        raise ValueError(f'{src}: TopdownAffine(use_udp=True) is not supported')
    if any(_type_of(s) == 'LoadPoseTransportKernel' for s in pipeline):
        raise ValueError(f'{src}: the train pipeline already has LoadPoseTransportKernel')
    step = dict(type='gst_mm.LoadPoseTransportKernel', cache_dir=cache_dir,
                data_root=data_root, stride=stride)
    return [dict(s) for s in pipeline[:pack]] + [step] + [dict(s) for s in pipeline[pack:]]


def _plain(value: Any) -> Any:
    """ConfigDict / tuples -> plain Python containers printable as literals."""
    if hasattr(value, 'to_dict'):
        value = value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def gstify(src: str,
           out: Optional[str] = None,
           cache_dir: Optional[str] = None,
           fit_iterations: int = 1000,
           mse_weight: float = 0.0,
           nonneg: str = 'relu') -> str:
    """Text of the GST config derived from ``src`` (see module docstring).

    ``out`` is where the text will be written: a file ``src`` is then named
    relative to it in ``_base_`` (MMEngine resolves ``_base_`` paths from the
    config's own directory).
    """
    from mmengine.config import Config
    from mmengine.hub import get_config

    cfg = get_config(src) if '::' in src else Config.fromfile(src)
    head = cfg.model.get('head', None)
    if head is None or head.get('type') not in HEAD_TYPES:
        raise ValueError(f"{src}: model.head is {None if head is None else head.get('type')}; "
                         'gstify_config.py converts top-down HeatmapHead models')
    dataset = cfg.train_dataloader.dataset
    if 'pipeline' not in dataset:
        raise ValueError(f'{src}: train_dataloader.dataset has no pipeline (wrapped or '
                         'combined data sets are not supported)')
    pipeline = _plain(dataset.pipeline)
    target = pipeline[_index(pipeline, 'GenerateTarget', src)]
    stride = heatmap_stride(target['encoder'], src)
    data_root = dataset.get('data_root', None)
    if cache_dir is None:
        cache_dir = osp.join(data_root or '.', 'gst_cache')
    hooks = _plain(cfg.get('custom_hooks', None) or [])
    base_hooks = list(hooks)
    new_pipeline = gst_train_pipeline(pipeline, '__CACHE__', '__ROOT__', stride, src)
    for step in new_pipeline:
        if _type_of(step) == 'LoadPoseTransportKernel':
            step['cache_dir'], step['data_root'] = _Name('gaussian_cache_dir'), _Name(
                'gaussian_data_root')
    hook = dict(type='gst_mm.GSTPrecomputeHook', cache_dir=_Name('gaussian_cache_dir'),
                data_root=_Name('gaussian_data_root'),
                fit_cfg=dict(iterations=int(fit_iterations)), splits=('train', ))

    base = src
    if '::' not in src and out is not None:
        base = osp.relpath(osp.abspath(src), osp.dirname(osp.abspath(out)))

    lines = [
        f'"""GST version of {src}.',
        '',
        'Generated by tools/gstify_config.py: the same model, data and schedule, with',
        "GST's per-joint transport loss (gst_mm.GSTHeatmapHead), the kernel transform in",
        'the train pipeline and the Gaussian precompute hook (method.md 5).',
        '"""',
        f'_base_ = [{base!r}]',
        '',
        'custom_imports = dict(',
        "    imports=['gst_mm.models.heads', 'gst_mm.datasets.transforms.pose_transforms',",
        "             'gst_mm.engine.hooks'],",
        '    allow_failed_imports=False)',
        '',
        '# Gaussian cache: written by GSTPrecomputeHook / tools/precompute.py, read by the',
        '# pipeline transform. Keys are image paths relative to gaussian_data_root, which',
        "# must be the training set's data_root.",
        f'gaussian_cache_dir = {cache_dir!r}',
        f'gaussian_data_root = {data_root!r}',
        '',
        'model = dict(',
        '    head=dict(',
        "        type='gst_mm.GSTHeatmapHead',",
        '        transport_weight=1.0,',
        f'        mse_weight={float(mse_weight)!r},',
        f'        nonneg={nonneg!r}))',
        '',
        f'train_pipeline = {_fmt(new_pipeline)}',
        'train_dataloader = dict(dataset=dict(pipeline=train_pipeline))',
        '',
        f'custom_hooks = {_fmt(base_hooks + [hook])}',
        '',
    ]
    return '\n'.join(lines)


def _fmt(obj: Any, indent: int = 0, width: int = 88) -> str:
    """Python source of a config value: ``dict(k=v)`` style, one list item a line."""
    pad = ' ' * indent
    if isinstance(obj, dict) and all(isinstance(k, str) and k.isidentifier() for k in obj):
        items = [f'{k}={_fmt(v, indent + 4, width)}' for k, v in obj.items()]
        flat = 'dict(' + ', '.join(items) + ')'
        if indent + len(flat) <= width and '\n' not in flat:
            return flat
        inner = ',\n'.join(pad + '    ' + it for it in items)
        return 'dict(\n' + inner + ')'
    if isinstance(obj, list):
        if not obj:
            return '[]'
        inner = ',\n'.join(pad + '    ' + _fmt(v, indent + 4, width) for v in obj)
        return '[\n' + inner + ',\n' + pad + ']'
    if isinstance(obj, tuple):
        parts = [_fmt(v, indent, width) for v in obj]
        return '(' + ', '.join(parts) + (',)' if len(parts) == 1 else ')')
    return repr(obj)


class _Name:
    """A bare variable name inside a pretty-printed literal."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert an MMPose top-down heatmap config into its GST version')
    parser.add_argument('src', help='source config: a file or mmpose::<path>')
    parser.add_argument('out', help='GST config file to write')
    parser.add_argument('--cache-dir', help='Gaussian cache directory (default: '
                        '<train data_root>/gst_cache)')
    parser.add_argument('--fit-iterations', type=int, default=1000,
                        help='Gaussian fit iterations per image (method.md 5: 1000)')
    parser.add_argument('--mse-weight', type=float, default=0.0,
                        help='weight of the usual heatmap MSE term mixed into the loss')
    parser.add_argument('--nonneg', default='relu', choices=['relu', 'abs', 'softplus'],
                        help='how raw heatmaps are made non-negative for the transport loss')
    parser.add_argument('--force', action='store_true', help='overwrite OUT')
    return parser.parse_args(argv)


def main(argv=None) -> Tuple[str, str]:
    args = parse_args(argv)
    if osp.exists(args.out) and not args.force:
        sys.exit(f'{args.out} exists (use --force to overwrite)')
    text = gstify(args.src, args.out, cache_dir=args.cache_dir, fit_iterations=args.fit_iterations,
                  mse_weight=args.mse_weight, nonneg=args.nonneg)
    compile(text, args.out, 'exec')  # the output must be valid Python
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    tmp = args.out + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, args.out)
    print(f'wrote {args.out} (GST version of {args.src})')
    return args.out, text


if __name__ == '__main__':
    main()
