"""Distributed training on machines without CUDA.

MMEngine 0.10.7's ``pytorch`` launcher calls ``torch.cuda.set_device``
unconditionally and its DDP wrapper passes ``device_ids=[LOCAL_RANK]``, which
DDP rejects for CPU modules. On a CPU-only machine we initialise a ``gloo``
process group ourselves (MMEngine then skips its own ``init_dist``) and build
``MMDistributedDataParallel`` with ``device_ids=None``.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_cpu_distributed(cfg, launcher: str) -> bool:
    """Prepare ``cfg`` for ``launcher='pytorch'`` on a CPU-only machine.

    Args:
        cfg: the MMEngine ``Config`` about to build a Runner (changed in place).
        launcher: the ``--launcher`` value.

    Returns:
        True when the gloo process group was initialised here.
    """
    if launcher != 'pytorch' or torch.cuda.is_available():
        return False
    for var in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        if var not in os.environ:
            raise RuntimeError(
                f'--launcher pytorch needs {var} in the environment: start the '
                'script with torchrun (see tools/dist_train.sh)')
    if not dist.is_initialized():
        timeout = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('timeout', 1800)
        import datetime

        dist.init_process_group(backend='gloo', timeout=datetime.timedelta(seconds=timeout))
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    env_cfg = cfg.get('env_cfg', {})
    env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    cfg.env_cfg = env_cfg
    return True
