"""Synthetic scenes of Gaussian-profile objects with known covariances (numpy; the one
scene generator).

Two scene models, one :class:`SyntheticScene`; the drawing primitives are in
:mod:`.synthetic_draw`:

* :func:`make_scene` (the ground-truth-recovery tests, ``tools/benchmark/splatting.py``):
  ellipses of log-uniform size placed uniformly, each an opaque blob
  ``alpha = exp(-d_M^2 / 2)`` of a random colour, composited ("over", object 0 in
  front) on a smooth Fourier background. :func:`recovery_errors` scores a fit on it.
* :func:`make_crowd_scene` (the synthetic crowd data set,
  :mod:`gst_mm.datasets.synthetic_crowd`): a textured background with distractor
  textures, objects (blobs of peak opacity ``opacity``, cut at Mahalanobis radius
  ``extent``) shrinking towards the top of the image (perspective), drawn far to near
  so near objects occlude far ones, thin occluders on top and sensor noise.

Both place objects by rejection with the same spacing rule (centres at least
``spacing * (s_i + s_j)`` apart, major stds). Everything is drawn from the ``rng`` /
seed given, so a scene is a pure function of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Protocol, Sequence, Tuple

import numpy as np

from .synthetic_draw import (
    add_distractors,
    add_occluders,
    draw_gaussian_blob,
    draw_gaussian_box,
    smooth_background,
    textured_background,
    to_uint8,
)


@dataclass
class SyntheticScene:
    """A synthetic image and the ground truth of its ``N`` objects.

    Attributes:
        image: ``(H, W, 3)`` uint8 **RGB**.
        points: ``(N, 2)`` float32 point annotations, px (x, y), pixel centre = +0.5:
            the object centres (displaced for a crowd scene with ``annotation_jitter``).
        covariances: ``(N, 2, 2)`` float32 px^2, the drawn blobs' Sigma.
        scales: ``(N, 2)`` float32 true stds px ``(major, minor)``.
        angles: ``(N,)`` float32 major-axis angle in [0, pi) from +x.
        colors: ``(N, 3)`` float32 RGB in [0, 1].
        opacities: ``(N,)`` float32 peak opacities (1 for :func:`make_scene`).
        centres: ``(N, 2)`` float32 the objects' true centres, px (x, y).
        background: ``(H, W, 3)`` float32 RGB in [0, 1]: the scene before the
            objects (and occluders and noise) were added.
    """
    image: np.ndarray
    points: np.ndarray
    covariances: np.ndarray
    scales: np.ndarray
    angles: np.ndarray
    colors: np.ndarray
    opacities: np.ndarray
    centres: np.ndarray = field(repr=False)
    background: np.ndarray = field(repr=False)


def covariances_from_axes(major: np.ndarray, minor: np.ndarray,
                          angle: np.ndarray) -> np.ndarray:
    """``R(angle) diag(major^2, minor^2) R(angle)^T``: float64 ``(N, 2, 2)`` px^2 from
    stds ``(N,)`` px and major-axis angles ``(N,)`` radians from +x (numpy twin of
    :func:`.gaussians.covariances_from_scales_angles`, kept in numpy so that the
    scenes do not depend on torch's ``cos``)."""
    major, minor, angle = (np.asarray(v, np.float64) for v in (major, minor, angle))
    c, s = np.cos(angle), np.sin(angle)
    v0, v1 = major ** 2, minor ** 2
    cov = np.empty(angle.shape + (2, 2))
    cov[..., 0, 0] = c * c * v0 + s * s * v1
    cov[..., 1, 1] = s * s * v0 + c * c * v1
    cov[..., 0, 1] = cov[..., 1, 0] = c * s * (v0 - v1)
    return cov


def _spaced(centres: Sequence[np.ndarray], stds: Sequence[float], c: np.ndarray, s: float,
            spacing: float) -> bool:
    """Whether a new centre ``c`` (major std ``s`` px) is at least ``spacing * (s_i +
    s)`` from every placed centre ``centres[i]`` (major std ``stds[i]``)."""
    if not centres:
        return True
    d = np.linalg.norm(np.asarray(centres) - c, axis=1)
    return not np.any(d < spacing * (np.asarray(stds) + s))


def grid_centres(side: int, pitch: float) -> np.ndarray:
    """``(side^2, 2)`` float64 centres px (x, y) of a regular ``side x side`` grid of
    cells ``pitch`` px wide, each centre in the middle of its cell (row-major)."""
    g = (np.arange(side) + 0.5) * pitch
    return np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)


