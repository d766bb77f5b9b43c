"""Write a PNG: the image with its fitted Gaussians drawn as ellipses | the rendered
reconstruction, side by side.

Examples::

    # fit on the fly
    python tools/visualize_gaussians.py IMAGE POINTS.json --out vis.png
    # read the Gaussians from a cache (fitted by tools/precompute.py)
    python tools/visualize_gaussians.py IMAGE POINTS.npy --cache-dir CACHE [--data-root ROOT]

POINTS is an ``(N, 2)`` array of (x, y) px in a ``.npy`` file or a ``.json`` file (a
list of [x, y], or a dict with ``points`` or MPII-style ``joints`` [+ ``joints_vis``]),
or an MPII / MMPose annotation file (a list of ``{"image", "joints", "joints_vis"}``
records: the visible joints of every person of IMAGE, in file order, which is what
the pose precompute fits).

Pixel conventions. Gaussians and crowd points use the splatting convention (pixel
centres at +0.5). MMPose keypoints are pixel indices (centres at integers), so the
pose precompute caches them at keypoint + 0.5 px; ``joints`` read from JSON are
MMPose keypoints and are shifted by +0.5 here (computed in float32 exactly as the
precompute does, so the cache's point hash matches). ``--mmpose-keypoints`` applies
the same shift to a ``.npy`` / plain list of MMPose keypoints. Drawing is in the
splatting convention.
"""
from __future__ import annotations

import argparse
import json
import math
import os.path as osp
import sys
from typing import Optional

import numpy as np

from gst_mm.splatting import (
    GaussianCache,
    GaussianCacheError,
    Gaussians2D,
    SoftGaussians,
    fit_gaussians,
    knn_distance,
    read_image,
    render,
)
from gst_mm.splatting.fit import median_background

#: MMPose keypoints (pixel indices) -> splatting convention (pixel centres at +0.5)
MMPOSE_SHIFT = np.float32(0.5)


def mmpose_to_splatting(keypoints) -> np.ndarray:
    """``(N, 2)`` MMPose keypoints -> float32 splatting-convention points (+0.5 px),
    the same arithmetic as :func:`gst_mm.engine.collect_gaussian_samples`."""
    return np.asarray(keypoints, np.float32).reshape(-1, 2) + MMPOSE_SHIFT


def _visible_joints(record: dict) -> np.ndarray:
    pts = np.asarray(record['joints'], np.float32).reshape(-1, 2)
    vis = np.asarray(record.get('joints_vis', np.ones(len(pts))), np.float32).reshape(-1) > 0
    return mmpose_to_splatting(pts[vis])


def load_points(path: str, image: Optional[str] = None,
                mmpose_keypoints: bool = False) -> np.ndarray:
    """``(N, 2)`` points px in the splatting convention from ``.npy`` or ``.json``
    (see module doc; MPII-style ``joints`` get +0.5 px, as do plain points with
    ``mmpose_keypoints``). ``image`` selects the records of an annotation file."""
    if path.endswith('.npy'):
        pts = np.asarray(np.load(path), np.float64).reshape(-1, 2)
        return mmpose_to_splatting(pts) if mmpose_keypoints else pts
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        if image is None or not all('joints' in r and 'image' in r for r in data):
            raise ValueError(f'{path}: a list of records needs "image" and "joints" in each')
        name = osp.basename(image)
        parts = [_visible_joints(r) for r in data if osp.basename(str(r['image'])) == name]
        if not parts:
            raise ValueError(f'{path}: no annotation of image {name}')
        return np.concatenate(parts, axis=0)
    if isinstance(data, dict):
        if 'points' in data:
            data = data['points']
        elif 'joints' in data:
            return _visible_joints(data)
        else:
            raise ValueError(f'{path}: expected a list of [x, y] or a dict with "points"/"joints"')
    pts = np.asarray(data, np.float64).reshape(-1, 2)
    return mmpose_to_splatting(pts) if mmpose_keypoints else pts


def shift_hint(cache: GaussianCache, image_path: str, points: np.ndarray,
               size) -> str:
    """A hint when the cache matches ``points`` shifted by -/+ 0.5 px (a
    pixel-convention mix-up rather than a stale cache), else ''."""
    pts = np.asarray(points, np.float32).reshape(-1, 2)
    if cache.is_valid(image_path, pts + MMPOSE_SHIFT, size):
        return ('; the cache matches these points + 0.5 px: they are MMPose keypoints, '
                'pass --mmpose-keypoints')
    if cache.is_valid(image_path, pts - MMPOSE_SHIFT, size):
        return ('; the cache matches these points - 0.5 px: they are already in the '
                'splatting convention, drop --mmpose-keypoints')
    return ''


