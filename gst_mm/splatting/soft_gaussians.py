"""Free Gaussians softly assigned to the annotations: the *soft* plan's data
(docs/soft_kernel.md).

A :class:`SoftGaussians` holds

* ``components`` — ``M`` Gaussians fitted freely to the image (means not pinned),
  input px, means ``(x, y)`` with pixel centres at +0.5;
* ``anchors`` — the ``N`` per-annotation Gaussians of the hard fit (mean = the
  click), kept so that code that wants one Gaussian per point (visualisers, the
  crop rule) still has it, and as the fallback component of an annotation that
  received no mass;
* the sparse mixture weights ``weight[e] = P(G_{comp[e]} | y_{pen[e]})``: entry ``e``
  says how much of annotation ``pen[e]``'s object is described by component
  ``comp[e]``. For every annotation the weights of its entries sum to 1, so
  ``P(x | y_n) = sum_e [pen[e] = n] weight[e] N(x; mu_comp[e], Sigma_comp[e])`` is a
  density (the soft form of the paper's eq. 7).

It moves like a :class:`.gaussians.Gaussians2D` (``transform`` moves every component
and anchor) and selects annotations like one (``subset`` keeps the chosen pens and
renumbers them), so the augmentation bookkeeping of the data pipeline is unchanged.
"""
from __future__ import annotations

from typing import Dict, Union

import numpy as np
import torch

from .gaussians import ArrayLike, Gaussians2D


class SoftGaussians:
    """``M`` components, ``N`` anchors and sparse weights ``P(G_m | y_n)``.

    Args:
        components: :class:`Gaussians2D` of ``M`` free Gaussians, input px.
        anchors: :class:`Gaussians2D` of the ``N`` annotations (means = points).
        comp, pen: ``(E,)`` int64 component and annotation index of each weight.
        weight: ``(E,)`` float32 ``P(G_comp | y_pen)`` (sums to 1 per annotation that
            has entries).
    """

    def __init__(self, components: Gaussians2D, anchors: Gaussians2D, comp: ArrayLike,
                 pen: ArrayLike, weight: ArrayLike) -> None:
        self.components = components
        self.anchors = anchors
        dev = components.means.device
        self.comp = torch.as_tensor(np.asarray(comp) if not isinstance(comp, torch.Tensor)
                                    else comp, dtype=torch.long, device=dev).reshape(-1)
        self.pen = torch.as_tensor(np.asarray(pen) if not isinstance(pen, torch.Tensor)
                                   else pen, dtype=torch.long, device=dev).reshape(-1)
        self.weight = torch.as_tensor(np.asarray(weight) if not isinstance(weight, torch.Tensor)
                                      else weight, dtype=torch.float32, device=dev).reshape(-1)
        e = self.comp.numel()
        if self.pen.numel() != e or self.weight.numel() != e:
            raise ValueError(f'comp, pen and weight must have one entry each, got '
                             f'{e}, {self.pen.numel()}, {self.weight.numel()}')
        if e and (int(self.comp.min()) < 0 or int(self.comp.max()) >= len(components)):
            raise ValueError(f'comp indices must lie in [0, {len(components)})')
        if e and (int(self.pen.min()) < 0 or int(self.pen.max()) >= len(anchors)):
            raise ValueError(f'pen indices must lie in [0, {len(anchors)})')

    # ------------------------------------------------------------------ like Gaussians2D
    def __len__(self) -> int:
        """Number of annotations ``N`` (what the per-point fields of a sample count)."""
        return len(self.anchors)

    @property
    def means(self) -> torch.Tensor:
        """``(N, 2)`` the annotation points (anchor means)."""
        return self.anchors.means

    @property
    def covariances(self) -> torch.Tensor:
        """``(N, 2, 2)`` the anchors' covariances."""
        return self.anchors.covariances

    @property
    def num_components(self) -> int:
        return len(self.components)

    def transform(self, A: ArrayLike, t: ArrayLike = (0.0, 0.0)) -> 'SoftGaussians':
        """Move every component and anchor by ``x -> A x + t``."""
        return SoftGaussians(self.components.transform(A, t), self.anchors.transform(A, t),
                             self.comp, self.pen, self.weight)

    def flip_x(self, width: float) -> 'SoftGaussians':
        return self.transform([[-1.0, 0.0], [0.0, 1.0]], [float(width), 0.0])

    def subset(self, idx: Union[ArrayLike, slice]) -> 'SoftGaussians':
        """Keep the annotations ``idx`` (indices, possibly repeated, or a bool mask),
        renumbered ``0..``: new annotation ``j`` gets the entries of old ``idx[j]``.
        Components are kept (those of dropped annotations lose their weights)."""
        n = len(self)
        dev = self.pen.device
        order = torch.arange(n)[idx] if isinstance(idx, slice) else torch.as_tensor(
            np.asarray(idx) if not isinstance(idx, torch.Tensor) else idx)
        if order.dtype == torch.bool:
            order = torch.nonzero(order).squeeze(1)
        order = order.long().to(dev).reshape(-1)
        from gst_mm.transport.soft_kernel import expand_groups
        new_pen, entry = expand_groups(self.pen, order, n)
        return SoftGaussians(self.components, self.anchors.subset(order),
                             self.comp.index_select(0, entry), new_pen,
                             self.weight.index_select(0, entry))

    def to(self, device: Union[str, torch.device]) -> 'SoftGaussians':
        return SoftGaussians(self.components.to(device), self.anchors.to(device),
                             self.comp.to(device), self.pen.to(device), self.weight.to(device))

    def numpy(self) -> Dict[str, np.ndarray]:
        """Arrays as stored in the cache (``soft_*`` names)."""
        c = self.components.numpy()
        return {'soft_means': c['means'], 'soft_covariances': c['covariances'],
                'soft_colors': c['colors'], 'soft_comp': self.comp.cpu().numpy(),
                'soft_pen': self.pen.cpu().numpy(),
                'soft_weight': self.weight.cpu().numpy().astype(np.float32)}

    # ------------------------------------------------------------------ derived
    def pen_mass(self) -> torch.Tensor:
        """``(N,)`` sum of each annotation's weights (1, or 0 without entries)."""
        return torch.zeros(len(self), device=self.weight.device).index_add(
            0, self.pen, self.weight)

    @classmethod
    def hard(cls, gaussians: Gaussians2D) -> 'SoftGaussians':
        """The hard plan written as a soft one: each annotation owns exactly its own
        Gaussian with weight 1 (its kernel equals :func:`gst_mm.transport.build_kernel`'s)."""
        n = len(gaussians)
        ar = torch.arange(n)
        return cls(gaussians, gaussians, ar, ar, torch.ones(n))

    def __repr__(self) -> str:
        return (f'SoftGaussians(points={len(self)}, components={self.num_components}, '
                f'entries={self.comp.numel()})')
