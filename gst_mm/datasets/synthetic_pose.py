"""Deterministic synthetic landmark data set for top-down pose benchmarks.

Pure module (numpy + OpenCV; no mmengine). Each image shows one articulated
"figure" with ``K = 11`` landmarks (head top, neck, pelvis, left/right elbow,
hand, knee, foot, see :data:`KEYPOINT_NAMES`) on a textured background with
distractor textures (:mod:`gst_mm.splatting.synthetic_draw`). The figure is a
fixed template bent at every joint by a random angle, then rotated, scaled and
placed at random; limbs are thick lines, hands discs, feet bars, the head an
ellipse. Left limbs are drawn darker and striped, right limbs lighter and solid,
so left and right are told apart by appearance (as a person's are, by context),
and horizontal flip augmentation with :data:`FLIP_PAIRS` stays valid.

Annotations are written in COCO keypoint format (``annotations/<split>.json``:
``images``, ``annotations`` with ``keypoints [x, y, v] * K`` in pixel *indices*
(MMPose's convention, pixel centres at integers), ``bbox [x, y, w, h]``), so
MMPose's ``CocoDataset`` reads them with :data:`DATASET_INFO` as metainfo.
Image ``k`` depends only on ``(seed, k)``: the same call writes the same files.
"""
from __future__ import annotations

import json
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from gst_mm.splatting.synthetic_draw import add_distractors, textured_background

from .layout import atomic_write_bytes, encode_jpeg
from .synthetic_crowd import image_rng

KEYPOINT_NAMES = ('head_top', 'neck', 'pelvis', 'left_elbow', 'right_elbow', 'left_hand',
                  'right_hand', 'left_knee', 'right_knee', 'left_foot', 'right_foot')
#: (parent, child) limbs of the template; every joint but the neck has one parent.
LIMBS = ((1, 0), (1, 2), (1, 3), (1, 4), (3, 5), (4, 6), (2, 7), (2, 8), (7, 9), (8, 10))
FLIP_PAIRS = ((3, 4), (5, 6), (7, 8), (9, 10))
#: template joint positions (x, y) in units of the figure's half height; y down.
TEMPLATE = np.array([
    [0.00, -1.00], [0.00, -0.62], [0.00, 0.15], [-0.40, -0.42], [0.40, -0.42],
    [-0.70, -0.10], [0.70, -0.10], [-0.22, 0.55], [0.22, 0.55], [-0.28, 0.98],
    [0.28, 0.98]], np.float64)


def _dataset_info() -> Dict:
    """MMPose ``dataset_info`` (keypoint names, flip pairs, skeleton, sigmas)."""
    swap = {a: b for a, b in FLIP_PAIRS}
    swap.update({b: a for a, b in FLIP_PAIRS})
    kpts = {i: dict(name=n, id=i, color=[255, 128, 0] if 'left' in n else
                    [0, 128, 255] if 'right' in n else [51, 153, 255],
                    type='upper' if i < 7 else 'lower',
                    swap=KEYPOINT_NAMES[swap[i]] if i in swap else '')
            for i, n in enumerate(KEYPOINT_NAMES)}
    skel = {i: dict(link=(KEYPOINT_NAMES[a], KEYPOINT_NAMES[b]), id=i, color=[0, 255, 0])
            for i, (a, b) in enumerate(LIMBS)}
    return dict(dataset_name='synthetic_landmarks', paper_info=dict(),
                keypoint_info=kpts, skeleton_info=skel,
                joint_weights=[1.0] * len(KEYPOINT_NAMES),
                sigmas=[0.05] * len(KEYPOINT_NAMES))


DATASET_INFO = _dataset_info()


@dataclass
class SyntheticPoseConfig:
    """Parameters of the data set (sizes in pixels).

    Attributes:
        num_train, num_val: images per split (val doubles as test).
        image_size: square image side.
        min_height, max_height: figure height (head top to feet) drawn uniformly.
        bend_deg: each limb is rotated about its parent joint by ``U(-b, b)`` deg.
        rotation_deg: the whole figure is rotated by ``U(-r, r)`` deg.
        limb_width: limb thickness as a fraction of the figure height.
        seed: master seed (train images use ``seed``, val ``seed + 1``).
        jpeg_quality: JPEG quality of written images.
    """
    num_train: int = 400
    num_val: int = 100
    image_size: int = 96
    min_height: float = 40.0
    max_height: float = 80.0
    bend_deg: float = 25.0
    rotation_deg: float = 35.0
    limb_width: float = 0.07
    seed: int = 0
    jpeg_quality: int = 95


def pose_keypoints(rng: np.random.Generator, cfg: SyntheticPoseConfig
                   ) -> Tuple[np.ndarray, float]:
    """Random figure: keypoints ``(K, 2)`` (x, y) in pixel *indices* and its height."""
    height = rng.uniform(cfg.min_height, cfg.max_height)
    pts = TEMPLATE.copy()
    # bend every limb about its parent, parents before children (LIMBS order)
    for parent, child in LIMBS:
        a = np.deg2rad(rng.uniform(-cfg.bend_deg, cfg.bend_deg))
        c, s = np.cos(a), np.sin(a)
        sub = [child] + [k for p, k in LIMBS if p == child]
        sub += [k for p, k in LIMBS if p in sub[1:]]
        rel = pts[sub] - pts[parent]
        pts[sub] = pts[parent] + rel @ np.array([[c, s], [-s, c]])
    a = np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    pts = (pts - pts.mean(0)) @ rot * (height / 2.0)
    lo, hi = pts.min(0), pts.max(0)
    margin = 4.0
    span = cfg.image_size - 1 - 2 * margin - (hi - lo)
    offset = margin - lo + rng.uniform(0, 1, 2) * np.maximum(span, 0)
    return pts + offset, float(height)