# ----------------------------------------------------------------------------
# make_scene: uniform ellipses on a smooth background
# ----------------------------------------------------------------------------
def make_scene(height: int, width: int, num_objects: int, *,
               std_range: Tuple[float, float] = (2.0, 16.0),
               max_aspect: float = 1.5, min_separation: float = 1.2, seed: int = 0,
               max_tries: int = 200,
               centres: Optional[np.ndarray] = None,
               color_contrast: Optional[float] = None) -> SyntheticScene:
    """Draw a scene of ``num_objects`` ellipses (sizes px).

    Stds: minor ~ log-uniform in ``[lo, hi / aspect]``, aspect ~ U[1, max_aspect],
    major = minor * aspect (so both in ``std_range``); angles ~ U[0, pi); colours ~
    U[0, 1]^3. Centres are rejection-sampled so two objects are at least
    ``min_separation * (major_i + major_j)`` apart (cores distinct, tails overlap
    partially) and at least ``1.5 * major`` from the border; an object that does not
    fit after ``max_tries`` draws is shrunk by 10 % and retried. Each object is drawn
    within its 3.33-sigma box (:func:`.synthetic_draw.draw_gaussian_box`).

    ``centres (num_objects, 2)`` px, when given, places the objects there instead (no
    spacing rule: object size independent of spacing, for the scale benchmark).

    ``color_contrast`` (in [0, 1]), when given, makes low-contrast objects: each colour
    is the background at the object's centre plus ``color_contrast * v / |v|`` with
    ``v = 2u - 1`` (``u`` the same U[0, 1]^3 draw), i.e. an RGB distance of exactly
    ``color_contrast`` before clipping to [0, 1]; the random draws are those of the
    default scene.
    """
    rng = np.random.default_rng(seed)
    lo, hi = std_range
    background = smooth_background(height, width, rng)
    canvas = background.copy()
    pts, majors, minors, angs, cols = [], [], [], [], []
    if centres is not None and len(centres) != num_objects:
        raise ValueError(f'{len(centres)} centres for {num_objects} objects')
    if color_contrast is not None and not 0.0 <= color_contrast <= 1.0:
        raise ValueError(f'color_contrast must be in [0, 1], got {color_contrast}')
    for i in range(num_objects):
        aspect = rng.uniform(1.0, max_aspect)
        minor = math.exp(rng.uniform(math.log(lo), math.log(hi / aspect)))
        placed = centres is not None
        if placed:
            c = np.asarray(centres[i], np.float64)
            major = minor * aspect
        while not placed:
            major = minor * aspect
            margin = 1.5 * major
            if 2 * margin >= min(height, width):
                minor *= 0.9
                continue
            for _ in range(max_tries):
                c = rng.uniform([margin, margin], [width - margin, height - margin])
                if _spaced(pts, majors, c, major, min_separation):
                    placed = True
                    break
            if not placed:
                if minor <= 0.5 * lo:
                    raise ValueError(f'cannot place {num_objects} objects in a '
                                     f'{width}x{height} scene')
                minor *= 0.9
        pts.append(c)
        majors.append(major)
        minors.append(minor)
        angs.append(rng.uniform(0.0, math.pi))
        cols.append(rng.uniform(0.0, 1.0, size=3))
    covs = covariances_from_axes(majors, minors, angs)
    if color_contrast is not None and pts:
        ij = np.clip(np.floor(np.asarray(pts)).astype(np.int64)[:, ::-1], 0,
                     [height - 1, width - 1])
        under = background[ij[:, 0], ij[:, 1]]
        v = 2.0 * np.asarray(cols) - 1.0
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        cols = list(np.clip(under + color_contrast * v, 0.0, 1.0))
    # composite back to front ("over"), last object first, so object 0 is in front as
    # in gsplat's front-to-back index order
    for c, cov, col in reversed(list(zip(pts, covs, cols))):
        draw_gaussian_box(canvas, c, cov, col)
    points = np.asarray(pts, np.float32).reshape(-1, 2)
    return SyntheticScene(
        image=to_uint8(canvas * 255),
        points=points,
        covariances=covs.astype(np.float32),
        scales=(np.stack([majors, minors], 1).astype(np.float32) if pts
                else np.zeros((0, 2), np.float32)),
        angles=np.asarray(angs, np.float32),
        colors=np.asarray(cols, np.float32).reshape(-1, 3),
        opacities=np.ones(len(points), np.float32),
        centres=points.copy(),
        background=background.astype(np.float32))


