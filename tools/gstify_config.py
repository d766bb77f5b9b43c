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
