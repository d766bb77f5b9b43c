"""The per-joint GST transport kernels ``K_fg`` of one pose sample, drawn.

:func:`load_kernel_sample` runs the kernel part of a GST pose config's train pipeline
on one sample (fitting its Gaussians first with the config's precompute settings
unless ``fit=False``); :func:`kernel_figure` draws the three panels described in
``tools/visualize_pose_kernels.py`` (the crop with its joints, every joint's kernel
in its colour, one tile per joint); :func:`draw_pose_kernels` is both viewers' run.

Kernels live on the heatmap grid; heatmap cell ``k`` is input pixel index
``stride * k`` (MMPose's MSRAHeatmap convention), and the upsampling to the crop
keeps exactly that alignment, so a kernel's peak sits on its joint's dot.
"""
from __future__ import annotations

import copy
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np

KERNEL_STEP = 'LoadPoseTransportKernel'


def _name(step: Dict) -> str:
    return str(step.get('type', '')).split('.')[-1]


def kernel_pipeline(cfg, augment: bool = False) -> List[Dict]:
    """The config's train pipeline up to and including its kernel step (no packing;
    without ``Random*`` steps unless ``augment``).

    Raises:
        ValueError: the config's train pipeline has no ``LoadPoseTransportKernel``.
    """
    steps = [copy.deepcopy(dict(t)) for t in cfg.train_dataloader.dataset.pipeline]
    names = [_name(t) for t in steps]
    if KERNEL_STEP not in names:
        raise ValueError('the train pipeline has no gst_mm.LoadPoseTransportKernel (not a GST '
                         'pose config; convert it with tools/gstify_config.py)')
    steps = steps[:names.index(KERNEL_STEP) + 1]
    if not augment:
        steps = [t for t in steps if not _name(t).startswith('Random')]
    return steps


def load_kernel_sample(cfg, split: str = 'train', index: int = 0, augment: bool = False,
                       fit: bool = True) -> Tuple[Dict, List[str]]:
    """Run the kernel part of the train pipeline on sample ``index`` of ``split``.

    Returns:
        ``(results, joint_names)``: the pipeline results (``img`` BGR uint8 crop,
        ``gst_kernels (K, h, w)``, ``transformed_keypoints (1, K, 2)`` input px
        (pixel indices), ``keypoints_visible``, ``input_size``, ``img_path`` ...)
        and the joint names of the data set (``K`` of them).
    """
    from mmengine.dataset import Compose

    from gst_mm.engine import fit_image, hook_cfg_of
    from gst_mm.utils.config import build_split_dataset

    steps = kernel_pipeline(cfg, augment)
    # the data set with the kernel pipeline: the resolver reads its fit plan
    dataset = build_split_dataset(cfg, split, steps)
    if not 0 <= index < len(dataset):
        raise IndexError(f'--index {index} is outside the {len(dataset)} samples of the '
                         f'{split} set')
    info = dataset.get_data_info(index)
    if fit:  # the config's precompute settings, into the folder the transform reads
        hook = hook_cfg_of(cfg)
        hook.setdefault('cache_dir', steps[-1].get('cache_dir'))
        hook.setdefault('data_root', steps[-1].get('data_root'))
        fit_image(dataset, hook, info['img_path'])
    results = Compose(steps)(copy.deepcopy(info))
    meta = getattr(dataset, 'metainfo', {}) or {}
    id2name = meta.get('keypoint_id2name') or {}
    num = results['gst_kernels'].shape[0]
    names = [str(id2name.get(j, j)) for j in range(num)]
    return results, names


def kernel_overlay(kernels: np.ndarray, colors: np.ndarray, size: Tuple[int, int],
                   stride: float, offset: float = 0.0) -> np.ndarray:
    """All joints' kernels on the crop: ``(H, W, 3)`` float RGB in [0, 1], each joint
    in its colour scaled by ``K_fg``, the maximum over joints per pixel.

    ``kernels (K, h, w)`` on the heatmap grid; cell ``k`` is pixel index
    ``stride * k + offset`` (bilinear between cells). ``size = (H, W)`` of the crop.
    """
    out = np.zeros((size[0], size[1], 3), np.float32)
    for k, c in zip(kernels, colors):
        up = upsample_kernel(k, size, stride, offset)
        out = np.maximum(out, up[..., None] * (c.astype(np.float32) / 255.0))
    return out


