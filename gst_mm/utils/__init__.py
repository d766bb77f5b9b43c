"""Utilities of the OpenMMLab adapter floor."""
from .checkpoint import setup_checkpoint_loading
from .compat import setup_visualizer_compat
from .dist import init_cpu_distributed
from .setup_env import register_all_modules

__all__ = ['register_all_modules', 'setup_checkpoint_loading', 'init_cpu_distributed',
           'setup_visualizer_compat']
