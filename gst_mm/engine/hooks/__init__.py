from .precompute_hook import GSTPrecomputeHook

__all__ = ['GSTPrecomputeHook']