def draw_overlay(image: np.ndarray, gaussians: Gaussians2D, n_sigma: float = 2.0,
                 thickness: int = 1) -> np.ndarray:
    """RGB uint8 copy of ``image`` with each Gaussian's ``n_sigma`` ellipse and its
    centre drawn (sub-pixel, cv2 shift=4)."""
    import cv2
    out = image.copy()
    shift = 4
    sc = 1 << shift
    scales = gaussians.scales.numpy()
    angles = gaussians.angles.numpy()
    means = gaussians.means.detach().numpy()
    for (x, y), (a, b), t in zip(means, scales, angles):
        centre = (int(round(x * sc)), int(round(y * sc)))
        axes = (int(round(n_sigma * a * sc)), int(round(n_sigma * b * sc)))
        cv2.ellipse(out, centre, axes, math.degrees(float(t)), 0, 360, (255, 255, 0), thickness,
                    cv2.LINE_AA, shift)
        cv2.circle(out, centre, 2 * sc, (255, 0, 0), -1, cv2.LINE_AA, shift)
    return out


def visualize(image: np.ndarray, gaussians: Gaussians2D, out_path: str,
              background: Optional[np.ndarray] = None) -> np.ndarray:
    """Write ``[overlay | reconstruction]`` to ``out_path``; returns the panel (RGB).

    The reconstruction sum-composites the Gaussians over ``background`` (``(H, W, 3)``
    float [0, 1]; default: the median-filtered image the fit starts from)."""
    import cv2
    import torch
    h, w = image.shape[:2]
    if background is None:
        knn = knn_distance(gaussians.means.detach().numpy())
        window = float(np.clip(2.0 * np.median(knn), 15.0, max(15.0, max(h, w) / 4.0))) \
            if len(knn) else 15.0
        background = median_background(image, window)
    with torch.no_grad():
        rec = render(gaussians, h, w, 'torch', compositing='sum',
                     background=torch.as_tensor(background))
    rec8 = np.clip(rec.cpu().numpy() * 255 + 0.5, 0, 255).astype(np.uint8)
    panel = np.concatenate([draw_overlay(image, gaussians), rec8], axis=1)
    if not cv2.imwrite(out_path, panel[..., ::-1]):
        raise OSError(f'{out_path}: cannot write PNG')
    return panel


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('image')
    p.add_argument('points', help='.npy or .json points (x, y) px')
    p.add_argument('--out', default=None, help='output PNG (default: <image>_gaussians.png)')
    p.add_argument('--cache-dir', default=None, help='read Gaussians from this cache')
    p.add_argument('--data-root', default=None, help='data root of the cache keys')
    p.add_argument('--iterations', type=int, default=None, help='fit iterations (on the fly)')
    p.add_argument('--drop-outside', action='store_true', help='drop points outside the image')
    p.add_argument('--plan', choices=('hard', 'soft'), default='hard',
                   help='fit on the fly with this plan (soft: free components, '
                   'docs/soft_kernel.md); a soft cache entry is drawn as its components')
    p.add_argument('--mmpose-keypoints', action='store_true',
                   help='POINTS (.npy / list) are MMPose keypoints (pixel indices): add 0.5 px '
                   '(MPII-style "joints" JSON always is)')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    image = read_image(args.image)
    try:
        points = load_points(args.points, args.image, args.mmpose_keypoints)
    except (ValueError, KeyError, OSError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    out = args.out or osp.splitext(osp.basename(args.image))[0] + '_gaussians.png'
    if args.cache_dir:
        cache = GaussianCache(args.cache_dir, args.data_root)
        try:
            gaussians = cache.load(args.image, points, image.shape[:2])
        except (GaussianCacheError, ValueError) as e:
            hint = shift_hint(cache, args.image, points, image.shape[:2]) \
                if isinstance(e, GaussianCacheError) else ''
            print(f'error: {e}{hint}', file=sys.stderr)
            return 1
    else:
        gaussians = fit_gaussians(image, points, iterations=args.iterations,
                                  drop_outside=args.drop_outside, name=args.image,
                                  plan=args.plan)
    what = f'{len(gaussians)} Gaussians'
    if isinstance(gaussians, SoftGaussians):  # the free components, not the anchors
        what = f'{gaussians.num_components} components for {len(gaussians)} points'
        gaussians = gaussians.components
    visualize(image, gaussians, out)
    print(f'wrote {out} ({what})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
