"""Config loading shared by ``tools/train.py``, ``tools/test.py`` and friends."""
from __future__ import annotations

import argparse
import os
import os.path as osp
from typing import Any, Callable, Optional

from mmengine.config import Config, DictAction


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--work-dir``, ``--cfg-options``, ``--launcher`` and ``--local_rank``."""
    parser.add_argument('--work-dir', help='the dir to save logs, checkpoints and metrics')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value (xxx=yyy format); '
        "lists as key=\"[a,b]\" or key=a,b; no white space inside values")
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch'], default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def map_strings(cfg: Config, fn: Callable[[str], str]) -> int:
    """Apply ``fn`` in place to every string value of ``cfg`` (through dicts,
    lists and tuples; keys untouched). Returns how many values ``fn`` changed."""
    count = 0

    def visit(value: Any) -> Any:
        nonlocal count
        if isinstance(value, str):
            out = fn(value)
            count += out != value
            return out
        if isinstance(value, dict):
            for key in list(value.keys()):
                value[key] = visit(value[key])
            return value
        if isinstance(value, list):
            return [visit(v) for v in value]
        if isinstance(value, tuple):
            return tuple(visit(v) for v in value)
        return value

    visit(cfg._cfg_dict)
    return count


def rebase_paths(cfg: Config, old_root: str, new_root: str) -> int:
    """Rewrite, in place, every string value of ``cfg`` that is ``old_root`` or a
    path under it (``old_root`` + ``/`` + rest) to the same path under ``new_root``.

    Matching is on whole path components (``data/mpii/`` rebases
    ``data/mpii/images/`` but not ``data/mpii_extra/``); a trailing ``/`` of
    either root is ignored, the rest of each path is kept as written.

    Returns:
        the number of values rewritten.
    """
    old = str(old_root).rstrip('/')
    new = str(new_root).rstrip('/')
    if not old:
        return 0

    def rebase(value: str) -> str:
        if value == old or value.startswith(old + '/'):
            return new + value[len(old):]
        return value

    return map_strings(cfg, rebase)


def replace_strings(cfg: Config, old: str, new: str) -> int:
    """Replace, in place, every string value of ``cfg`` equal to ``old`` by ``new``.
    Returns the number of values replaced."""
    return map_strings(cfg, lambda value: new if value == old else value)


def load_run_config(config: str, cfg_options: Optional[dict] = None,
                    work_dir: Optional[str] = None, launcher: str = 'none',
                    local_rank: int = 0) -> Config:
    """Read ``config``, apply ``--cfg-options``, set the launcher and work dir.

    **One-override data root.** MMEngine resolves config variables when the file
    is parsed, so overriding the top-level ``data_root`` alone would leave every
    path built from it (the data sets' ``data_root``, ``headbox_file``,
    ``gaussian_data_root``, ``gaussian_cache_dir``, the GST transform and hook
    arguments, ...) pointing at the old place. When ``cfg_options`` sets the
    top-level ``data_root`` and the config has a string ``data_root``, every
    string value of the config equal to the old ``data_root`` or a path under it
    is first rebased onto the new one (:func:`rebase_paths`), then the options
    are merged, so options that name a dependent path explicitly still win.
    Example: ``tools/train.py CFG --cfg-options data_root=/data/mpii/`` turns
    ``data/mpii/annotations/mpii_gt_val.mat`` into
    ``/data/mpii/annotations/mpii_gt_val.mat``. Paths that do not start with the
    old ``data_root`` (e.g. a cache directory given elsewhere) stay as they are.
    Likewise, an override of the top-level ``gaussian_cache_dir`` replaces every
    string equal to its old value (the transform's and the hook's ``cache_dir``).

    The work dir defaults to ``./work_dirs/<config name>`` (OpenMMLab convention).

    Every option key is checked first (:func:`check_cfg_options`): a typo is a
    :class:`ConfigOptionError`, a new top-level key a warning on stderr.

    Raises:
        FileNotFoundError: naming the config when it does not exist.
        ConfigOptionError: an option key that names nothing (one line, with the
            closest existing key).
    """
    import sys
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file {config} does not exist')
    os.environ.setdefault('LOCAL_RANK', str(local_rank))
    cfg = Config.fromfile(config)
    for line in check_cfg_options(cfg, cfg_options):
        print(f'warning: {line}', file=sys.stderr)
    if cfg_options:
        old_root = cfg.get('data_root', None)
        new_root = cfg_options.get('data_root', None)
        if isinstance(old_root, str) and isinstance(new_root, str) and old_root:
            rebase_paths(cfg, old_root, new_root)
        old_cache = cfg.get('gaussian_cache_dir', None)
        new_cache = cfg_options.get('gaussian_cache_dir', None)
        if isinstance(old_cache, str) and isinstance(new_cache, str) and old_cache:
            replace_strings(cfg, old_cache, new_cache)
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


class ConfigOptionError(ValueError):
    """A ``--cfg-options`` key that names nothing the config or its class accepts."""


def _accepted_arguments(node: dict) -> Optional[set]:
    """Keyword arguments of the class a config dict builds (its ``type``, looked up in
    the registries of MMEngine, MMPose and gst_mm; every ``__init__`` of its MRO), or
    ``None`` when unknown or when it takes arbitrary keywords of its own."""
    import inspect
    kind = node.get('type')
    cls = kind if inspect.isclass(kind) else None
    if isinstance(kind, str):
        from mmengine.registry import (
            DATA_SAMPLERS,
            DATASETS,
            EVALUATOR,
            HOOKS,
            LOG_PROCESSORS,
            LOOPS,
            METRICS,
            MODEL_WRAPPERS,
            MODELS,
            OPTIM_WRAPPERS,
            OPTIMIZERS,
            PARAM_SCHEDULERS,
            TRANSFORMS,
            VISBACKENDS,
            VISUALIZERS,
        )
        scope, _, name = kind.rpartition('.')
        for reg in (MODELS, DATASETS, TRANSFORMS, HOOKS, METRICS, OPTIMIZERS, OPTIM_WRAPPERS,
                    PARAM_SCHEDULERS, LOOPS, VISUALIZERS, VISBACKENDS, DATA_SAMPLERS,
                    EVALUATOR, LOG_PROCESSORS, MODEL_WRAPPERS):
            for root in (reg, *reg.children.values()):
                for child in (root, *root.children.values()):
                    if scope and child.scope != scope:
                        continue
                    found = child._module_dict.get(name)
                    if found is not None and inspect.isclass(found):
                        cls = found
                        break
                if cls is not None:
                    break
            if cls is not None:
                break
    if cls is None:
        return None
    names: set = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        for p in params:
            if p.kind is p.VAR_KEYWORD:
                if klass is cls and not any('__init__' in k.__dict__ for k in cls.__mro__[1:]):
                    return None  # takes anything, passes it nowhere we can see
                continue
            names.add(p.name)
    return names


#: keyword arguments of the data loader dicts (MMEngine passes them to torch's DataLoader)
_DATALOADER_KEYS = {'dataset', 'batch_size', 'shuffle', 'sampler', 'batch_sampler', 'num_workers',
                    'collate_fn', 'pin_memory', 'drop_last', 'timeout', 'worker_init_fn',
                    'multiprocessing_context', 'generator', 'prefetch_factor',
                    'persistent_workers', 'pin_memory_device'}


def check_cfg_options(cfg: Config, cfg_options: Optional[dict]) -> list:
    """Check every ``--cfg-options`` key against ``cfg`` before anything is built.

    A key whose parent exists but which is neither in the parent dict nor an argument
    of the class the dict builds (``type``) is a :class:`ConfigOptionError` naming the
    closest existing key (``train_dataloader.batch_sise`` -> ``batch_size``). A new
    top-level key is allowed (configs declare their own variables) but returned as a
    warning, with the closest existing key when one is close (``data_roots`` ->
    ``data_root``). List indices (``a.0.b``) are followed.

    Returns:
        the warning lines (empty when every key is known).
    """
    import difflib
    warnings_out = []
    for path in (cfg_options or {}):
        parts = str(path).split('.')
        node: Any = cfg._cfg_dict
        for depth, part in enumerate(parts):
            where = '.'.join(parts[:depth]) or '<top level>'
            if isinstance(node, (list, tuple)) and part.isdigit():
                if int(part) >= len(node):
                    raise ConfigOptionError(f'--cfg-options {path}: {where} has only '
                                            f'{len(node)} items')
                node = node[int(part)]
                continue
            if not isinstance(node, dict):
                break  # overriding inside a non-dict value: MMEngine replaces it
            if part in node:
                node = node[part]
                continue
            known = list(node.keys())
            if depth == 0:
                close = difflib.get_close_matches(part, known, n=1, cutoff=0.8)
                hint = f' (did you mean {close[0]!r}?)' if close else ''
                warnings_out.append(f'--cfg-options {path}: {part!r} is a new top-level key of '
                                    f'the config{hint}')
                break
            accepted = _accepted_arguments(node)
            if where.endswith('dataloader') and 'type' not in node:
                accepted = _DATALOADER_KEYS
            if accepted is not None and part in accepted:
                break
            if accepted is None and 'type' in node:
                break  # a class whose arguments cannot be listed: MMEngine decides
            pool = sorted(set(known) | (accepted or set()))
            close = difflib.get_close_matches(part, pool, n=1, cutoff=0.6)
            if accepted is None and not close:
                break  # an untyped dict gaining a new key (e.g. train_cfg.val_begin)
            hint = f'; the closest is {where}.{close[0]}' if close else ''
            raise ConfigOptionError(f'--cfg-options {path}: {where} has no key {part!r}{hint}')
    return warnings_out


def build_split_dataset(cfg: Config, split: str, pipeline: Optional[list] = None):
    """The ``split`` (``'train'`` | ``'val'`` | ``'test'``) data set of ``cfg`` with
    ``pipeline`` (default none: raw data infos through ``get_data_info``), in the
    config's default scope (the viewers' and tools' one way to get a sample).

    Raises:
        ValueError: the config has no ``<split>_dataloader``.
    """
    import copy

    from mmengine.registry import init_default_scope

    from gst_mm.registry import DATASETS
    loader = cfg.get(f'{split}_dataloader', None)
    if not loader:
        raise ValueError(f'the config has no {split}_dataloader')
    init_default_scope(cfg.get('default_scope', 'mmpose'))
    ds_cfg = copy.deepcopy(loader.dataset)
    ds_cfg['pipeline'] = list(pipeline or [])
    return DATASETS.build(ds_cfg)


def user_error_line(err: BaseException, cfg: Optional[Config] = None) -> Optional[str]:
    """One line for an error a user made (a missing file, a typo in an option, a bad
    annotation, a stale or misplaced cache), or ``None`` for anything else (a bug:
    keep the traceback). DataLoader workers wrap their exceptions in a multi-line
    message; its last line is the original one."""
    from gst_mm.engine.hooks.precompute_hook import GSTPrecomputeError
    from gst_mm.splatting import CacheKeyError, GaussianCacheError, ImageReadError
    if isinstance(err, GSTPrecomputeError):  # a list of images: one line, '; '-joined
        return '; '.join(ln.strip() for ln in str(err).splitlines() if ln.strip())
    if isinstance(err, (ConfigOptionError, CacheKeyError, GaussianCacheError, ImageReadError,
                        FileNotFoundError)):
        lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
        return lines[-1] if lines else type(err).__name__
    if cfg is not None and isinstance(err, (ValueError, TypeError)):
        from gst_mm.datasets.annotation_check import explain_annotation_error
        return explain_annotation_error(cfg, err)
    return None


def run_tool(prog: str, body: Callable[[], Any], cfg_holder: Optional[dict] = None) -> Any:
    """Run a tool's ``body``; a user error (:func:`user_error_line`) is one line
    ``<prog>: error: ...`` on stderr and exit code 2, anything else keeps its traceback.
    ``cfg_holder['cfg']``, when the body stores its config there, lets annotation errors
    be traced to the file, sample and field."""
    import sys
    try:
        return body()
    except (Exception, SystemExit) as err:  # noqa: BLE001 - re-raised unless a user error
        if isinstance(err, SystemExit):
            raise
        line = user_error_line(err, (cfg_holder or {}).get('cfg'))
        if line is None:
            raise
        print(f'{prog}: error: {line}', file=sys.stderr)
        sys.exit(2)


def short_run(cfg: Config, iters: int) -> Config:
    """Make ``cfg`` (in place) a short run of ``iters`` training iterations, whatever its
    loop (``tools/train.py --iters N``): iteration-based training with validation (if
    the config validates) and a checkpoint at the end, ``drop_last`` on the training
    loader (no tiny last batch), a log line for every step, and only the
    iteration-based learning-rate schedules (epoch-based ones, e.g. MMPose's
    MultiStepLR at epoch 170, would never fire)."""
    iters = int(iters)
    if iters <= 0:
        raise ValueError(f'--iters must be > 0, got {iters}')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters)
    cfg.train_dataloader.drop_last = True
    schedules = cfg.get('param_scheduler', None) or []
    if isinstance(schedules, dict):
        schedules = [schedules]
    cfg.param_scheduler = [dict(s, end=min(int(s.get('end', iters)), iters))
                           for s in schedules if s.get('by_epoch', True) is not True]
    hooks = cfg.get('default_hooks', None)
    if hooks is not None:
        if 'logger' in hooks:
            hooks.logger.interval = 1
        if 'checkpoint' in hooks:
            hooks.checkpoint.update(by_epoch=False, interval=iters)
    cfg.log_processor = dict(type='LogProcessor', window_size=1, by_epoch=False)
    return cfg
