"""Narrow compatibility shims for the verified stack (numpy 2 + MMPose 1.3.2).

* MMPose 1.3.2's ``PoseLocalVisualizer._draw_instances_kpts`` passes each keypoint's
  radius as a one-element array (``radius=np.array([self.radius])``) and its OpenCV
  backend then calls ``int(radius)``, which numpy 2 refuses ("only 0-dimensional
  arrays can be converted to Python scalars"). Every ``tools/test.py --show-dir`` of a
  model whose keypoints pass the draw threshold aborted. :func:`setup_visualizer_compat`
  wraps ``OpencvBackendVisualizer.draw_circles`` so that a size-1 radius array is read
  as its scalar; every other call is passed through unchanged. Installed by
  ``import gst_mm`` (idempotent); a no-op where the backend already accepts it.
"""
from __future__ import annotations

import functools

_INSTALLED = False


def setup_visualizer_compat() -> bool:
    """Install the ``draw_circles`` radius shim (see module docstring). Returns True
    when it is installed (now or before), False when MMPose's visualiser is absent."""
    global _INSTALLED
    if _INSTALLED:
        return True
    try:
        from mmpose.visualization.opencv_backend_visualizer import OpencvBackendVisualizer
    except ImportError:
        return False
    import numpy as np
    original = OpencvBackendVisualizer.draw_circles

    @functools.wraps(original)
    def draw_circles(self, center, radius, *args, **kwargs):
        if getattr(self, 'backend', None) == 'opencv' and isinstance(radius, np.ndarray) \
                and radius.size == 1:
            radius = radius.reshape(()).item()
        return original(self, center, radius, *args, **kwargs)

    draw_circles.__gst_mm_shim__ = True
    OpencvBackendVisualizer.draw_circles = draw_circles
    _INSTALLED = True
    return True
