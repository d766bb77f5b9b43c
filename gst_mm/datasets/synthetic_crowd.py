"""Deterministic synthetic crowd data set with known object covariances.

Pure module (numpy + OpenCV; no mmengine). ``tools/make_synthetic_crowd.py`` is
its command line. The scenes are drawn by
:func:`gst_mm.splatting.synthetic.make_crowd_scene`: a textured background with
distractor textures, ``N`` objects drawn as anisotropic Gaussian blobs (alpha
profile ``opacity * exp(-d_M^2 / 2)`` with the object's covariance ``Sigma``)
whose size shrinks towards the top of the image (perspective), drawn far-to-near
so near objects occlude far ones, a few thin occluders on top, and sensor noise.
This module is the data-set side: the settings, per-image seeding, the split and
the files. Annotations are the blob centres; the true ``Sigma`` of every blob is
saved, so fitted Gaussians and ground-truth-scale kernels can be checked against it.

Image ``k`` of a data set depends only on ``(seed, k)``: the same call always
writes byte-identical files.
"""
from __future__ import annotations

import json
import os.path as osp
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from gst_mm.splatting.synthetic import SyntheticScene, make_crowd_scene

from .layout import CrowdAnnotation, atomic_write_bytes, write_sample, write_split


@dataclass
class SyntheticCrowdConfig:
    """Scene and data-set parameters (sizes in pixels); the scene fields are the
    :class:`gst_mm.splatting.synthetic.CrowdSettings` of ``make_crowd_scene``.

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
        size_spread: each object's std is also multiplied by a log-uniform factor in
            ``[1 / size_spread, size_spread]``, independent of where it stands (the
            counting benchmark's "sizes" variant: no single sigma fits); 1 (default):
            off, and the scenes are those of earlier versions.
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
    size_spread: float = 1.0
    split_fractions: Tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        # configs and JSON give lists: compare equal to the tuple defaults
        self.opacity_range = tuple(float(v) for v in self.opacity_range)
        self.split_fractions = tuple(float(v) for v in self.split_fractions)


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image ``index``: depends only on ``(seed, index)``."""
    return np.random.default_rng([int(seed), int(index)])


def scene_for_index(cfg: SyntheticCrowdConfig, index: int) -> SyntheticScene:
    """Image ``index`` of the data set described by ``cfg``."""
    rng = image_rng(cfg.seed, index)
    w = int(rng.integers(cfg.min_size, cfg.max_size + 1))
    h = int(rng.integers(cfg.min_size, cfg.max_size + 1))
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    return make_crowd_scene(rng, w, h, n, cfg)


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


def ensure_dataset(data_root: str, settings: Optional[dict] = None) -> str:
    """Generate the synthetic crowd set in ``data_root`` unless it already holds the
    same one (its ``synthetic_config.json`` equals ``settings`` and the split files
    exist). Returns a one-line description of what was done.

    Args:
        data_root: output folder (gst_mm crowd layout).
        settings: :class:`SyntheticCrowdConfig` fields (a config's ``synthetic_data``).
    """
    wanted = SyntheticCrowdConfig(**dict(settings or {}))
    have = load_config(osp.join(data_root, 'synthetic_config.json'))
    splits_ok = all(osp.isfile(osp.join(data_root, f'{s}.txt')) for s in ('train', 'val', 'test'))
    if have == wanted and splits_ok:
        return (f'synthetic data set already in {osp.abspath(data_root)} '
                f'({wanted.num_images} images)')
    write_dataset(data_root, wanted, progress=True)
    return f'wrote {wanted.num_images} images to {osp.abspath(data_root)}'
