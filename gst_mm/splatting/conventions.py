"""gsplat's rendering conventions, shared by every renderer (see :mod:`.render`).

* the centre of pixel ``(row i, col j)`` is ``(j + 0.5, i + 0.5)`` px;
* a Gaussian's conic is the upper triangle ``(a, b, c)`` of ``Sigma^-1``;
* ``alpha = min(ALPHA_MAX, opacity * exp(-q))``, pairs with ``q < 0`` or
  ``alpha < ALPHA_THRESHOLD`` skipped (:func:`cutoff_radius`);
* alpha compositing stops before the transmittance drops to ``TRANSMITTANCE_MIN``.
"""
from __future__ import annotations

import math

import torch

ALPHA_THRESHOLD = 1.0 / 255.0
ALPHA_MAX = 0.999
TRANSMITTANCE_MIN = 1e-4
BACKENDS = ('auto', 'torch', 'gsplat', 'dense')
COMPOSITING = ('alpha', 'sum')


def cutoff_radius(opacity: float = 1.0) -> float:
    """Mahalanobis radius beyond which ``alpha < 1/255`` (3.33 for opacity 1)."""
    return math.sqrt(2.0 * math.log(max(opacity, ALPHA_THRESHOLD) / ALPHA_THRESHOLD))


def conics_from_covariances(covariances: torch.Tensor) -> torch.Tensor:
    """``(N, 3)`` conics ``(a, b, c)`` = upper triangle of ``Sigma^-1`` for
    ``covariances (N, 2, 2)`` px^2 (differentiable)."""
    sxx, sxy, syy = covariances[:, 0, 0], 0.5 * (covariances[:, 0, 1] + covariances[:, 1, 0]), \
        covariances[:, 1, 1]
    det = sxx * syy - sxy * sxy
    return torch.stack([syy / det, -sxy / det, sxx / det], -1)
