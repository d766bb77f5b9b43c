"""MMPose top-down heatmap config -> its GST (or OT-baseline) version, as config text.

The library behind ``tools/gstify_config.py`` (whose docstring says what the output
changes) and the pose benchmark's ``--gstify`` check: :func:`gstify` reads a source
config (a file or ``mmpose::<path>``) and returns the text of a small config that
inherits it through ``_base_``; :class:`UnsupportedConfig` names what cannot be
converted. The GST settings are one :class:`gst_mm.models.heads.recipe.PoseRecipe`.
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple

HEAD_TYPES = ('HeatmapHead', 'mmpose.HeatmapHead')
SUPPORTED_CODECS = ('MSRAHeatmap', 'mmpose.MSRAHeatmap')
#: heads with one heatmap per stage (intermediate supervision)
MULTI_STAGE_HEADS = ('CPMHead', 'MSPNHead', 'ViPNASHead')
LOSSES = ('gst', 'ot')
OT_LOSS = 'gst_mm.HeatmapOTLoss'


class UnsupportedConfig(ValueError):
    """The source config cannot be converted (the message names why)."""


def nonneg_choices() -> Tuple[Tuple[str, ...], str]:
    """``(modes, default)`` of ``GSTHeatmapHead``'s ``nonneg`` argument, read from
    :mod:`gst_mm.models.heads.density_maps` and the head's signature."""
    import inspect

    from gst_mm.models.heads.density_maps import NONNEG_MODES
    modes = tuple(NONNEG_MODES)
    try:
        from gst_mm.models.heads import GSTHeatmapHead
        default = inspect.signature(GSTHeatmapHead.__init__).parameters['nonneg'].default
    except (ImportError, KeyError):  # pragma: no cover - mmpose missing
        from gst_mm.models.heads import density_maps
        default = getattr(density_maps, 'DEFAULT_NONNEG', modes[0])
    return modes, default


def portable_base(src: str) -> str:
    """``_base_`` entry for ``src``: ``mmpose::<path>`` when ``src`` is (a file of)
    an installed MMPose package config, else the file's absolute path."""
    if '::' in src:
        return src
    path = osp.realpath(src)
    try:
        import mmpose
        root = osp.realpath(osp.join(osp.dirname(mmpose.__file__), '.mim', 'configs'))
    except ImportError:  # pragma: no cover
        root = None
    if root and path.startswith(root + os.sep):
        return 'mmpose::' + osp.relpath(path, root).replace(os.sep, '/')
    return osp.abspath(src)


def _type_of(step: Dict[str, Any]) -> str:
    t = step.get('type', '')
    return t.split('.')[-1] if isinstance(t, str) else getattr(t, '__name__', str(t))


def _index(pipeline: List[Dict[str, Any]], name: str, src: str) -> int:
    for i, step in enumerate(pipeline):
        if _type_of(step) == name:
            return i
    raise UnsupportedConfig(f'{src}: the train pipeline has no {name} step; gstify_config.py '
                     'handles top-down heatmap pipelines (... TopdownAffine, '
                     'GenerateTarget, PackPoseInputs)')


