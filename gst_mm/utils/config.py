"""Config loading shared by ``tools/train.py``, ``tools/test.py`` and friends."""
from __future__ import annotations

import argparse
import os
import os.path as osp
from typing import Optional

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


def load_run_config(config: str, cfg_options: Optional[dict] = None,
                    work_dir: Optional[str] = None, launcher: str = 'none',
                    local_rank: int = 0) -> Config:
    """Read ``config``, apply ``--cfg-options``, set the launcher and work dir.

    The work dir defaults to ``./work_dirs/<config name>`` (OpenMMLab convention).

    Raises:
        FileNotFoundError: naming the config when it does not exist.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file {config} does not exist')
    os.environ.setdefault('LOCAL_RANK', str(local_rank))
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg
