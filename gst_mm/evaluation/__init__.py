"""Evaluation: the crowd-counting metric."""
from .metrics import *  # noqa: F401,F403
