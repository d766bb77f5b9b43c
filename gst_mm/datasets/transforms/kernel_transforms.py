"""Per-sample transport kernels built in the data workers."""
from __future__ import annotations

from typing import Optional, Tuple

from mmcv.transforms import BaseTransform

from gst_mm.registry import TRANSFORMS
from gst_mm.splatting.soft_gaussians import SoftGaussians
from gst_mm.transport import (
    COST_KINDS,
    TransportKernel,
    build_kernel,
    build_soft_kernel,
    with_entry_costs,
)
from gst_mm.transport.kernel import DEFAULT_BG_RATIO, DEFAULT_CUTOFF, DEFAULT_MAX_STD


def build_sample_kernel(gaussians, img_shape: Tuple[int, int], stride: int,
                        **kernel_cfg) -> TransportKernel:
    """The transport kernel of one sample on its density grid.

    Args:
        gaussians: ``Gaussians2D`` in input px of the current (augmented) image, or
            the soft plan's ``SoftGaussians`` (its mixture kernel,
            :func:`gst_mm.transport.build_soft_kernel`).
        img_shape: ``(H, W)`` of the network input in px.
        stride: density-map stride; the grid is ``(H // stride, W // stride)``
            cells centred at ``stride * k + stride / 2`` px.
        kernel_cfg: ``cutoff``, ``bg_ratio``, ``min_std``, ``max_std``,
            ``background`` of :func:`gst_mm.transport.build_kernel`.
    """
    h, w = int(img_shape[0]), int(img_shape[1])
    grid = (h // stride, w // stride)
    if isinstance(gaussians, SoftGaussians):
        if kernel_cfg.get('background', True) is False:
            raise ValueError('the soft plan needs the background column (background=True)')
        cfg = {k: v for k, v in kernel_cfg.items() if k != 'background'}
        c = gaussians.components
        return build_soft_kernel(c.means, c.covariances, gaussians.comp, gaussians.pen,
                                 gaussians.weight, len(gaussians), grid, stride, **cfg)
    return build_kernel(gaussians.means, gaussians.covariances, grid, stride, **kernel_cfg)


@TRANSFORMS.register_module()
class LoadTransportKernel(BaseTransform):
    """Build ``results['transport_kernel']`` from ``results['gaussians']``.

    Placed after the augmentations (the Gaussians then match the network
    input) and before the pack step. Which plan (GST, heuristic, ground-truth
    scale) is decided by ``LoadCrowdGaussians``; this step only evaluates
    method.md 4 on the model's density grid.

    Args:
        stride: density-map stride of the model (px per cell).
        cutoff, bg_ratio, min_std, max_std, background: see
            :func:`gst_mm.transport.build_kernel` (``min_std`` defaults to the
            stride).
        cost: attach each stored entry's transport cost (``'sqdist'``: squared
            distance to the point in cells^2; ``'mahalanobis'``: ``d_M^2 / 2`` under
            the point's Gaussian, the anchor's for the soft plan), which
            ``GSTLoss(cost_weight > 0)`` needs; ``None`` (default): no costs.
    """

    def __init__(self, stride: int = 8, cutoff: float = DEFAULT_CUTOFF,
                 bg_ratio: float = DEFAULT_BG_RATIO,
                 min_std: Optional[float] = None, max_std: float = DEFAULT_MAX_STD,
                 background: bool = True, cost: Optional[str] = None) -> None:
        if cost is not None and cost not in COST_KINDS:
            raise ValueError(f'LoadTransportKernel: cost must be one of {COST_KINDS} or None, '
                             f'got {cost!r}')
        self.stride = int(stride)
        self.cost = cost
        self.kernel_cfg = dict(cutoff=cutoff, bg_ratio=bg_ratio, min_std=min_std,
                               max_std=max_std, background=background)

    def transform(self, results: dict) -> dict:
        gaussians = results.get('gaussians')
        if gaussians is None:
            raise KeyError(f"{results.get('img_path', '<unknown sample>')}: LoadTransportKernel "
                           'needs results["gaussians"]: put LoadCrowdGaussians first')
        kernel = build_sample_kernel(gaussians, results['img'].shape[:2], self.stride,
                                     **self.kernel_cfg)
        if self.cost is not None:  # a soft plan's means / covariances are its anchors'
            with_entry_costs(kernel, gaussians.means, gaussians.covariances, self.cost,
                             min_std=self.kernel_cfg['min_std'],
                             max_std=self.kernel_cfg['max_std'])
        results['transport_kernel'] = kernel
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(stride={self.stride}, {self.kernel_cfg}, '
                f'cost={self.cost!r})')
