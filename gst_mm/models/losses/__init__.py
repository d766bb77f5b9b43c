"""Registered counting losses: GST's L_BT and the baselines it is compared against."""
from .counting_losses import BayesianLoss, DMCountLoss, GSTLoss, PseudoDensityL2Loss, UOTLoss

__all__ = ['GSTLoss', 'PseudoDensityL2Loss', 'BayesianLoss', 'DMCountLoss', 'UOTLoss']