# ----------------------------------------------------------------------------
# make_crowd_scene: a perspective crowd on a textured, cluttered background
# ----------------------------------------------------------------------------
class CrowdSettings(Protocol):
    """The settings :func:`make_crowd_scene` reads (sizes px); documented, with their
    defaults, by :class:`gst_mm.datasets.synthetic_crowd.SyntheticCrowdConfig`, which
    has them all."""
    near_std: float
    far_scale: float
    max_aspect: float
    min_spacing: float
    opacity_range: Tuple[float, float]
    extent: float
    distractors: bool
    occluders: bool
    noise_std: float
    annotation_jitter: float
    size_spread: float


def perspective_scale(y: np.ndarray, height: int, far_scale: float) -> np.ndarray:
    """Object size factor at row ``y`` px: ``far_scale`` on the top row rising
    linearly to 1 on the bottom row."""
    return far_scale + (1.0 - far_scale) * np.clip(np.asarray(y) / height, 0, 1)


def place_crowd(rng: np.random.Generator, width: int, height: int, n: int,
                cfg: CrowdSettings) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sample up to ``n`` centres (denser towards the top, partly clustered) and
    their shapes (major std ``near_std`` x perspective x U[0.85, 1.15] x, when
    ``size_spread > 1``, a log-uniform factor in ``[1 / size_spread, size_spread]``;
    aspect U[1, max_aspect], angle U[0, pi)). Returns float64 ``(centres (M, 2) px,
    covariances (M, 2, 2) px^2, scales (M, 2) (major, minor) px, angles (M,))`` with
    ``M <= n``."""
    n_clusters = int(rng.integers(1, 4))
    centres = np.stack([rng.uniform(0.15, 0.85, n_clusters) * width,
                        rng.uniform(0.1, 0.6, n_clusters) * height], 1)
    pts: List[np.ndarray] = []
    stds: List[float] = []
    margin = 2.0
    for _ in range(n * 30):
        if len(pts) >= n:
            break
        if rng.random() < 0.5:
            c = centres[rng.integers(0, n_clusters)]
            p = c + rng.normal(0, 0.15, 2) * [width, height]
        else:  # density rising towards the far (top) rows
            p = np.array([rng.uniform(0, width), height * rng.random() ** 1.5])
        if not (margin <= p[0] <= width - margin and margin <= p[1] <= height - margin):
            continue
        s = cfg.near_std * perspective_scale(p[1], height, cfg.far_scale) * rng.uniform(0.85, 1.15)
        spread = float(getattr(cfg, 'size_spread', 1.0))
        if spread > 1.0:  # sizes independent of position (draws nothing when off)
            s *= float(np.exp(rng.uniform(-np.log(spread), np.log(spread))))
        if not _spaced(pts, stds, p, s, cfg.min_spacing):
            continue
        pts.append(p)
        stds.append(float(s))
    points = np.asarray(pts, np.float64).reshape(-1, 2)
    major = np.asarray(stds, np.float64)
    m = len(points)
    aspect = rng.uniform(1.0, cfg.max_aspect, m)
    theta = rng.uniform(0, np.pi, m)
    minor = major / aspect
    return points, covariances_from_axes(major, minor, theta), np.stack([major, minor], 1), theta


def annotate_points(rng: np.random.Generator, centres: np.ndarray, cov: np.ndarray,
                    width: int, height: int, jitter: float) -> np.ndarray:
    """Point annotations of objects at ``centres`` ``(N, 2)`` px with covariances
    ``(N, 2, 2)``: each centre displaced by isotropic noise of std ``jitter`` times the
    object's geometric-mean std, kept inside the image. ``jitter == 0`` returns the
    centres and draws nothing from ``rng`` (scenes stay byte-identical)."""
    if jitter <= 0 or len(centres) == 0:
        return np.asarray(centres, np.float64)
    gstd = np.linalg.det(np.asarray(cov, np.float64)) ** 0.25  # sqrt(s1 * s2)
    noisy = centres + rng.normal(0.0, 1.0, centres.shape) * (jitter * gstd)[:, None]
    return np.clip(noisy, [0.0, 0.0], [width - 1e-3, height - 1e-3])


def make_crowd_scene(rng: np.random.Generator, width: int, height: int, n_objects: int,
                     cfg: CrowdSettings, textured: bool = True) -> SyntheticScene:
    """Render one crowd scene (see the module docstring) of up to ``n_objects``
    objects (fewer when the spacing rule cannot fit them). ``textured=False`` gives a
    flat grey background without occluders or noise (tests: object moments then equal
    the saved covariances)."""
    if textured:
        bg = textured_background(rng, height, width)
        if cfg.distractors:
            add_distractors(rng, bg)
    else:
        bg = np.full((height, width, 3), 128.0)
    points, cov, scales, angles = place_crowd(rng, width, height, n_objects, cfg)
    m = len(points)
    # objects contrast with the local ground: dark or bright heads
    colors = np.where(rng.random((m, 1)) < 0.7,
                      rng.uniform(0.0, 0.25, (m, 3)), rng.uniform(0.75, 1.0, (m, 3)))
    opac = rng.uniform(*cfg.opacity_range, m)
    img = bg.copy()
    for i in np.argsort(points[:, 1], kind='stable'):  # far (top) first
        draw_gaussian_blob(img, points[i], cov[i], colors[i] * 255.0, opac[i], cfg.extent)
    if textured:
        if cfg.occluders:
            add_occluders(rng, img)
        if cfg.noise_std > 0:
            img += rng.normal(0, cfg.noise_std, img.shape)
    annotated = annotate_points(rng, points, cov, width, height, cfg.annotation_jitter)
    return SyntheticScene(
        image=to_uint8(img), points=annotated.astype(np.float32),
        covariances=cov.astype(np.float32), scales=scales.astype(np.float32),
        angles=angles.astype(np.float32), colors=colors.astype(np.float32),
        opacities=opac.astype(np.float32), centres=points.astype(np.float32),
        background=(bg / 255.0).astype(np.float32))


# ----------------------------------------------------------------------------
# scoring
# ----------------------------------------------------------------------------
def recovery_errors(true_scales: np.ndarray, true_angles: np.ndarray, fit_scales: np.ndarray,
                    fit_angles: np.ndarray, min_aspect: float = 1.3) -> dict:
    """Ground-truth recovery errors of fitted Gaussians.

    Args:
        true_scales, fit_scales: ``(N, 2)`` stds px ``(major, minor)``.
        true_angles, fit_angles: ``(N,)`` major-axis angles (radians, mod pi).
        min_aspect: objects with true aspect >= this count for the orientation error.

    Returns:
        ``{'std_rel_err': median |s_fit - s_true| / s_true over both axes,
        'angle_err_deg': median orientation error of elongated objects (nan if none),
        'n_elongated': count}``.
    """
    rel = np.abs(fit_scales - true_scales) / true_scales
    elong = true_scales[:, 0] / true_scales[:, 1] >= min_aspect
    d = np.abs(fit_angles - true_angles) % np.pi
    d = np.minimum(d, np.pi - d)
    ang = float(np.degrees(np.median(d[elong]))) if elong.any() else float('nan')
    return {'std_rel_err': float(np.median(rel)), 'angle_err_deg': ang,
            'n_elongated': int(elong.sum())}


# ----------------------------------------------------------------------------
# make_plan_scene: where a click-pinned Gaussian should and should not suffice
# ----------------------------------------------------------------------------
PLAN_KINDS = ('centred', 'displaced', 'top', 'parts', 'overlap')


@dataclass
class PlanScene:
    """A scene for transport-plan quality (``tools/benchmark/soft_kernel.py``).

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB. clicks: ``(N, 2)`` px annotation points.
        labels: ``(H, W)`` int64, the object owning each pixel (its strongest part
            within 2 Mahalanobis stds), -1 for background.
        parts: per object, its ``(centre (2,), covariance (2, 2))`` parts px.
    """
    image: np.ndarray
    clicks: np.ndarray
    labels: np.ndarray
    parts: List[List[Tuple[np.ndarray, np.ndarray]]]


def object_labels(parts: Sequence[Sequence[Tuple[np.ndarray, np.ndarray]]], height: int,
                  width: int, radius: float = 2.0) -> np.ndarray:
    """``(H, W)`` owner of each pixel centre: the object whose part has the largest
    ``exp(-d_M^2 / 2)`` there, if some part of it is within ``radius``; else -1."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    best = np.full((height, width), np.exp(-0.5 * radius ** 2))
    labels = np.full((height, width), -1, np.int64)
    for k, obj in enumerate(parts):
        for c, cov in obj:
            inv = np.linalg.inv(np.asarray(cov, np.float64))
            dx, dy = xs - c[0], ys - c[1]
            a = np.exp(-0.5 * (inv[0, 0] * dx * dx + 2 * inv[0, 1] * dx * dy
                               + inv[1, 1] * dy * dy))
            win = a >= best
            best = np.where(win, a, best)
            labels[win] = k
    return labels


