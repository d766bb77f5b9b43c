"""GST transport kernels for MMPose top-down heatmap pipelines (method.md 5).

:class:`LoadPoseTransportKernel` goes into an MMPose train pipeline after
``TopdownAffine`` and ``GenerateTarget`` (right before ``PackPoseInputs``). It
loads the image's cached Gaussians (one per visible joint of every person,
fitted on the whole image by ``GSTPrecomputeHook`` / ``tools/precompute.py``),
picks this instance's joints, moves them through exactly the geometry MMPose
applied to the sample and evaluates one two-column (joint vs background)
kernel per joint on the heatmap grid with
:func:`gst_mm.transport.point_kernels` (or, for a soft-plan cache entry, the
mixture kernel of :func:`gst_mm.transport.soft_point_kernels`, with every free
component moved by the same geometry; docs/soft_kernel.md).

Coordinates. MMPose keypoints are pixel *indices* (pixel centres at integers,
OpenCV's convention): ``RandomFlip`` maps ``x -> w - 1 - x`` and the
``TopdownAffine`` warp matrix acts on indices. The Gaussians are fitted and
cached in the splatting convention (pixel centres at +0.5:
:func:`gst_mm.engine.collect_gaussian_samples` adds 0.5 to MMPose keypoints), so
cached means are moved back by -0.5 before matching. The whole chain
original image -> (flip) -> input crop is therefore one affine ``M`` in index
coordinates (built with the helpers of :mod:`.geometry`): a joint's mean
becomes ``M p`` (MMPose's own ``transformed_keypoints``, which the transform
checks) and its covariance ``A Sigma A^T``. MMPose's heatmap codec puts a
keypoint at heatmap cell ``p_in / stride`` (index ``k`` <-> input pixel index
``stride * k``), while :func:`point_kernels` centres cell ``k`` at
``stride * k + stride / 2``; means are shifted by ``+stride / 2`` so both agree:
the kernel of a joint peaks exactly where MMPose's target heatmap does.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpose.structures.bbox import get_warp_matrix

from gst_mm.registry import TRANSFORMS
from gst_mm.transport.joint_plan import COST_KEY, KERNEL_KEY
from gst_mm.transport.kernel import DEFAULT_BG_RATIO, DEFAULT_CUTOFF, DEFAULT_MAX_STD

from .geometry import apply_to_covariances, apply_to_points, compose, from_2x3, identity

#: cache entries a loader keeps in memory (per worker; an entry holds one image's
#: Gaussians, a few KiB for a pose image)
CACHE_MEMO = 4096
#: PackPoseInputs' default field table (used when no codec has set one).
_DEFAULT_FIELD_TABLE = {
    'heatmaps': 'heatmaps',
    'instance_heatmaps': 'instance_heatmaps',
    'heatmap_mask': 'heatmap_mask',
    'heatmap_weights': 'heatmap_weights',
    'displacements': 'displacements',
    'displacement_weights': 'displacement_weights',
}


def flip_matrix(results: Dict) -> np.ndarray:
    """The flip ``RandomFlip`` applied to a sample as a 3x3 affine in pixel-index
    coordinates (original -> flipped image; identity when not flipped).

    MMPose flips ``x -> w - 1 - x`` (horizontal), ``y -> h - 1 - y`` (vertical) or
    both (diagonal), with ``(h, w)`` the image it acted on (``ori_shape``, else
    ``img_shape``), and renumbers left/right joints with ``flip_indices``. The
    renumbering needs no bookkeeping here: ``results['keypoints']`` are already in
    the flipped order, so mapping them back with the inverse matrix gives each
    current joint's original position.
    """
    m = identity()
    if not results.get('flip', False):
        return m
    direction = results.get('flip_direction', 'horizontal')
    if direction not in ('horizontal', 'vertical', 'diagonal'):
        raise ValueError(f"{results.get('img_path')}: unknown flip direction {direction!r}")
    shape = results.get('ori_shape') or results['img_shape']
    h, w = shape[:2]
    if direction in ('horizontal', 'diagonal'):
        m[0, 0], m[0, 2] = -1.0, w - 1.0
    if direction in ('vertical', 'diagonal'):
        m[1, 1], m[1, 2] = -1.0, h - 1.0
    return m


def input_warp(results: Dict) -> np.ndarray:
    """``TopdownAffine``'s warp (image -> input crop) as a 3x3 affine in pixel-index
    coordinates, recomputed from the final ``bbox_center``, ``bbox_scale``
    (aspect-fixed by TopdownAffine), ``bbox_rotation`` (degrees) and ``input_size``
    (w, h)."""
    center = np.asarray(results['bbox_center'], dtype=np.float32).reshape(-1, 2)[0]
    scale = np.asarray(results['bbox_scale'], dtype=np.float32).reshape(-1, 2)[0]
    rot = results.get('bbox_rotation', None)
    rot = 0.0 if rot is None else float(np.asarray(rot).reshape(-1)[0])
    w, h = results['input_size']
    return from_2x3(get_warp_matrix(center, scale, rot, output_size=(w, h)))


@TRANSFORMS.register_module()
class LoadPoseTransportKernel(BaseTransform):
    """Per-joint GST transport kernels ``K_fg (K, h, w)`` (and cost maps) for a
    top-down sample.

    Place after ``GenerateTarget`` (which resets ``results['field_mapping_table']``)
    and before ``PackPoseInputs``; the kernels reach the head as
    ``data_sample.gt_fields.gst_kernels``, the cost maps as ``gst_costs``.

    Required keys: ``img_path``, ``keypoints (1, K, 2)``, ``keypoints_visible``,
    ``transformed_keypoints``, ``bbox_center``, ``bbox_scale``, ``input_size``,
    optional ``bbox_rotation``, ``flip``, ``flip_direction``, ``flip_indices``,
    ``ori_shape``. Added keys: ``gst_kernels (K, h, w)`` float32 (an all-zero
    channel = joint not supervised: invisible or outside the input crop),
    ``gst_costs (K, h, w)`` float32 (with ``cost``; the plan's expected cost of a
    cell's mass, ``K_fg c + (1 - K_fg) c_0``: :func:`gst_mm.transport.point_costs` to the
    joint, :func:`gst_mm.transport.background_costs` to its background) and
    ``field_mapping_table`` (a copy with both added).

    Args:
        cache_dir: Gaussian cache root (``gaussian_cache_dir`` of the config;
            the same as ``GSTPrecomputeHook``'s).
        data_root: cache keys are image paths relative to it; must match the
            hook's (the data set's ``data_root``).
        stride: input pixels per heatmap cell (input 256 -> heatmap 64: 4).
        cutoff, bg_ratio: background cut-off ``d`` and ratio ``b`` (method.md 4).
        min_std, max_std: per-axis std clamp in input-crop pixels
            (``None`` = ``stride``).
        match_tol: max distance (original image px) between an instance's
            visible joint and its cached Gaussian mean.
        check_tol: max disagreement (input px) with MMPose's
            ``transformed_keypoints`` before the sample is rejected (guards
            against pipeline steps this transform does not reproduce).
        fit_cfg: the precompute hook's ``fit_cfg``; when given, an entry fitted
            with other settings is stale.
        plan: ``'hard'`` (one pinned Gaussian per joint) or ``'soft'``
            (docs/soft_kernel.md).
        cost: per-cell transport cost maps for the loss's cost term: ``'sqdist'``
            (squared distance to the joint in heatmap cells), ``'mahalanobis'``
            (``d_M^2 / 2`` under the joint's clamped Gaussian; the soft plan uses the
            joint's pinned Gaussian) or ``None`` (no maps: a loss without cost term).

    The cache entry is checked by the cache's validity rule: the loaded image's
    size, the image file's content hash and (with ``fit_cfg``) the fit settings;
    the joints are matched to the cached means (``match_tol``).
    """

    def __init__(self,
                 cache_dir: str,
                 data_root: Optional[str] = None,
                 stride: int = 4,
                 cutoff: float = DEFAULT_CUTOFF,
                 bg_ratio: float = DEFAULT_BG_RATIO,
                 min_std: Optional[float] = None,
                 max_std: float = DEFAULT_MAX_STD,
                 match_tol: float = 1.0,
                 check_tol: float = 0.05,
                 fit_cfg: Optional[dict] = None,
                 plan: str = 'hard',
                 cost: Optional[str] = 'sqdist') -> None:
        super().__init__()
        from gst_mm.transport import COST_KINDS
        if cost is not None and cost not in COST_KINDS:
            raise ValueError(f'LoadPoseTransportKernel: cost must be one of {COST_KINDS} or '
                             f'None, got {cost!r}')
        self.cost = cost
        if plan not in ('hard', 'soft'):
            raise ValueError(f"LoadPoseTransportKernel: plan must be 'hard' or 'soft', "
                             f'got {plan!r}')
        self.plan = plan
        #: the fit plan this transform reads (the precompute resolver asks for it)
        self.fit_plan = plan
        if stride <= 0:
            raise ValueError(f'LoadPoseTransportKernel: stride must be > 0, got {stride}')
        self.cache_dir = cache_dir
        self.data_root = data_root
        self.stride = int(stride)
        self.cutoff = float(cutoff)
        self.bg_ratio = float(bg_ratio)
        self.min_std = min_std
        self.max_std = float(max_std)
        self.match_tol = float(match_tol)
        self.check_tol = float(check_tol)
        from gst_mm.splatting.fit import fit_cfg_key
        self.fit_key = None if fit_cfg is None else fit_cfg_key(fit_cfg)
        self._cache = None

    # ------------------------------------------------------------------ helpers
    @property
    def cache(self):
        """The :class:`gst_mm.splatting.GaussianCache` (opened lazily, per worker)."""
        if self._cache is None:
            from gst_mm.splatting import GaussianCache
            self._cache = GaussianCache(self.cache_dir, data_root=self.data_root,
                                        memo=CACHE_MEMO)
        return self._cache

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_cache'] = None
        return state

    def grid_shape(self, input_size: Sequence[int]) -> Tuple[int, int]:
        """Heatmap ``(h, w)`` for ``input_size (w, h)``."""
        w, h = int(input_size[0]), int(input_size[1])
        if w % self.stride or h % self.stride:
            raise ValueError(f'input_size {input_size} is not a multiple of stride '
                             f'{self.stride}')
        return h // self.stride, w // self.stride

    def match_cached(self, means: np.ndarray, keypoints: np.ndarray,
                     img_path: str) -> np.ndarray:
        """Index of the cached Gaussian of each keypoint ``(n, 2)``: the nearest
        cached mean, which must lie within ``match_tol`` px (else the cache is stale:
        :class:`gst_mm.splatting.GaussianCacheError` naming the image)."""
        if len(keypoints) == 0:
            return np.zeros((0,), np.int64)
        from gst_mm.splatting import GaussianCacheError
        if len(means) == 0:
            raise GaussianCacheError(f'{img_path}: the Gaussian cache holds no Gaussians but the '
                             f'instance has {len(keypoints)} visible joints; re-run '
                             'tools/precompute.py')
        d2 = ((keypoints[:, None, :] - means[None, :, :]) ** 2).sum(-1)
        idx = d2.argmin(1)
        dist = np.sqrt(d2[np.arange(len(keypoints)), idx])
        if (dist > self.match_tol).any():
            bad = keypoints[dist > self.match_tol][0]
            raise GaussianCacheError(
                f'{img_path}: no cached Gaussian within {self.match_tol} px of joint '
                f'({bad[0]:.1f}, {bad[1]:.1f}) (nearest {dist.max():.2f} px); the cache in '
                f'{self.cache_dir} is stale for this image, re-run tools/precompute.py')
        return idx

    # ------------------------------------------------------------------ transform
    def transform(self, results: Dict) -> Dict:
        """Add ``results['gst_kernels']`` and register it for ``PackPoseInputs``."""
        from gst_mm.transport import (
            background_costs,
            plan_costs,
            point_costs,
            point_kernels,
            soft_point_kernels,
        )

        img_path = results.get('img_path', '<unknown image>')
        for key in ('keypoints', 'keypoints_visible', 'input_size', 'bbox_center',
                    'bbox_scale'):
            if key not in results:
                raise KeyError(f'LoadPoseTransportKernel ({img_path}): results lack '
                               f"'{key}'; place it after TopdownAffine and GenerateTarget")
        kpts = np.asarray(results['keypoints'], dtype=np.float64)
        if kpts.ndim != 3 or kpts.shape[0] != 1:
            raise ValueError(f'{img_path}: expected keypoints (1, K, 2) of one instance, '
                             f'got shape {kpts.shape}')
        kpts = kpts[0, :, :2]
        num_k = kpts.shape[0]
        vis = np.asarray(results['keypoints_visible'], dtype=np.float64).reshape(-1)[:num_k] > 0

        # geometry: original image -> (flip) -> input crop, pixel-index coordinates
        flip = flip_matrix(results)
        warp = input_warp(results)
        total = compose(flip, warp)
        # original (pre-flip) coordinates of the current joints, in current order
        orig = apply_to_points(np.linalg.inv(flip), kpts).astype(np.float64)

        means_in = apply_to_points(total, orig).astype(np.float64)
        if results.get('transformed_keypoints') is not None and vis.any():
            ref = np.asarray(results['transformed_keypoints'], np.float64)[0, :, :2]
            err = np.abs(ref[vis] - means_in[vis]).max()
            if err > self.check_tol:
                raise ValueError(
                    f'LoadPoseTransportKernel ({img_path}): recomputed joint positions '
                    f'differ from TopdownAffine\'s by {err:.3f} px; the pipeline moves '
                    'keypoints in a way this transform does not reproduce (supported: '
                    'RandomFlip, RandomHalfBody, RandomBBoxTransform, TopdownAffine)')

        grid = self.grid_shape(results['input_size'])
        w_in, h_in = (int(v) for v in results['input_size'])
        inside = ((means_in[:, 0] >= -0.5) & (means_in[:, 0] < w_in - 0.5)
                  & (means_in[:, 1] >= -0.5) & (means_in[:, 1] < h_in - 0.5))
        use = np.flatnonzero(vis & inside)

        kernels = np.zeros((num_k, grid[0], grid[1]), np.float32)
        costs = np.zeros_like(kernels) if self.cost is not None else None
        if len(use):
            shape = results.get('ori_shape')
            from gst_mm.splatting import file_sha1_memo
            cached = self.cache.load(img_path, image_size=None if shape is None else shape[:2],
                                     image_sha1=file_sha1_memo(img_path), fit_key=self.fit_key,
                                     plan=self.plan)
            # splatting convention (centres at +0.5) -> MMPose pixel indices
            cached_means = cached.means.detach().cpu().numpy().astype(np.float64) - 0.5
            idx = self.match_cached(cached_means, orig[use], img_path)
            kernel_cfg = dict(cutoff=self.cutoff, bg_ratio=self.bg_ratio,
                              min_std=self.min_std, max_std=self.max_std)
            cov_in = None
            if self.plan == 'soft':  # every component moves
                sub = cached.subset(idx)
                if self.cost == 'mahalanobis':  # under the joint's pinned Gaussian
                    cov_in = apply_to_covariances(total, sub.anchors.covariances.numpy())
                comp = sub.components
                c_in = apply_to_points(total, comp.means.numpy().astype(np.float64) - 0.5)
                k = soft_point_kernels((c_in + self.stride / 2.0).astype(np.float32),
                                       apply_to_covariances(total, comp.covariances.numpy()),
                                       sub.comp, sub.pen, sub.weight, len(idx), grid,
                                       self.stride, **kernel_cfg)
            else:
                cov = cached.covariances.detach().cpu().numpy()[idx]
                cov_in = apply_to_covariances(total, cov)
                # MMPose cell k <-> input index stride*k; point_kernels' cell k centre
                # is stride*k + stride/2 (module docstring)
                centred = means_in[use] + self.stride / 2.0
                k = point_kernels(centred.astype(np.float32), cov_in, grid, self.stride,
                                  **kernel_cfg)
            k = k.detach().cpu().numpy() if hasattr(k, 'detach') else np.asarray(k)
            kernels[use] = k.astype(np.float32)
            if costs is not None:
                centred = (means_in[use] + self.stride / 2.0).astype(np.float32)
                if cov_in is None:  # sqdist of the soft plan: the covariance is unused
                    cov_in = np.broadcast_to(np.eye(2, dtype=np.float32), (len(use), 2, 2))
                cov_c = np.ascontiguousarray(cov_in, np.float32)
                clamp = dict(min_std=self.min_std, max_std=self.max_std)
                c = point_costs(centred, cov_c, grid, self.stride, self.cost, **clamp)
                c0 = background_costs(cov_c, self.stride, self.cost, cutoff=self.cutoff,
                                      **clamp)
                costs[use] = plan_costs(torch.as_tensor(kernels[use]), c, c0).numpy()

        results[KERNEL_KEY] = kernels
        table = dict(results.get('field_mapping_table') or _DEFAULT_FIELD_TABLE)
        table[KERNEL_KEY] = KERNEL_KEY
        if costs is not None:
            results[COST_KEY] = costs
            table[COST_KEY] = COST_KEY
        results['field_mapping_table'] = table
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(cache_dir={self.cache_dir!r}, '
                f'data_root={self.data_root!r}, stride={self.stride}, cutoff={self.cutoff}, '
                f'bg_ratio={self.bg_ratio}, min_std={self.min_std}, max_std={self.max_std}, '
                f'plan={self.plan!r}, cost={self.cost!r})')
