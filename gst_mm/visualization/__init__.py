"""Drawing helpers: GST transport maps (paper Figure 5) and density maps."""
from .transport_vis import (
                            annotation_colors,
                            blend,
                            colorize_density,
                            compose_panels,
                            draw_points,
                            save_rgb,
                            transport_map,
                            upsample,
)

__all__ = [
    'annotation_colors', 'blend', 'colorize_density', 'compose_panels', 'draw_points',
    'save_rgb', 'transport_map', 'upsample'
]
