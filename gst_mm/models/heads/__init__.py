"""MMPose heads trained with GST losses (and the density head the OT baseline uses)."""
from .density_heatmap_head import DensityHeatmapHead
from .density_maps import DECODE_MODES, NONNEG_MODES, nonnegative, peak_mass
from .gst_heatmap_head import GSTHeatmapHead

__all__ = ['DensityHeatmapHead', 'GSTHeatmapHead', 'DECODE_MODES', 'NONNEG_MODES',
           'nonnegative', 'peak_mass']
