"""Deterministic synthetic crowd scenes with known object covariances.

Pure module (numpy + OpenCV; no mmengine). ``tools/make_synthetic_crowd.py`` is
its command line. Each scene is a textured background with distractor
textures, ``N`` objects drawn as anisotropic Gaussian blobs (alpha profile
``opacity * exp(-d_M^2 / 2)`` with the object's covariance ``Sigma``) whose size
shrinks towards the top of the image (perspective), drawn far-to-near so near
objects occlude far ones, a few thin occluders on top, and sensor noise.
Annotations are the blob centres; the true ``Sigma`` of every blob is saved,
so fitted Gaussians and ground-truth-scale kernels can be checked against it.

Image ``k`` of a data set depends only on ``(seed, k)``: the same call always
writes byte-identical files.
"""
from __future__ import annotations

import json
import os.path as osp
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .layout import CrowdAnnotation, atomic_write_bytes, write_sample, write_split


@dataclass
class SyntheticCrowdConfig:
    """Scene and data-set parameters (sizes in pixels).

    Attributes:
        num_images: images in the data set.
        min_size, max_size: each side uniform in ``[min_size, max_size]``.
        min_objects, max_objects: requested objects per image (fewer are
            placed when the image is too crowded for the spacing rule).
        near_std: major-axis std (px) of an object on the bottom row.
        far_scale: size factor on the top row relative to the bottom row.
        max_aspect: major / minor std ratio drawn uniformly in ``[1, max_aspect]``.
        min_spacing: centres at least ``min_spacing * (s_i + s_j)`` apart
            (major stds), so occlusion stays partial.
        opacity_range: peak opacity of a blob.
        extent: blobs are drawn out to this Mahalanobis radius.
        distractors: textured patches / stripes / lines in the background.
        occluders: thin bars drawn over the objects.
        noise_std: additive Gaussian sensor noise (grey levels).
        annotation_jitter: point annotations are the object centres displaced by
            isotropic Gaussian noise of std ``annotation_jitter * sqrt(s1 * s2)`` (the
            object's geometric-mean std), like real head annotations that are not
            clicked on the exact centre. 0 (default): exact centres. The image does
            not depend on it; covariances stay the objects' true shapes.
        split_fractions: train / val / test fractions.
        seed: master seed.
        jpeg_quality: JPEG quality of written images.
    """
    num_images: int = 60
    min_size: int = 256
    max_size: int = 384
    min_objects: int = 20
    max_objects: int = 150
    near_std: float = 6.0
    far_scale: float = 0.45
    max_aspect: float = 1.8
    min_spacing: float = 1.2
    opacity_range: Tuple[float, float] = (0.85, 1.0)
    extent: float = 4.0
    distractors: bool = True
    occluders: bool = True
    noise_std: float = 2.0
    annotation_jitter: float = 0.0
    split_fractions: Tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        # configs and JSON give lists: compare equal to the tuple defaults
        self.opacity_range = tuple(float(v) for v in self.opacity_range)
        self.split_fractions = tuple(float(v) for v in self.split_fractions)


@dataclass
class SyntheticScene:
    """One generated scene.

    Attributes:
        image: uint8 ``(H, W, 3)`` **RGB**.
        points: float32 ``(N, 2)`` (x, y) px, pixel centres at +0.5: the point
            annotations (the centres, displaced when ``annotation_jitter > 0``).
        covariances: float32 ``(N, 2, 2)`` px^2 (the drawn blobs' Sigma).
        colors: float32 ``(N, 3)`` RGB in [0, 1].
        opacities: float32 ``(N,)`` peak opacities.
        background: float32 ``(H, W, 3)`` RGB in [0, 255]: the scene before
            objects, occluders and noise were added.
        centres: float32 ``(N, 2)`` the objects' true centres (x, y) px.
    """
    image: np.ndarray
    points: np.ndarray
    covariances: np.ndarray
    colors: np.ndarray
    opacities: np.ndarray
    background: np.ndarray = field(repr=False)
    centres: Optional[np.ndarray] = field(default=None, repr=False)


