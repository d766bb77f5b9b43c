"""The pictures of docs/pose.md: a joint's kernel column (the plateau) and trained
heatmaps of the pose benchmark's models.

    python tools/benchmark/pose_figures.py [--work-dir work_dirs/bench_pose]
        [--arms mse gst-paper gst-b8] [--seed 0] [--index 0] [--joint 0]
        [--out docs/images/pose_plateau.png]

Panel row 1 (the kernel): for one held-out synthetic sample and joint, ``K_fg`` on the
32x32 heatmap with circles at the PCK@0.05 / 0.1 / 0.2 radii of its box, and the
profile through the joint: ``K_fg``, the paper's loss of a unit mass in each cell
(``2 (1 - K)``) and the default recipe's (``-log K + (1 - K)`` plus ``lambda C`` of the
plan's cost). Row 2: the density ``softmax(beta * raw)`` each trained arm puts on that
joint (the MSE model's raw heatmap), with the true joint and the decoded one.
The models are the ``synthetic_train_<arm>_seed<seed>/iter_*.pth`` checkpoints of
``tools/benchmark/pose.py``.
"""
from __future__ import annotations

import argparse
import glob
import os
import os.path as osp

import numpy as np
from _common import ROOT, init_worker


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'bench_pose'))
    p.add_argument('--arms', nargs='+', default=['mse', 'gst-paper', 'gst-b8'])
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--index', type=int, default=0, help='held-out sample')
    p.add_argument('--joint', type=int, default=0)
    p.add_argument('--out', default=osp.join(ROOT, 'docs', 'images', 'pose_plateau.png'))
    return p.parse_args(argv)


HALF = 8  # the panels show the 17 x 17 cells around the joint


def _window(values: np.ndarray, centre) -> np.ndarray:
    """The ``(2 HALF + 1)^2`` cells around ``centre`` (x, y) cells (zero outside)."""
    cx, cy = int(round(centre[0])), int(round(centre[1]))
    out = np.zeros((2 * HALF + 1, 2 * HALF + 1), values.dtype)
    h, w = values.shape
    for r in range(2 * HALF + 1):
        y = cy - HALF + r
        if 0 <= y < h:
            x0, x1 = max(0, cx - HALF), min(w, cx + HALF + 1)
            out[r, x0 - (cx - HALF):x1 - (cx - HALF)] = values[y, x0:x1]
    return out