def draw_figure(rng: np.random.Generator, img: np.ndarray, kpts: np.ndarray,
                height: float, limb_width: float) -> None:
    """Draw the figure of ``kpts (K, 2)`` (pixel indices) into RGB float ``img``."""
    import cv2
    body = rng.uniform(40, 215, size=3)
    width = max(2, int(round(limb_width * height)))
    shift = 4  # cv2 sub-pixel coordinates: index * 16
    def pt(p):
        return tuple(int(round(v * (1 << shift))) for v in p)
    for parent, child in LIMBS:
        left = 'left' in KEYPOINT_NAMES[child]
        colour = body * (0.55 if left else 1.15)
        colour = tuple(float(c) for c in np.clip(colour, 0, 255))
        cv2.line(img, pt(kpts[parent]), pt(kpts[child]), colour, width, cv2.LINE_AA, shift)
        if left:  # stripes across left limbs
            for t in (0.3, 0.6):
                q = kpts[parent] + t * (kpts[child] - kpts[parent])
                cv2.circle(img, pt(q), (width * 3 // 4) << shift,
                           tuple(float(c) for c in 255 - body), -1, cv2.LINE_AA, shift)
    r = max(2, int(round(0.06 * height)))
    for k in (5, 6):  # hands
        cv2.circle(img, pt(kpts[k]), r << shift, tuple(float(c) for c in 255 - body), -1,
                   cv2.LINE_AA, shift)
    for k in (9, 10):  # feet: bars across the shank
        d = kpts[k] - kpts[k - 2]
        n = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9) * r * 1.5
        cv2.line(img, pt(kpts[k] - n), pt(kpts[k] + n), tuple(float(c) for c in body * 0.3),
                 max(2, width // 2 + 1), cv2.LINE_AA, shift)
    # head: an ellipse whose top is the head-top landmark
    axis = kpts[0] - kpts[1]
    centre = kpts[1] + 0.55 * axis
    angle = float(np.degrees(np.arctan2(axis[1], axis[0])))
    length = float(np.linalg.norm(axis))
    half = (int(round(0.45 * length)) << shift, int(round(0.3 * length)) << shift)
    cv2.ellipse(img, pt(centre), half, angle, 0, 360, tuple(float(c) for c in body), -1,
                cv2.LINE_AA, shift)


def render_sample(cfg: SyntheticPoseConfig, seed: int, index: int
                  ) -> Tuple[np.ndarray, np.ndarray, float]:
    """Image ``index`` of the split with ``seed``: ``(BGR uint8 (S, S, 3),
    keypoints (K, 2) pixel indices, figure height px)``."""
    rng = image_rng(seed, index)
    s = cfg.image_size
    img = textured_background(rng, s, s)
    add_distractors(rng, img)
    kpts, height = pose_keypoints(rng, cfg)
    draw_figure(rng, img, kpts, height, cfg.limb_width)
    img += rng.normal(0, 2.0, img.shape)
    rgb = np.clip(img, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb[..., ::-1]), kpts, height


def coco_annotation(image_id: int, kpts: np.ndarray, size: int) -> Dict:
    """COCO keypoint annotation of one figure (all joints visible, ``v = 2``);
    the box is the keypoints' box grown by 15 % of its larger side each way."""
    lo, hi = kpts.min(0), kpts.max(0)
    pad = 0.15 * (hi - lo).max()
    x0, y0 = np.maximum(lo - pad, 0)
    x1, y1 = np.minimum(hi + pad, size - 1)
    flat = np.concatenate([kpts, np.full((len(kpts), 1), 2.0)], 1).reshape(-1)
    return dict(id=image_id, image_id=image_id, category_id=1, iscrowd=0,
                num_keypoints=int(len(kpts)), keypoints=[round(float(v), 3) for v in flat],
                bbox=[round(float(v), 3) for v in (x0, y0, x1 - x0, y1 - y0)],
                area=float((x1 - x0) * (y1 - y0)))


def write_split(root: str, split: str, cfg: SyntheticPoseConfig, num: int, seed: int,
                progress: bool = False) -> str:
    """Write ``images/<split>_<k>.jpg`` and ``annotations/<split>.json``; returns the
    annotation path."""
    images: List[Dict] = []
    anns: List[Dict] = []
    it = range(num)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f'synthetic landmarks ({split})', unit='img')
    for k in it:
        bgr, kpts, _ = render_sample(cfg, seed, k)
        name = f'{split}_{k:05d}.jpg'
        atomic_write_bytes(osp.join(root, 'images', name), encode_jpeg(bgr, cfg.jpeg_quality))
        images.append(dict(id=k + 1, file_name=name, width=cfg.image_size,
                           height=cfg.image_size))
        anns.append(coco_annotation(k + 1, kpts, cfg.image_size))
    coco = dict(images=images, annotations=anns,
                categories=[dict(id=1, name='figure', keypoints=list(KEYPOINT_NAMES),
                                 skeleton=[[a + 1, b + 1] for a, b in LIMBS])])
    path = osp.join(root, 'annotations', f'{split}.json')
    atomic_write_bytes(path, json.dumps(coco).encode())
    return path


def write_dataset(root: str, cfg: Optional[SyntheticPoseConfig] = None,
                  progress: bool = False) -> Dict[str, str]:
    """Write the train and val splits under ``root``; returns their annotation paths."""
    cfg = cfg or SyntheticPoseConfig()
    return dict(train=write_split(root, 'train', cfg, cfg.num_train, cfg.seed, progress),
                val=write_split(root, 'val', cfg, cfg.num_val, cfg.seed + 1, progress))