# ----------------------------------------------------------------------------
# drawing primitives
# ----------------------------------------------------------------------------
def draw_gaussian_blob(canvas: np.ndarray, mean: Sequence[float], cov: np.ndarray,
                       color: Sequence[float], opacity: float = 1.0,
                       extent: float = 4.0) -> None:
    """Alpha-composite one Gaussian blob onto ``canvas`` (float ``(H, W, C)``) in
    place: ``alpha(x) = opacity * exp(-d_M^2(x) / 2)`` evaluated at pixel centres
    ``(j + 0.5, i + 0.5)`` within Mahalanobis radius ``extent``;
    ``canvas = (1 - alpha) canvas + alpha color``."""
    h, w = canvas.shape[:2]
    cov = np.asarray(cov, np.float64)
    r = extent * np.sqrt(np.linalg.eigvalsh(cov).max())
    mx, my = float(mean[0]), float(mean[1])
    x0, x1 = max(0, int(np.floor(mx - r))), min(w, int(np.ceil(mx + r)) + 1)
    y0, y1 = max(0, int(np.floor(my - r))), min(h, int(np.ceil(my + r)) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    xs = np.arange(x0, x1) + 0.5 - mx
    ys = np.arange(y0, y1) + 0.5 - my
    dx, dy = np.meshgrid(xs, ys)
    inv = np.linalg.inv(cov)
    q = inv[0, 0] * dx * dx + 2 * inv[0, 1] * dx * dy + inv[1, 1] * dy * dy
    alpha = np.where(q <= extent ** 2, opacity * np.exp(-0.5 * q), 0.0)[..., None]
    patch = canvas[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1] = (1 - alpha) * patch + alpha * np.asarray(color, np.float64)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    """Zero-mean unit-std smooth noise ``(H, W)`` (blurred white noise)."""
    import cv2
    n = rng.standard_normal((h, w)).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    return (n - n.mean()) / (n.std() + 1e-6)


def textured_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth coloured ground with multi-scale texture, float ``(H, W, 3)``
    RGB in [0, 255]."""
    base = rng.uniform(60, 190, size=3)
    grad = rng.uniform(-40, 40, size=3)
    yy = np.linspace(0, 1, h)[:, None, None]
    img = np.broadcast_to(base + grad * yy, (h, w, 3)).astype(np.float64).copy()
    for sigma, amp in ((max(h, w) / 8, 25.0), (6.0, 10.0), (1.5, 5.0)):
        tint = rng.uniform(0.5, 1.0, size=3)
        img += amp * _smooth_noise(rng, h, w, sigma)[..., None] * tint
    return img


def add_distractors(rng: np.random.Generator, img: np.ndarray) -> None:
    """Draw unannotated textures in place: striped patches, checker patches
    and random line segments (none of them blob-like)."""
    import cv2
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(2, 6))):
        pw, ph = int(rng.integers(w // 10, w // 3)), int(rng.integers(h // 10, h // 3))
        x0, y0 = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
        yy, xx = np.mgrid[0:ph, 0:pw]
        kind = rng.integers(0, 2)
        if kind == 0:
            period, ang = rng.uniform(4, 12), rng.uniform(0, np.pi)
            pattern = np.sin(2 * np.pi * (xx * np.cos(ang) + yy * np.sin(ang)) / period)
        else:
            cell = int(rng.integers(3, 9))
            pattern = ((xx // cell + yy // cell) % 2) * 2.0 - 1.0
        amp = rng.uniform(15, 40)
        tint = rng.uniform(0.3, 1.0, size=3)
        img[y0:y0 + ph, x0:x0 + pw] += amp * pattern[..., None] * tint
    for _ in range(int(rng.integers(3, 9))):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        color = tuple(float(c) for c in rng.uniform(0, 255, size=3))
        cv2.line(img, p0, p1, color, int(rng.integers(1, 3)), lineType=cv2.LINE_AA)


def add_occluders(rng: np.random.Generator, img: np.ndarray) -> None:
    """Draw a few thin semi-opaque bars (poles, railings) in place."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(1, 4))):
        bw = int(rng.integers(2, 5))
        color = rng.uniform(20, 235, size=3)
        a = rng.uniform(0.6, 0.9)
        if rng.random() < 0.6:
            x0 = int(rng.integers(0, w - bw))
            y0 = int(rng.integers(0, h // 2))
            img[y0:, x0:x0 + bw] = (1 - a) * img[y0:, x0:x0 + bw] + a * color
        else:
            y0 = int(rng.integers(h // 3, h - bw))
            img[y0:y0 + bw, :] = (1 - a) * img[y0:y0 + bw, :] + a * color


# ----------------------------------------------------------------------------
# scenes
# ----------------------------------------------------------------------------
def perspective_scale(y: np.ndarray, height: int, far_scale: float) -> np.ndarray:
    """Object size factor at row ``y`` px: ``far_scale`` on the top row rising
    linearly to 1 on the bottom row."""
    return far_scale + (1.0 - far_scale) * np.clip(np.asarray(y) / height, 0, 1)


def place_objects(rng: np.random.Generator, width: int, height: int, n: int,
                  cfg: SyntheticCrowdConfig) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample up to ``n`` centres (denser towards the top, partly clustered) and
    their covariances. Returns ``(points (M, 2), covariances (M, 2, 2),
    major stds (M,))`` with ``M <= n``."""
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
        if pts:
            d = np.linalg.norm(np.asarray(pts) - p, axis=1)
            if (d < cfg.min_spacing * (np.asarray(stds) + s)).any():
                continue
        pts.append(p)
        stds.append(float(s))
    points = np.asarray(pts, np.float64).reshape(-1, 2)
    major = np.asarray(stds, np.float64)
    m = len(points)
    aspect = rng.uniform(1.0, cfg.max_aspect, m)
    theta = rng.uniform(0, np.pi, m)
    c, s = np.cos(theta), np.sin(theta)
    v0, v1 = major ** 2, (major / aspect) ** 2
    cov = np.empty((m, 2, 2))
    cov[:, 0, 0] = c * c * v0 + s * s * v1
    cov[:, 1, 1] = s * s * v0 + c * c * v1
    cov[:, 0, 1] = cov[:, 1, 0] = c * s * (v0 - v1)
    return points, cov, major


def generate_scene(rng: np.random.Generator, width: int, height: int, n_objects: int,
                   cfg: SyntheticCrowdConfig, textured: bool = True) -> SyntheticScene:
    """Render one scene (see module docstring). ``textured=False`` gives a flat
    background (tests: object moments then equal the saved covariances)."""
    if textured:
        bg = textured_background(rng, height, width)
        if cfg.distractors:
            add_distractors(rng, bg)
    else:
        bg = np.full((height, width, 3), 128.0)
    points, cov, _ = place_objects(rng, width, height, n_objects, cfg)
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
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)
    annotated = annotate_points(rng, points, cov, width, height, cfg.annotation_jitter)
    return SyntheticScene(image, annotated.astype(np.float32), cov.astype(np.float32),
                          colors.astype(np.float32), opac.astype(np.float32),
                          bg.astype(np.float32), points.astype(np.float32))


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


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image ``index``: depends only on ``(seed, index)``."""
    return np.random.default_rng([int(seed), int(index)])


def scene_for_index(cfg: SyntheticCrowdConfig, index: int) -> SyntheticScene:
    """Image ``index`` of the data set described by ``cfg``."""
    rng = image_rng(cfg.seed, index)
    w = int(rng.integers(cfg.min_size, cfg.max_size + 1))
    h = int(rng.integers(cfg.min_size, cfg.max_size + 1))
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    return generate_scene(rng, w, h, n, cfg)


def split_names(names: Sequence[str], fractions: Sequence[float], seed: int
                ) -> Dict[str, List[str]]:
    """Deterministic train / val / test split (each non-empty when there are at
    least 3 names)."""
    order = np.random.default_rng([int(seed), 10 ** 6]).permutation(len(names))
    n = len(names)
    f = np.asarray(fractions, np.float64) / np.sum(fractions)
    n_val, n_test = int(round(f[1] * n)), int(round(f[2] * n))
    if n >= 3:
        n_val, n_test = max(1, n_val), max(1, n_test)
    n_train = max(0, n - n_val - n_test)
    parts = np.split(order, [n_train, n_train + n_val])
    return {s: sorted(names[i] for i in p) for s, p in zip(('train', 'val', 'test'), parts)}


def write_dataset(out_dir: str, cfg: SyntheticCrowdConfig, progress: bool = False
                  ) -> Dict[str, List[str]]:
    """Generate the data set into ``out_dir`` in the gst_mm layout
    (``images/``, ``annotations/`` with ``covariances``, split files and a
    ``synthetic_config.json``). Returns the split -> names mapping."""
    names = [f'syn_{i:05d}' for i in range(cfg.num_images)]
    it = range(cfg.num_images)
    if progress:
        try:
            from tqdm import tqdm
            it = tqdm(it, desc='synthetic crowd', unit='img')
        except ImportError:  # pragma: no cover
            pass
    for i in it:
        scene = scene_for_index(cfg, i)
        h, w = scene.image.shape[:2]
        ann = CrowdAnnotation(names[i] + '.jpg', w, h, scene.points, scene.covariances)
        write_sample(out_dir, names[i], ann, image_bgr=scene.image[..., ::-1].copy(),
                     quality=cfg.jpeg_quality)
    splits = split_names(names, cfg.split_fractions, cfg.seed)
    for split, members in splits.items():
        write_split(out_dir, split, members)
    atomic_write_bytes(osp.join(out_dir, 'synthetic_config.json'),
                       json.dumps(asdict(cfg), indent=1).encode())
    return splits


def load_config(path: Optional[str]) -> Optional[SyntheticCrowdConfig]:
    """The config a data set was written with (``None`` if the file is absent)."""
    if path is None or not osp.isfile(path):
        return None
    with open(path) as f:
        return SyntheticCrowdConfig(**json.load(f))