def _heat(values: np.ndarray, size: int, vmax: float = None) -> np.ndarray:
    import cv2
    v = values / (vmax if vmax else max(float(values.max()), 1e-12))
    img = cv2.applyColorMap((np.clip(v, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    return cv2.resize(img[..., ::-1], (size, size), interpolation=cv2.INTER_NEAREST)


def _mark(img: np.ndarray, xy, cells: int, color, radius_cells: float = 0.0, cross=False):
    import cv2
    s = img.shape[0] / cells
    c = (int(round((xy[0] + 0.5) * s * 16)), int(round((xy[1] + 0.5) * s * 16)))
    if radius_cells:
        cv2.circle(img, c, int(round(radius_cells * s * 16)), color, 1, cv2.LINE_AA, 4)
    elif cross:
        d = int(4 * 16)
        cv2.line(img, (c[0] - d, c[1] - d), (c[0] + d, c[1] + d), color, 2, cv2.LINE_AA, 4)
        cv2.line(img, (c[0] - d, c[1] + d), (c[0] + d, c[1] - d), color, 2, cv2.LINE_AA, 4)
    else:
        cv2.circle(img, c, 4 * 16, color, -1, cv2.LINE_AA, 4)
    return img


def _profile(kernel_row: np.ndarray, cost_row: np.ndarray, lam: float, size=(360, 240)):
    """Line plot (drawn with OpenCV) of K, the paper's per-cell loss and the default's."""
    import cv2
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    n = len(kernel_row)
    k = np.clip(kernel_row, 1e-6, 1)
    curves = [('K_fg', k, (40, 40, 40)),
              ('paper: 2(1-K)', 2 * (1 - k), (200, 60, 40)),
              (f'default: -log K + (1-K) + {lam:g} C', -np.log(k) + (1 - k) + lam * cost_row,
               (40, 90, 200))]
    top = 2.5
    for i, (name, y, color) in enumerate(curves):
        pts = np.stack([np.arange(n) / (n - 1) * (w - 20) + 10,
                        h - 20 - np.clip(y, 0, top) / top * (h - 40)], 1)
        cv2.polylines(img, [np.round(pts).astype(np.int32)], False, color, 2, cv2.LINE_AA)
        cv2.putText(img, name, (12, 16 + 15 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, color, 1,
                    cv2.LINE_AA)
    cv2.putText(img, f'unit mass in one cell; 17 cells, clipped at {top}',
                (12, h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (90, 90, 90), 1, cv2.LINE_AA)
    return img


def main(argv=None) -> str:
    args = parse_args(argv)
    init_worker(1)
    import torch
    from mmengine.dataset import Compose, pseudo_collate
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    from pose import _tag, arm_config

    from gst_mm.models.heads.recipe import PRESETS
    from gst_mm.registry import MODELS
    from gst_mm.utils.config import build_split_dataset
    from gst_mm.visualization import compose_panels, save_rgb
    init_default_scope('mmpose')
    data_root = osp.join(args.work_dir, 'data') + '/'
    # the kernel of one held-out sample: the val image through the GST train pipeline
    cfg = arm_config('gst', 'synthetic', data_root, args.work_dir)
    steps = [s for s in cfg.train_dataloader.dataset.pipeline
             if 'Random' not in str(s['type'])]
    vcfg = cfg.copy()
    vcfg.train_dataloader.dataset.ann_file = 'annotations/val.json'
    ds = build_split_dataset(vcfg, 'train', steps[:-1])
    from gst_mm.engine import fit_image, hook_cfg_of
    fit_image(ds, hook_cfg_of(cfg), ds.get_data_info(args.index)['img_path'])
    res = ds[args.index]
    kern = np.asarray(res['gst_kernels'][args.joint])
    cost = np.asarray(res['gst_costs'][args.joint])
    cells = kern.shape[0]
    joint = np.asarray(res['transformed_keypoints'])[0, args.joint] / 2.0  # stride 2
    thr = {t: t * cells for t in (0.05, 0.1, 0.2)}  # PCK radius t x box = t x 32 cells
    size = 256
    win = 2 * HALF + 1
    origin = np.round(joint) - HALF  # window cell (0, 0) in heatmap cells
    local = lambda p: np.asarray(p) - origin  # noqa: E731
    panel_k = _heat(_window(kern, joint), size, 1.0)
    for t, r in thr.items():
        _mark(panel_k, local(joint), win, (120, 255, 120), r)
    _mark(panel_k, local(joint), win, (0, 200, 255))
    row = int(round(joint[1]))
    lam = PRESETS['default'].cost_weight
    k_row = _window(kern, joint)[HALF]
    c_row = _window(cost, joint)[HALF]
    panels = [('K_fg (PCK@.05/.1/.2 circles)', panel_k),
              ('per-cell loss, row of the joint', _profile(k_row, c_row, lam))]
    del row
    # trained densities of the same sample
    val = build_split_dataset(vcfg, 'val')
    pipe = Compose(list(cfg.val_dataloader.dataset.pipeline))
    info = val.get_data_info(args.index)
    batch = pseudo_collate([pipe(dict(info))])
    for arm in args.arms:
        ckpts = sorted(glob.glob(osp.join(args.work_dir, f'synthetic_train_{_tag(arm)}_seed'
                                          f'{args.seed}', 'iter_*.pth')))
        if not ckpts:
            print(f'pose_figures.py: no checkpoint of {arm} seed {args.seed}; skipped')
            continue
        acfg = arm_config(arm, 'synthetic', data_root, args.work_dir)
        model = MODELS.build(acfg.model)
        load_checkpoint(model, ckpts[-1], map_location='cpu', logger='silent')
        model.eval()
        with torch.no_grad():
            data = model.data_preprocessor(batch, False)
            raw = model.head.forward(model.extract_feat(data['inputs']))
            dens = (model.head.density(raw) if hasattr(model.head, 'density') else raw)
            pred = model.predict(data['inputs'], data['data_samples'])[0]
        d = _window(dens[0, args.joint].numpy(), joint)
        kp = np.asarray(pred.pred_instances.keypoints)[0, args.joint]
        # original image px -> heatmap cells of the (unaugmented) crop
        c = np.asarray(info['bbox']).reshape(-1)
        scale = max(c[2] - c[0], c[3] - c[1])
        ctr = np.array([(c[0] + c[2]) / 2, (c[1] + c[3]) / 2])
        to_cells = lambda p: (p - ctr) / scale * cells + cells / 2 - 0.5  # noqa: E731
        gt = np.asarray(info['keypoints'])[0, args.joint]
        img = _heat(d, size)
        _mark(img, local(to_cells(gt)), win, (0, 200, 255))
        _mark(img, local(to_cells(kp)), win, (255, 255, 255), cross=True)
        title = ('MSE heatmap' if arm == 'mse' else f'{arm} density')
        panels.append((title, img))
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    save_rgb(args.out, compose_panels(panels, height=size))
    print(f'wrote {args.out}')
    return args.out


if __name__ == '__main__':
    main()