def upsample_kernel(kernel: np.ndarray, size: Tuple[int, int], stride: float,
                    offset: float = 0.0) -> np.ndarray:
    """One kernel ``(h, w)`` -> ``(H, W)`` pixels, cell ``k`` at pixel index
    ``stride * k + offset`` (bilinear; ``offset = (s - 1) / 2`` when the crop itself
    was enlarged ``s`` times by ``cv2.resize``)."""
    import cv2
    m = np.array([[stride, 0, offset], [0, stride, offset]], np.float64)
    return cv2.warpAffine(np.ascontiguousarray(kernel, np.float32), m, (size[1], size[0]),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _dots(image: np.ndarray, points: np.ndarray, colors, radius: int = 3) -> np.ndarray:
    """Dots at pixel-index points (centre of pixel ``i`` = ``i``), sub-pixel."""
    import cv2
    out = np.ascontiguousarray(image.copy())
    per = np.asarray(colors).ndim == 2
    for n, (x, y) in enumerate(np.asarray(points, np.float64).reshape(-1, 2)):
        c = (int(round(x * 16)), int(round(y * 16)))
        color = tuple(int(v) for v in (colors[n] if per else colors))
        cv2.circle(out, c, (radius + 1) * 16, (0, 0, 0), -1, cv2.LINE_AA, 4)
        cv2.circle(out, c, radius * 16, color, -1, cv2.LINE_AA, 4)
    return out


def kernel_figure(results: Dict, names: List[str], scale: int = 2) -> np.ndarray:
    """The three-panel figure of the module docstring, RGB uint8."""
    import cv2

    from gst_mm.visualization import annotation_colors, compose_panels

    crop = np.ascontiguousarray(results['img'][..., ::-1])  # BGR -> RGB
    h_in, w_in = crop.shape[:2]
    kernels = np.asarray(results['gst_kernels'], np.float32)
    num = kernels.shape[0]
    stride = w_in // kernels.shape[2]
    kpts = np.asarray(results['transformed_keypoints'], np.float64)[0, :, :2]
    present = kernels.reshape(num, -1).max(1) > 0
    colors = annotation_colors(num)

    big = (h_in * scale, w_in * scale)
    crop_big = cv2.resize(crop, (big[1], big[0]), interpolation=cv2.INTER_LINEAR)
    # pixel index i of the crop -> index scale * i + (scale - 1) / 2 of the enlarged crop
    pts_big = kpts * scale + (scale - 1) / 2.0
    joints = _dots(crop_big, pts_big[present], colors[present])
    over = kernel_overlay(kernels, colors, big, stride * scale, (scale - 1) / 2.0)
    over = np.clip(0.35 * crop_big / 255.0 + over, 0, 1)
    over = _dots((over * 255).astype(np.uint8), pts_big[present], colors[present], radius=2)

    # per-joint grid
    cols = int(np.ceil(np.sqrt(num)))
    rows = int(np.ceil(num / cols))
    tile = max(96, big[0] * 2 // cols)
    t_scale = tile / h_in
    small = cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    grid = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
    for j in range(num):
        r, c = divmod(j, cols)
        heat = upsample_kernel(kernels[j], (tile, tile), stride * t_scale, (t_scale - 1) / 2.0)
        img = 0.3 * small
        if present[j]:
            hot = cv2.applyColorMap((np.clip(heat, 0, 1) * 255).astype(np.uint8),
                                    cv2.COLORMAP_INFERNO)[..., ::-1].astype(np.float32) / 255
            img = np.clip(img + heat[..., None] * hot, 0, 1)
        img = (img * 255).astype(np.uint8)
        if present[j]:
            img = _dots(img, kpts[j:j + 1] * t_scale + (t_scale - 1) / 2, colors[j], radius=2)
        label = f'{j} {names[j]}' + ('' if present[j] else ' (no K)')
        cv2.putText(img, label, (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1,
                    cv2.LINE_AA)
        cv2.rectangle(img, (0, 0), (tile - 1, tile - 1), (90, 90, 90), 1)
        grid[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = img
    height = grid.shape[0]
    return compose_panels([
        (f'input crop {w_in}x{h_in}, {int(present.sum())} joints with a kernel', joints),
        (f'K_fg of every joint (heatmap {kernels.shape[2]}x{kernels.shape[1]}, stride {stride})',
         over),
        ('K_fg per joint (0..1)', grid),
    ], height=height)


def draw_pose_kernels(config: str, cfg_options: Optional[Dict] = None, split: str = 'train',
                      index: int = 0, augment: bool = False, fit: bool = True,
                      out: Optional[str] = None,
                      prog: str = 'visualize_pose_kernels.py') -> int:
    """Write the figure of sample ``index`` of ``config`` (:func:`kernel_figure`) to
    ``out`` (default ``work_dirs/pose_kernels_<image>_<index>.png``, atomic) and print
    one line naming it: ``tools/visualize_pose_kernels.py`` and the pose branch of
    ``tools/visualize_transport.py``.

    Returns 0, or 2 after a one-line error ``<prog>: error: ...`` on stderr (missing
    config / cache, bad index, not a GST pose config, cache key mismatch).
    """
    import gst_mm  # noqa: F401
    from gst_mm.splatting import CacheKeyError, GaussianCacheError
    from gst_mm.utils import register_all_modules
    from gst_mm.utils.config import load_run_config
    from gst_mm.visualization import save_rgb

    register_all_modules(init_default_scope=False)
    try:
        cfg = load_run_config(config, cfg_options)
        results, names = load_kernel_sample(cfg, split, index, augment, fit=fit)
    except (GaussianCacheError, CacheKeyError, ValueError, IndexError, FileNotFoundError,
            RuntimeError, KeyError) as err:
        hint = ''
        if isinstance(err, GaussianCacheError) and not fit:
            hint = (' (fit it without --no-fit, or the whole set: '
                    f'tools/precompute.py {config})')
        print(f'{prog}: error: {err}{hint}', file=sys.stderr)
        return 2
    stem = osp.splitext(osp.basename(results['img_path']))[0]
    out = out or osp.join('work_dirs', f'pose_kernels_{stem}_{index}.png')
    os.makedirs(osp.dirname(osp.abspath(out)) or '.', exist_ok=True)
    tmp = f'{out}.tmp-{os.getpid()}.png'  # atomic: a PNG appears whole or not at all
    try:
        save_rgb(tmp, kernel_figure(results, names))
        os.replace(tmp, out)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    present = int((results['gst_kernels'].reshape(len(names), -1).max(1) > 0).sum())
    print(f'wrote {out} ({results["img_path"]}, {present}/{len(names)} joints with a kernel)')
    return 0
