"""Registered models: losses (GST and baselines), the MMPose GST head, the counter."""
from .backbones import *  # noqa: F401,F403
from .counters import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