def make_plan_scene(kind: str, height: int = 192, width: int = 192, num_objects: int = 10, *,
                    std_range: Tuple[float, float] = (4.0, 10.0), seed: int = 0) -> PlanScene:
    """One scene of ``kind`` (objects of :func:`make_scene`, same background):

    * ``'centred'``: clicks at the object centres (the control);
    * ``'displaced'``: clicks uniform in the object's 1.5-std ellipse;
    * ``'top'``: clicks 1.8 stds above the centre (the top edge, like MPII's head);
    * ``'parts'``: each object is a body (the :func:`make_scene` ellipse) with a
      small head (std 0.35 of the body's, its own colour) on top, clicked at the head;
    * ``'overlap'``: clicks at the centres of objects placed 2.5x closer than the
      spacing rule (cores overlap).
    """
    if kind not in PLAN_KINDS:
        raise ValueError(f'unknown plan scene {kind!r}; expected one of {PLAN_KINDS}')
    sep = 0.45 if kind == 'overlap' else 1.2
    if kind == 'parts':  # room for the heads above the bodies
        sep = 1.6
    sc = make_scene(height, width, num_objects, std_range=std_range, max_aspect=1.5,
                    min_separation=sep, seed=seed)
    rng = np.random.default_rng(seed + 7919)
    centres, covs = sc.centres.astype(np.float64), sc.covariances.astype(np.float64)
    sy = np.sqrt(covs[:, 1, 1])
    parts = [[(c, cov)] for c, cov in zip(centres, covs)]
    image = sc.image
    if kind in ('centred', 'overlap'):
        clicks = centres.copy()
    elif kind == 'displaced':
        r = 1.5 * np.sqrt(rng.uniform(0, 1, len(centres)))
        t = rng.uniform(0, 2 * np.pi, len(centres))
        u = np.stack([r * np.cos(t), r * np.sin(t)], 1)
        roots = np.linalg.cholesky(covs)
        clicks = centres + np.einsum('nij,nj->ni', roots, u)
    elif kind == 'top':
        clicks = centres - np.stack([np.zeros_like(sy), 1.8 * sy], 1)
    else:
        canvas = image.astype(np.float64) / 255.0
        gstd = np.linalg.det(covs) ** 0.25
        clicks = []
        for i in reversed(range(len(centres))):
            hs = 0.35 * gstd[i]
            head = centres[i] - np.array([0.0, 1.6 * sy[i] + 1.5 * hs])
            cov_h = np.eye(2) * hs ** 2
            draw_gaussian_box(canvas, head, cov_h, rng.uniform(0.0, 1.0, size=3))
            parts[i].append((head, cov_h))
            clicks.append(head)
        clicks = np.asarray(clicks[::-1])
        image = to_uint8(canvas * 255)
    clicks = np.clip(clicks, 0.0, [width - 1e-3, height - 1e-3])
    return PlanScene(image, clicks.astype(np.float32), object_labels(parts, height, width),
                     parts)
