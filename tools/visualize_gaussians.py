"""Write a PNG: the image with its fitted Gaussians drawn as ellipses | the rendered
reconstruction, side by side.

Examples::

    # fit on the fly
    python tools/visualize_gaussians.py IMAGE POINTS.json --out vis.png
    # read the Gaussians from a cache (fitted by tools/precompute.py)
    python tools/visualize_gaussians.py IMAGE POINTS.npy --cache-dir CACHE [--data-root ROOT]

POINTS is an ``(N, 2)`` array of (x, y) px in a ``.npy`` file or a ``.json`` file (a
list of [x, y], or a dict with ``points`` or MPII-style ``joints`` [+ ``joints_vis``]).
"""
from __future__ import annotations

import argparse
import json
import math
import os.path as osp
import sys
from typing import Optional

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from gst_mm.splatting import (  # noqa: E402
    GaussianCache,
    GaussianCacheError,
    Gaussians2D,
    fit_gaussians,
    read_image,
    render,
)
from gst_mm.splatting.fit import knn_distance, median_background  # noqa: E402


def load_points(path: str) -> np.ndarray:
    """``(N, 2)`` float points px from ``.npy`` or ``.json`` (see module doc)."""
    if path.endswith('.npy'):
        return np.asarray(np.load(path), np.float64).reshape(-1, 2)
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, dict):
        if 'points' in data:
            data = data['points']
        elif 'joints' in data:
            pts = np.asarray(data['joints'], np.float64).reshape(-1, 2)
            vis = np.asarray(data.get('joints_vis', np.ones(len(pts))), bool).reshape(-1)
            return pts[vis]
        else:
            raise ValueError(f'{path}: expected a list of [x, y] or a dict with "points"/"joints"')
    return np.asarray(data, np.float64).reshape(-1, 2)


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
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    image = read_image(args.image)
    points = load_points(args.points)
    out = args.out or osp.splitext(osp.basename(args.image))[0] + '_gaussians.png'
    if args.cache_dir:
        cache = GaussianCache(args.cache_dir, args.data_root)
        try:
            gaussians = cache.load(args.image, points, image.shape[:2])
        except GaussianCacheError as e:
            print(f'error: {e}', file=sys.stderr)
            return 1
    else:
        gaussians = fit_gaussians(image, points, iterations=args.iterations,
                                  drop_outside=args.drop_outside, name=args.image)
    visualize(image, gaussians, out)
    print(f'wrote {out} ({len(gaussians)} Gaussians)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
