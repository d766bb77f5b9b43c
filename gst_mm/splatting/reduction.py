"""Reduction of free Gaussians onto the annotations ("pens"): the soft plan's
assignment (docs/soft_kernel.md, after the mixture-reduction view of Wang et al.
2025, "Gaussian Herding across Pens").

Pens: the ``N`` annotations ``y_n`` and the background. The cost of explaining
component ``G_m = N(mu_m, Sigma_m)`` by annotation ``n`` is the negative
log-likelihood of the click under ``G_m`` broadened by the annotation's own
(point-anchored) Gaussian ``A_n = N(y_n, Sigma_A,n)``:

    S_mn = Sigma_m + Sigma_A,n
    C_mn = (y_n - mu_m)^T S_mn^-1 (y_n - mu_m) / 2 + log det(S_mn) / 2
    C_m0 = d^2 / 2 + log det(S_mn*) / 2           (background; n* the cheapest pen)

i.e. the background explains a Gaussian as well as a click at the cut-off distance
``d`` (3, method.md 4) would. The plan ``pi`` solves the *semi-relaxed* entropic OT

    min_pi <pi, C> + tau KL(pi | a (x) 1)   s.t.  pi 1 = a   (pen marginal free)

whose solution is ``pi_mn = a_m softmax_n(-C_mn / tau)``: each Gaussian's mass
``a_m`` is fully shared out over the pens (responsibilities
``P(pen | G_m) = pi_mn / a_m`` sum to 1). Bayes' rule then gives the mixture weights
of each annotation ``P(G_m | y_n) = pi_mn / sum_m' pi_m'n``. Mass: ``a_m =
sqrt(det Sigma_m)`` (the Gaussian's footprint, so a mixture of pieces of an object
weighs them by area).

Sparsity: only the ``candidates`` nearest annotations of a Gaussian (a KD-tree
query, :func:`.knn.knn_query`) are costed, so the cost is ``O(M log N)``;
responsibilities below ``min_resp`` go to the background.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .knn import knn_query


@dataclass
class Reduction:
    """Result of :func:`reduce_onto_pens`.

    Attributes:
        comp, pen: ``(E,)`` int64 entries (component, annotation).
        resp: ``(E,)`` ``P(pen | G_comp)``; ``background (M,)`` = ``P(bg | G_m)``, so
            for every component ``background[m] + sum of its resp = 1``.
        weight: ``(E,)`` ``P(G_comp | y_pen)`` (sums to 1 per annotation with mass).
        pen_mass: ``(N,)`` mass each annotation received (0: no component).
    """
    comp: np.ndarray
    pen: np.ndarray
    resp: np.ndarray
    background: np.ndarray
    weight: np.ndarray
    pen_mass: np.ndarray


def component_mass(covariances: np.ndarray) -> np.ndarray:
    """``(M,)`` mass ``sqrt(det Sigma_m)`` px^2 of each Gaussian."""
    c = np.asarray(covariances, np.float64).reshape(-1, 2, 2)
    det = c[:, 0, 0] * c[:, 1, 1] - c[:, 0, 1] * c[:, 1, 0]
    return np.sqrt(np.maximum(det, 1e-12))


def pen_costs(comp_means: np.ndarray, comp_cov: np.ndarray, points: np.ndarray,
              anchor_cov: np.ndarray, candidates: int):
    """``(idx (M, k), cost (M, k))``: the ``k`` nearest annotations of each component
    and their costs ``C_mn`` (module docstring)."""
    _, idx = knn_query(points, comp_means, candidates)
    if idx.shape[1] == 0:
        return idx, np.zeros(idx.shape)
    s = comp_cov[:, None] + anchor_cov[idx]                      # (M, k, 2, 2)
    diff = points[idx] - comp_means[:, None]                     # (M, k, 2)
    det = s[..., 0, 0] * s[..., 1, 1] - s[..., 0, 1] * s[..., 1, 0]
    det = np.maximum(det, 1e-12)
    q = (s[..., 1, 1] * diff[..., 0] ** 2 - 2 * s[..., 0, 1] * diff[..., 0] * diff[..., 1]
         + s[..., 0, 0] * diff[..., 1] ** 2) / det
    return idx, 0.5 * q + 0.5 * np.log(det)


def reduce_onto_pens(comp_means: np.ndarray, comp_cov: np.ndarray, points: np.ndarray,
                     anchor_cov: np.ndarray, *, cutoff: float = 3.0, temperature: float = 1.0,
                     candidates: int = 8, min_resp: float = 1e-3) -> Reduction:
    """Soft responsibilities of ``M`` components for ``N`` annotations + background.

    Args:
        comp_means: ``(M, 2)`` px (x, y). comp_cov: ``(M, 2, 2)`` px^2.
        points: ``(N, 2)`` annotation points px. anchor_cov: ``(N, 2, 2)`` px^2, the
            point-anchored Gaussians (e.g. the hard fit's covariances).
        cutoff: ``d`` of the background cost. temperature: ``tau`` of the OT.
        candidates: annotations costed per component. min_resp: smaller
            responsibilities are moved to the background.
    """
    if not temperature > 0:
        raise ValueError(f'temperature must be > 0, got {temperature}')
    cm = np.asarray(comp_means, np.float64).reshape(-1, 2)
    cc = np.asarray(comp_cov, np.float64).reshape(-1, 2, 2)
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    ac = np.asarray(anchor_cov, np.float64).reshape(-1, 2, 2)
    m, n = len(cm), len(pts)
    mass = component_mass(cc)
    idx, cost = pen_costs(cm, cc, pts, ac, candidates)
    if idx.shape[1] == 0:
        e = np.zeros(0, np.int64)
        return Reduction(e, e, np.zeros(0), np.ones(m), np.zeros(0), np.zeros(n))
    best = cost.argmin(1)
    s_best = cc + ac[idx[np.arange(m), best]]
    det_best = np.maximum(s_best[:, 0, 0] * s_best[:, 1, 1] - s_best[:, 0, 1] ** 2, 1e-12)
    bg_cost = 0.5 * cutoff ** 2 + 0.5 * np.log(det_best)
    logits = -np.concatenate([cost, bg_cost[:, None]], 1) / temperature
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    resp, bg = p[:, :-1], p[:, -1].copy()
    small = resp < min_resp
    bg += np.where(small, resp, 0.0).sum(1)
    rows, cols = np.nonzero(~small)
    comp, pen, r = rows.astype(np.int64), idx[rows, cols].astype(np.int64), resp[rows, cols]
    flow = r * mass[comp]
    pen_mass = np.bincount(pen, weights=flow, minlength=n)
    weight = flow / np.maximum(pen_mass[pen], 1e-300)
    return Reduction(comp, pen, r, bg, weight, pen_mass)


