"""Loading MMEngine checkpoints under torch >= 2.6 (``weights_only`` default).

MMEngine 0.10.7 calls ``torch.load(filename, map_location=...)`` for local files.
Since torch 2.6 that means ``weights_only=True``, and every checkpoint MMEngine
saves (message hub with ``HistoryBuffer``s and numpy arrays, dataset meta) fails
with ``Unsupported global``. :func:`setup_checkpoint_loading` replaces MMEngine's
local-file loader, once, for every gst_mm tool and config (it runs at
``import gst_mm``):

1. load with ``weights_only=True`` and an allow-list of the types MMEngine and
   MMPose checkpoints contain (numpy arrays/scalars/dtypes, ``HistoryBuffer``,
   ``ConfigDict``, ``getattr`` for HistoryBuffer's method table);
2. if the file still holds another global, it is the user's own local file:
   retry with ``weights_only=False`` and log a warning naming the global.
   Set ``GST_MM_STRICT_CHECKPOINTS=1`` to raise instead.
"""
from __future__ import annotations

import logging
import os
import os.path as osp
import pickle
from typing import Any, List

import numpy as np
import torch

_INSTALLED = False


def _numpy_safe_globals() -> List[Any]:
    """numpy objects that pickled arrays, scalars and dtypes reference."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    found: List[Any] = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    found += [type(np.dtype(t)) for t in np.sctypeDict.values()]
    found += list({t for t in np.sctypeDict.values() if isinstance(t, type)})
    return found


def checkpoint_safe_globals() -> List[Any]:
    """Allow-list for ``torch.load(weights_only=True)`` of MMEngine checkpoints."""
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer

    # ``getattr``: HistoryBuffer pickles its statistics-method table as
    # ``getattr(HistoryBuffer, 'min')``; the weights-only unpickler still calls
    # (REDUCE) nothing outside this list.
    return _numpy_safe_globals() + [HistoryBuffer, ConfigDict, getattr]


def load_local_checkpoint(filename: str, map_location: Any = None) -> Any:
    """Load a local checkpoint file (MMEngine's ``''`` scheme).

    Args:
        filename: path of the file.
        map_location: as in :func:`torch.load`.

    Raises:
        FileNotFoundError: naming the file when it does not exist.
        RuntimeError: naming the file when it is not a readable checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found.')
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if os.environ.get('GST_MM_STRICT_CHECKPOINTS', '0') == '1':
            raise RuntimeError(
                f'checkpoint {filename} holds objects outside the allow-list: {err}') from err
        from mmengine.logging import print_log

        first_line = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        print_log(
            f'checkpoint {filename}: {first_line}; loading it with '
            'weights_only=False (trusted local file)',
            logger='current',
            level=logging.WARNING)
        return torch.load(filename, map_location=map_location, weights_only=False)


def setup_checkpoint_loading() -> None:
    """Install :func:`load_local_checkpoint` as MMEngine's local-file loader (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
    _INSTALLED = True
