"""Registered losses: counting (GST's L_BT and its baselines) and pose heatmap losses."""
from .counting_losses import BayesianLoss, DMCountLoss, GSTLoss, PseudoDensityL2Loss, UOTLoss
from .pose_losses import HeatmapOTLoss, JointTransportLoss

__all__ = ['GSTLoss', 'PseudoDensityL2Loss', 'BayesianLoss', 'DMCountLoss', 'UOTLoss',
           'HeatmapOTLoss', 'JointTransportLoss']
