"""Renderers behind :func:`gst_mm.splatting.render.render`: the torch renderer (with the
compiled CPU kernel), the dense reference and gsplat's CUDA rasteriser."""
from .dense import _render_dense
from .gsplat_backend import _render_gsplat, gsplat_available, gsplat_status
from .torch_backend import (
    _render_torch,
    _SumSplat,
    _SumSplatCompiled,
    compiled_kernel_disabled,
    compiled_kernel_status,
)

__all__ = ['_render_dense', '_render_gsplat', 'gsplat_available', 'gsplat_status',
           '_render_torch', '_SumSplat', '_SumSplatCompiled', 'compiled_kernel_disabled',
           'compiled_kernel_status']