def heatmap_stride(encoder: Dict[str, Any], src: str) -> int:
    """Input pixels per heatmap cell of an ``MSRAHeatmap`` codec config."""
    if isinstance(encoder, (list, tuple)):
        raise UnsupportedConfig(f'{src}: GenerateTarget has several encoders; only one '
                         'MSRAHeatmap codec is supported')
    if 'UDP' in str(encoder.get('type')):
        raise UnsupportedConfig(
            f"{src}: codec {encoder.get('type')} (UDP) is not supported: GST kernels follow "
            "MSRAHeatmap's pixel <-> cell mapping (cell = pixel / stride) and TopdownAffine's "
            'non-UDP warp; use --loss ot, or an MSRAHeatmap config')
    if encoder.get('type') not in SUPPORTED_CODECS:
        raise UnsupportedConfig(f"{src}: codec {encoder.get('type')} is not supported (GST "
                                "kernels follow MSRAHeatmap's pixel <-> cell mapping)")
    (iw, ih), (hw, hh) = encoder['input_size'], encoder['heatmap_size']
    if iw % hw or ih % hh or iw // hw != ih // hh:
        raise UnsupportedConfig(f'{src}: input_size {encoder["input_size"]} is not an integer '
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
        raise UnsupportedConfig(f'{src}: expected TopdownAffine, GenerateTarget, PackPoseInputs '
                         'in this order in the train pipeline')
    if pipeline[affine].get('use_udp', False):
        raise UnsupportedConfig(f'{src}: TopdownAffine(use_udp=True) (UDP) is not supported: '
                                'GST kernels follow the non-UDP warp and MSRAHeatmap cells')
    if any(_type_of(s) == 'LoadPoseTransportKernel' for s in pipeline):
        raise UnsupportedConfig(f'{src}: the train pipeline already has LoadPoseTransportKernel')
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


def _load(src: str):
    from mmengine.config import Config
    from mmengine.hub import get_config

    if '::' not in src and not osp.isfile(src):
        raise UnsupportedConfig(f'{src}: no such config file')
    try:
        return get_config(src) if '::' in src else Config.fromfile(src)
    except (OSError, ImportError, SyntaxError, KeyError, ValueError) as e:
        raise UnsupportedConfig(f'{src}: cannot read the config ({type(e).__name__}: {e})')


def check_head(head: Optional[Dict[str, Any]], src: str) -> None:
    """Refuse heads other than MMPose's single-stage ``HeatmapHead``."""
    kind = None if head is None else head.get('type')
    if kind in HEAD_TYPES:
        return
    name = str(kind).split('.')[-1]
    if name in MULTI_STAGE_HEADS:
        raise UnsupportedConfig(
            f'{src}: model.head is {name}, a multi-stage head (one heatmap per stage, each '
            'supervised): not supported, gstify_config.py converts single-stage HeatmapHead '
            'models (docs/pose.md)')
    raise UnsupportedConfig(f'{src}: model.head is {kind}; gstify_config.py converts top-down '
                            'HeatmapHead models')


def gstify(src: str,
           out: Optional[str] = None,
           cache_dir: Optional[str] = None,
           recipe: Any = None,
           loss: str = 'gst') -> str:
    """Text of the GST (``loss='gst'``) or OT-baseline (``loss='ot'``) config
    derived from ``src`` (see module docstring).

    ``out`` (where the text will be written) is accepted for compatibility; the
    ``_base_`` entry does not depend on it (:func:`portable_base`). ``recipe``: the
    GST settings (default: ``PRESETS['default']``).

    Raises:
        UnsupportedConfig: naming what the source has that cannot be converted.
    """
    if loss not in LOSSES:
        raise UnsupportedConfig(f'--loss must be one of {LOSSES}, got {loss!r}')
    cfg = _load(src)
    if not hasattr(cfg, 'model') or not hasattr(cfg, 'train_dataloader'):
        raise UnsupportedConfig(f'{src}: no model / train_dataloader (not a training config)')
    head = cfg.model.get('head', None)
    check_head(head, src)
    base = portable_base(src)
    if loss == 'ot':
        return '\n'.join([
            f'"""OT-baseline version of {src}.',
            '',
            'Generated by tools/gstify_config.py --loss ot: the same model, data and',
            "schedule; the head (HeatmapHead's layers as gst_mm.DensityHeatmapHead, which",
            'decodes the softmax density) is trained with gst_mm.HeatmapOTLoss',
            '(distribution matching between the predicted and the target heatmap by',
            'entropic optimal transport, HDM-HPE-style) instead of KeypointMSELoss.',
            '"""',
            f'_base_ = [{base!r}]',
            '',
            "custom_imports = dict(imports=['gst_mm.models.heads', 'gst_mm.models.losses'],",
            '                      allow_failed_imports=False)',
            '',
            "model = dict(head=dict(type='gst_mm.DensityHeatmapHead', nonneg='softmax',",
            f"                       loss=dict(_delete_=True, type={OT_LOSS!r})))",
            '',
        ])

    from gst_mm.models.heads.recipe import PRESETS
    recipe = PRESETS['default'] if recipe is None else recipe
    dataset = cfg.train_dataloader.dataset
    if 'pipeline' not in dataset:
        raise UnsupportedConfig(f'{src}: train_dataloader.dataset has no pipeline (wrapped or '
                                'combined data sets are not supported)')
    pipeline = _plain(dataset.pipeline)
    target = pipeline[_index(pipeline, 'GenerateTarget', src)]
    stride = heatmap_stride(target['encoder'], src)
    data_root = dataset.get('data_root', None)
    top_root = cfg.get('data_root', None)
    # restate data_root (the one value --cfg-options data_root=... replaces) when the
    # base has none or the same one as its training set
    restate = isinstance(data_root, str) and (top_root is None or top_root == data_root)
    if cache_dir is None:
        cache_dir = osp.join(data_root or '.', 'gst_cache')
    hooks = _plain(cfg.get('custom_hooks', None) or [])
    base_hooks = list(hooks)
    new_pipeline = gst_train_pipeline(pipeline, '__CACHE__', '__ROOT__', stride, src)
    for step in new_pipeline:
        if _type_of(step) == 'LoadPoseTransportKernel':
            step['cache_dir'], step['data_root'] = _Name('gaussian_cache_dir'), _Name(
                'gaussian_data_root')
            step.update(recipe.transform())
    hook = dict(type='gst_mm.GSTPrecomputeHook', cache_dir=_Name('gaussian_cache_dir'),
                data_root=_Name('gaussian_data_root'),
                fit_cfg=dict(iterations=int(recipe.fit_iterations)), splits=('train', ))
    head_fields = recipe.head(mse_loss=_plain(head.get('loss', None)))

    paths = [
        '# Paths. The data sets, headbox file and Gaussian cache all live under data_root:',
        '# `--cfg-options data_root=/my/mpii/` (tools/train.py, test.py, precompute.py)',
        '# moves every path that starts with it. Cache keys are image paths relative to',
        "# gaussian_data_root, which must be the training set's data_root.",
    ]
    if restate:
        paths += [f'data_root = {data_root!r}',
                  f'gaussian_cache_dir = {cache_dir!r}',
                  'gaussian_data_root = data_root']
    else:
        paths += [f'gaussian_cache_dir = {cache_dir!r}',
                  f'gaussian_data_root = {data_root!r}']
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
        "    imports=['gst_mm.models.heads', 'gst_mm.models.losses',",
        "             'gst_mm.datasets.transforms.pose_transforms', 'gst_mm.engine.hooks'],",
        '    allow_failed_imports=False)',
        '',
        *paths,
        '',
        f'# GST settings: {recipe_name(recipe)} (docs/pose.md, "Which setting")',
        f'model = dict(\n    head={_fmt(head_fields, 4)})',
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


def recipe_name(recipe) -> str:
    """``"preset 'paper'"``, or the default preset's name with the changed fields."""
    import dataclasses

    from gst_mm.models.heads.recipe import PRESETS
    for name, preset in PRESETS.items():
        if recipe == preset:
            return f'preset {name!r}'
    base = PRESETS['default']
    changed = [f'{f.name}={getattr(recipe, f.name)!r}' for f in dataclasses.fields(recipe)
               if getattr(recipe, f.name) != getattr(base, f.name)]
    return "preset 'default' with " + ', '.join(changed)
