"""MMPose heads trained with GST losses (and the density head the OT baseline uses)."""
from .density_heatmap_head import DensityHeatmapHead
from .gst_heatmap_head import GSTHeatmapHead
from .joint_transport import joint_transport_loss, joint_transport_losses, nonnegative

__all__ = ['DensityHeatmapHead', 'GSTHeatmapHead', 'joint_transport_loss',
           'joint_transport_losses', 'nonnegative']
