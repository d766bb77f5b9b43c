"""A set of anisotropic 2D Gaussians in image space.

Conventions (gsplat's, see docs/architecture.md):

* means are ``(x, y)`` in **input pixels**; the centre of pixel ``(row i, col j)`` is
  ``(j + 0.5, i + 0.5)``.
* ``Sigma = R(theta) diag(s_major, s_minor)^2 R(theta)^T`` in px^2, with ``theta`` the
  angle of the major axis measured from the +x axis towards +y (image rows go down).
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]


def _as_tensor(value: ArrayLike, dtype: Optional[torch.dtype] = None,
               device: Optional[torch.device] = None) -> torch.Tensor:
    """Convert ``value`` to a tensor of ``dtype`` (default: a float tensor keeps its
    dtype, anything else becomes float32); tensors keep their autograd graph."""
    if dtype is None:
        is_float = isinstance(value, torch.Tensor) and value.is_floating_point()
        dtype = value.dtype if is_float else torch.float32
    if isinstance(value, torch.Tensor):
        return value.to(dtype=dtype, device=device if device is not None else value.device)
    return torch.as_tensor(np.asarray(value), dtype=dtype, device=device)


def covariances_from_scales_angles(scales: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Build covariances ``R diag(s)^2 R^T`` (differentiable).

    Args:
        scales: ``(N, 2)`` std in px along the rotated axes (first along ``angles``).
        angles: ``(N,)`` radians of the first axis from +x.

    Returns:
        ``(N, 2, 2)`` covariances in px^2.
    """
    c, s = torch.cos(angles), torch.sin(angles)
    v0, v1 = scales[:, 0] ** 2, scales[:, 1] ** 2
    sxx = c * c * v0 + s * s * v1
    syy = s * s * v0 + c * c * v1
    sxy = c * s * (v0 - v1)
    return torch.stack([torch.stack([sxx, sxy], -1), torch.stack([sxy, syy], -1)], -2)


class Gaussians2D:
    """``N`` anisotropic 2D Gaussians: means ``(N, 2)`` px (x, y), covariances
    ``(N, 2, 2)`` px^2, colours ``(N, 3)`` in [0, 1] (default mid grey).

    Tensors are float32 unless given as float tensors of another dtype; numpy input is
    converted. Tensors passed in keep their autograd graph, so a ``Gaussians2D`` built
    from parameters can be rendered differentiably.
    """

    def __init__(self, means: ArrayLike, covariances: ArrayLike,
                 colors: Optional[ArrayLike] = None) -> None:
        self.means = _as_tensor(means).reshape(-1, 2)
        dtype = self.means.dtype
        device = self.means.device
        n = self.means.shape[0]
        self.covariances = _as_tensor(covariances, dtype, device).reshape(n, 2, 2)
        if colors is None:
            colors = torch.full((n, 3), 0.5, dtype=dtype, device=device)
        self.colors = _as_tensor(colors, dtype, device).reshape(n, 3)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_scales_angles(cls, means: ArrayLike, scales: ArrayLike, angles: ArrayLike,
                           colors: Optional[ArrayLike] = None) -> 'Gaussians2D':
        """Gaussians from stds ``scales (N, 2)`` px (first along ``angles``) and
        ``angles (N,)`` radians."""
        m = _as_tensor(means)
        s = _as_tensor(scales, m.dtype, m.device).reshape(-1, 2)
        a = _as_tensor(angles, m.dtype, m.device).reshape(-1)
        return cls(m, covariances_from_scales_angles(s, a), colors)

    @classmethod
    def empty(cls) -> 'Gaussians2D':
        """A set with no Gaussians (an image without annotations)."""
        return cls(np.zeros((0, 2)), np.zeros((0, 2, 2)), np.zeros((0, 3)))

    # ------------------------------------------------------------------ derived
    def __len__(self) -> int:
        return int(self.means.shape[0])

    def _eig(self):
        cov = self.covariances.detach().double()
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        return torch.linalg.eigh(cov)  # ascending eigenvalues

    @property
    def scales(self) -> torch.Tensor:
        """``(N, 2)`` std in px along the principal axes, ``(major, minor)``."""
        vals, _ = self._eig()
        vals = vals.clamp_min(0).sqrt()
        return torch.stack([vals[:, 1], vals[:, 0]], -1).to(self.means.dtype)

    @property
    def angles(self) -> torch.Tensor:
        """``(N,)`` angle in [0, pi) of the major axis from +x (0 for isotropic)."""
        _, vecs = self._eig()
        major = vecs[:, :, 1]
        ang = torch.atan2(major[:, 1], major[:, 0]) % math.pi
        return ang.to(self.means.dtype)

    # ------------------------------------------------------------------ geometry
    def transform(self, A: ArrayLike, t: ArrayLike = (0.0, 0.0)) -> 'Gaussians2D':
        """Apply the affine map ``x -> A x + t`` (``A (2, 2)``, ``t (2,)`` px):
        ``mu -> A mu + t``, ``Sigma -> A Sigma A^T``; colours are kept."""
        A_ = _as_tensor(A, self.means.dtype, self.means.device).reshape(2, 2)
        t_ = _as_tensor(t, self.means.dtype, self.means.device).reshape(2)
        means = self.means @ A_.T + t_
        cov = A_ @ self.covariances @ A_.T
        return Gaussians2D(means, cov, self.colors)

    def flip_x(self, width: float) -> 'Gaussians2D':
        """Horizontal flip of an image ``width`` px wide: ``x -> width - x`` (pixel
        centres map onto pixel centres with the +0.5 convention)."""
        return self.transform([[-1.0, 0.0], [0.0, 1.0]], [float(width), 0.0])

    def subset(self, idx: Union[ArrayLike, slice]) -> 'Gaussians2D':
        """The Gaussians selected by ``idx`` (indices, boolean mask or slice)."""
        if not isinstance(idx, slice):
            idx = torch.as_tensor(np.asarray(idx) if not isinstance(idx, torch.Tensor) else idx)
            if idx.dtype != torch.bool:
                idx = idx.long()
            idx = idx.to(self.means.device)
        return Gaussians2D(self.means[idx], self.covariances[idx], self.colors[idx])

    def to(self, device: Union[str, torch.device]) -> 'Gaussians2D':
        """A copy on ``device``."""
        return Gaussians2D(self.means.to(device), self.covariances.to(device),
                           self.colors.to(device))

    def detach(self) -> 'Gaussians2D':
        """A copy without autograd history."""
        return Gaussians2D(self.means.detach(), self.covariances.detach(),
                           self.colors.detach())

    def numpy(self) -> Dict[str, np.ndarray]:
        """``{'means', 'covariances', 'colors'}`` as float32 numpy arrays."""
        return {k: getattr(self, k).detach().cpu().numpy().astype(np.float32)
                for k in ('means', 'covariances', 'colors')}

    def is_finite(self) -> torch.Tensor:
        """``(N,)`` bool: mean, covariance and colour finite and covariance positive
        definite."""
        cov = self.covariances.detach()
        det = cov[:, 0, 0] * cov[:, 1, 1] - cov[:, 0, 1] * cov[:, 1, 0]
        fin = (torch.isfinite(self.means.detach()).all(1)
               & torch.isfinite(cov).flatten(1).all(1)
               & torch.isfinite(self.colors.detach()).all(1))
        return fin & (det > 0) & (cov[:, 0, 0] > 0)

    def __repr__(self) -> str:
        return f'Gaussians2D(n={len(self)}, dtype={self.means.dtype}, device={self.means.device})'
