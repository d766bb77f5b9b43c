"""MMPose heads trained with GST losses."""
from .gst_heatmap_head import GSTHeatmapHead
from .joint_transport import joint_transport_loss, joint_transport_losses, nonnegative

__all__ = ['GSTHeatmapHead', 'joint_transport_loss', 'joint_transport_losses', 'nonnegative']
