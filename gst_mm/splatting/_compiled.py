"""Build and load the compiled CPU kernel of sum compositing (``csrc/sum_splat.cpp``).

The kernel is built **ahead of time** by ``tools/setup_env.sh``::

    python gst_mm/splatting/_compiled.py build      # [--force] [--verbose]
    python gst_mm/splatting/_compiled.py status     # exit 0 when it loads

with :func:`torch.utils.cpp_extension.load` (g++, ninja, OpenMP; no network) into
``gst_mm/splatting/csrc/build/<name>/<name>.so`` (git-ignored; ``GST_MM_EXT_DIR``
overrides the build root). ``<name>`` is ``gst_mm_sum_splat_<hash>`` of the source, the
compiler flags, the torch and Python versions and the machine type, so an edited
source or another torch gives another name and a stale build is never loaded.

:func:`load` only imports a finished build, it never compiles: the renderer
(:mod:`gst_mm.splatting.render`) uses the kernel when :func:`load` returns it and the
pure-torch path otherwise, logging the reason once. This file imports only the standard
library and torch, so the build step can run it as a script without importing gst_mm.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import importlib.util
import os
import os.path as osp
import platform
import shutil
import sys
from typing import Optional, Tuple

import torch

SOURCE = osp.join(osp.dirname(osp.abspath(__file__)), 'csrc', 'sum_splat.cpp')
CFLAGS = ('-O3', '-fopenmp', '-fno-trapping-math')
LDFLAGS = ('-fopenmp',)
PREFIX = 'gst_mm_sum_splat_'


def _environment_tag() -> str:
    """What besides the source a build depends on: torch, Python, machine."""
    return f'torch {torch.__version__}, python %d.%d, {platform.machine()}' % \
        sys.version_info[:2]


def module_name() -> str:
    """``gst_mm_sum_splat_<hash>`` of the source, flags, torch, Python and machine."""
    h = hashlib.sha256()
    with open(SOURCE, 'rb') as f:
        h.update(f.read())
    h.update('\0'.join([*CFLAGS, '|', *LDFLAGS, _environment_tag()]).encode())
    return PREFIX + h.hexdigest()[:16]


def build_root() -> str:
    """Directory holding the builds (``GST_MM_EXT_DIR`` or ``csrc/build``)."""
    return os.environ.get('GST_MM_EXT_DIR') or osp.join(osp.dirname(SOURCE), 'build')


def library_path(name: Optional[str] = None) -> str:
    """Path of the built module for ``name`` (default: the current source)."""
    name = name or module_name()
    return osp.join(build_root(), name, name + '.so')


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        h.update(f.read())
    return h.hexdigest()


def _import(name: str, path: str):
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _smoke_test(module) -> None:
    """One Gaussian at a pixel centre: alpha 0.999 there, gradients finite."""
    means = torch.tensor([[2.5, 1.5]])
    conics = torch.tensor([[1.0, 0.0, 1.0]])
    colors = torch.tensor([[1.0, 0.5, 0.25]])
    opac = torch.ones(1)
    spans = torch.tensor([[0, 1, 0, 5]], dtype=torch.int32)
    rgb, acc = module.forward(means, conics, colors, opac, spans, 3, 5)
    if abs(float(acc[1 * 5 + 2]) - 0.999) > 1e-6 or abs(float(rgb[7, 1]) - 0.4995) > 1e-6:
        raise RuntimeError(f'smoke test gave acc {acc.tolist()}')
    grads = module.backward(means, conics, colors, opac, spans, 3, 5,
                            torch.ones_like(rgb), torch.ones_like(acc))
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        raise RuntimeError('smoke test gave non-finite gradients')


@functools.lru_cache(maxsize=1)
def load() -> Tuple[Optional[object], str]:
    """``(module, reason)``: the built kernel for the current source (``None`` when it
    is not built or does not load, with the reason). Never compiles."""
    try:
        name = module_name()
    except OSError as e:
        return None, f'its source is missing ({e})'
    path = library_path(name)
    hint = 'run `bash tools/setup_env.sh` or `python gst_mm/splatting/_compiled.py build`'
    if not osp.exists(path):
        return None, (f'it is not built for this source and torch {torch.__version__} '
                      f'(expected {path}; {hint})')
    try:
        # a damaged file could crash the process in dlopen: check it against the digest
        # the build recorded first
        with open(path + '.sha256') as f:
            recorded = f.read().strip()
        if _digest(path) != recorded:
            return None, f'{path} does not match the digest recorded by its build ({hint})'
        module = _import(name, path)
        _smoke_test(module)
    except Exception as e:  # noqa: BLE001 - any load failure means "use the torch path"
        return None, f'{path} failed to load ({type(e).__name__}: {e})'
    return module, f'loaded {path}'


def _prune(keep: str) -> None:
    """Remove the builds of older sources for this environment (other environments'
    builds, e.g. another torch in another venv, are kept)."""
    root = build_root()
    for entry in os.listdir(root):
        path = osp.join(root, entry)
        if not entry.startswith(PREFIX) or entry == keep or not osp.isdir(path):
            continue
        try:
            with open(osp.join(path, 'environment')) as f:
                same = f.read().strip() == _environment_tag()
        except OSError:
            same = True  # no record (an interrupted build or an older layout)
        if same:
            shutil.rmtree(path, ignore_errors=True)


def build(force: bool = False, verbose: bool = False) -> str:
    """Compile the kernel (if not built yet, or ``force``) and return its path.

    Builds in ``<name>.tmp`` and renames the directory when the module imports and
    passes a smoke test, so an interrupted or failed build never leaves a loadable
    module behind."""
    name = module_name()
    final = osp.dirname(library_path(name))
    if not force and load()[0] is not None:
        return library_path(name)
    # ninja is installed in the environment, which need not be on PATH (setup_env.sh
    # runs .venv/bin/python directly)
    bindir = osp.dirname(sys.executable)
    if shutil.which('ninja') is None and osp.exists(osp.join(bindir, 'ninja')):
        os.environ['PATH'] = bindir + os.pathsep + os.environ.get('PATH', '')
    from torch.utils.cpp_extension import load as jit_load
    tmp = final + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        module = jit_load(name, [SOURCE], extra_cflags=list(CFLAGS),
                          extra_ldflags=list(LDFLAGS), build_directory=tmp, verbose=verbose)
        _smoke_test(module)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    built = osp.join(tmp, name + '.so')
    with open(built + '.sha256', 'w') as f:
        f.write(_digest(built) + '\n')
    with open(osp.join(tmp, 'environment'), 'w') as f:
        f.write(_environment_tag() + '\n')
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _prune(name)
    load.cache_clear()
    return library_path(name)


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(description='Build / check the compiled sum-compositing '
                                            'CPU kernel of gst_mm.')
    p.add_argument('command', choices=('build', 'status'))
    p.add_argument('--force', action='store_true', help='rebuild even if built')
    p.add_argument('--verbose', action='store_true')
    args = p.parse_args(argv)
    if args.command == 'status':
        module, reason = load()
        print(f'gst_mm compiled renderer: {reason}')
        return 0 if module is not None else 1
    try:
        build(force=args.force, verbose=args.verbose)
    except Exception as e:  # noqa: BLE001 - reported, the caller decides
        print(f'gst_mm compiled renderer: build failed ({type(e).__name__}: {e})',
              file=sys.stderr)
        return 1
    module, reason = load()
    print(f'gst_mm compiled renderer: {reason}')
    return 0 if module is not None else 1


if __name__ == '__main__':
    sys.exit(main())
