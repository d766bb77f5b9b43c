"""Counting losses registered in gst_mm's ``MODELS`` registry.

Every loss shares one call signature (docs/architecture.md)::

    loss(density, points, *, kernels=None, targets=None, stride=8, image_shapes=None)
        -> scalar tensor

* ``density``: ``(B, 1, h, w)`` (or ``(B, h, w)``) non-negative predicted density.
* ``points``: list of ``B`` tensors ``(N_b, 2)``, ``(x, y)`` in input px.
* ``kernels``: list of ``B`` :class:`gst_mm.transport.TransportKernel` (GST only).
* ``targets``: optional list of per-point masses ``(N_b,)`` (default ones).
* ``stride``: input px per density cell (cell centres at ``stride * k + stride / 2``).
* ``image_shapes``: optional list of ``B`` ``(h, w)`` px, each input's source image
  before augmentation (``metainfo['ori_shape']``); only the Bayesian loss uses it.

The result is the per-image loss reduced over the batch's images, times
``loss_weight``. The reduction follows each method's public training code
(docs/counting.md, "Batch reduction"):

============== ==================================== =======================================
loss           per-term batch reduction             public code it follows
============== ==================================== =======================================
GSTLoss        mean over images                     infinite0522/GST (BL's ``Bay_Loss``)
PseudoDensity  mean over images (sum over cells)    leeyeehoo/CSRNet-pytorch (per image)
BayesianLoss   mean over images                     ZhihengCV/Bayesian-Crowd-Counting
DMCountLoss    count, TV: mean; OT: **sum**         cvlab-stonybrook/DM-Count
UOTLoss        **sum** over images                  Nightmare4214/GeneralizedLoss-...-semi
============== ==================================== =======================================

``batch_reduction`` (``'mean'`` / ``'sum'``; DM-Count: ``ot_reduction``) overrides the
default. The modules are thin: the maths lives in :mod:`gst_mm.transport`.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from gst_mm.registry import MODELS
from gst_mm.transport import (
    TransportKernel,
    batch_dm_count_loss,
    batch_reduce,
    bayesian_loss,
    check_reduction,
    pseudo_density_l2_loss,
    transport_loss,
    uot_loss,
)


def _check_batch(density: Tensor, points: Sequence[Tensor]) -> int:
    if density.dim() not in (3, 4) or (density.dim() == 4 and density.shape[1] != 1):
        raise ValueError(f'density must be (B, 1, h, w) or (B, h, w), got {tuple(density.shape)}')
    if len(points) != density.shape[0]:
        raise ValueError(f'{len(points)} point sets for a batch of {density.shape[0]} densities')
    return int(density.shape[0])


def _target(targets: Optional[Sequence[Optional[Tensor]]], b: int) -> Optional[Tensor]:
    return None if targets is None else targets[b]


class _CountingLoss(nn.Module):
    """Base: batch checks, ``loss_weight`` and the batch reduction; subclasses implement
    ``image_loss``.

    Args:
        loss_weight: multiplier of the reduced loss.
        batch_reduction: ``'mean'`` or ``'sum'`` of the per-image losses over the batch.
    """

    def __init__(self, loss_weight: float = 1.0, batch_reduction: str = 'mean') -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.batch_reduction = check_reduction(batch_reduction)

    def image_loss(self, b: int, density: Tensor, points: Tensor, kernel: Optional[TransportKernel],
                   target: Optional[Tensor], stride: float,
                   image_shape: Optional[Tuple[int, int]]) -> Tensor:
        """Loss of image ``b``; ``image_shape`` is its source image's ``(h, w)`` or None."""
        raise NotImplementedError

    def _check_inputs(self, density: Tensor, points: Sequence[Tensor],
                      targets: Optional[Sequence[Optional[Tensor]]],
                      image_shapes: Optional[Sequence[Optional[Tuple[int, int]]]]) -> None:
        _check_batch(density, points)
        if targets is not None and len(targets) != len(points):
            raise ValueError(f'{len(targets)} target sets for {len(points)} point sets')
        if image_shapes is not None and len(image_shapes) != len(points):
            raise ValueError(f'{len(image_shapes)} image shapes for {len(points)} point sets')

    def forward(self, density: Tensor, points: Sequence[Tensor], *,
                kernels: Optional[Sequence[TransportKernel]] = None,
                targets: Optional[Sequence[Optional[Tensor]]] = None,
                stride: float = 8,
                image_shapes: Optional[Sequence[Optional[Tuple[int, int]]]] = None) -> Tensor:
        self._check_inputs(density, points, targets, image_shapes)

        def one(b: int, d: Tensor) -> Tensor:
            kernel = None if kernels is None else kernels[b]
            shape = None if image_shapes is None else image_shapes[b]
            return self.image_loss(b, d, points[b], kernel, _target(targets, b), stride, shape)

        return self.loss_weight * batch_reduce(density, one, self.batch_reduction)


@MODELS.register_module()
class GSTLoss(_CountingLoss):
    """GST's Bayesian transport loss L_BT (Shang & Hong, AAAI 2026; method.md 2).

    Per image ``|| K^T density - [target, 0] ||_1`` with the image's precomputed
    sparse kernel ``K`` (built from fitted Gaussians by the data pipeline, cut-off 3,
    background ratio 0.015, stds clamped to ``[stride, 20]`` px); averaged over the
    images of the batch. The reference code (infinite0522/GST ``losses/bay_loss.py``,
    BL's ``Bay_Loss``) sums the entries per image and divides by the batch size, but
    overwrites its accumulator (``loss = torch.sum(res)``), so only the last image
    counts; here every image does.

    Args:
        loss_weight: multiplier of the loss.
        background: include the background term (default). With ``False`` the mass
            a kernel sends to its background column is left unpenalised; a kernel
            built without background (the "GST without background" ablation) works
            with either setting.
        batch_reduction: ``'mean'`` (default, the reference's intent) or ``'sum'``.
        cost_weight: ``lambda_W`` of the plan's transport cost (gst_mm's extension; 0,
            the default, is the paper, which drops it): with the predicted density
            ``z`` the plan is ``P = diag(z) K`` and ``W(P) = sum_i z_i sum_n K[i, n]
            c(x_i, y_n)`` (one more sparse product, :meth:`TransportKernel.transport_cost`),
            reduced over the batch like L_BT. Needs kernels with entry costs
            (``LoadTransportKernel(cost='sqdist')``). With ``cost_weight > 0`` the loss
            returns ``dict(loss_transport=..., loss_cost=...)`` (both logged).
    """

    def __init__(self, loss_weight: float = 1.0, background: bool = True,
                 batch_reduction: str = 'mean', cost_weight: float = 0.0) -> None:
        super().__init__(loss_weight, batch_reduction)
        if cost_weight < 0:
            raise ValueError(f'GSTLoss: cost_weight must be >= 0, got {cost_weight}')
        self.background = bool(background)
        self.cost_weight = float(cost_weight)

    def forward(self, density: Tensor, points: Sequence[Tensor], *,
                kernels: Optional[Sequence[TransportKernel]] = None,
                targets: Optional[Sequence[Optional[Tensor]]] = None,
                stride: float = 8,
                image_shapes: Optional[Sequence[Optional[Tuple[int, int]]]] = None) -> Tensor:
        if kernels is None:
            raise ValueError('GSTLoss needs the transport kernels of the batch '
                             '(data samples carry them as `transport_kernel`)')
        if len(kernels) != len(points):
            raise ValueError(f'{len(kernels)} kernels for {len(points)} point sets')
        transport = super().forward(density, points, kernels=kernels, targets=targets,
                                    stride=stride, image_shapes=image_shapes)
        if self.cost_weight == 0:
            return transport
        if any(k.costs is None for k in kernels):
            raise ValueError("GSTLoss(cost_weight > 0) needs kernels with entry costs: set "
                             "LoadTransportKernel(cost='sqdist') in the train pipeline")
        cost = batch_reduce(density, lambda b, d: kernels[b].to(d.device).transport_cost(d),
                            self.batch_reduction)
        return dict(loss_transport=transport,
                    loss_cost=self.loss_weight * self.cost_weight * cost)

    def image_loss(self, b, density, points, kernel, target, stride, image_shape):
        if kernel.num_points != len(points):
            raise ValueError(f'image {b} of the batch: kernel has {kernel.num_points} points, '
                             f'annotation has {len(points)}')
        if tuple(kernel.grid_shape) != tuple(density.shape[-2:]):
            raise ValueError(f'image {b} of the batch: kernel grid {kernel.grid_shape} != '
                             f'density {tuple(density.shape[-2:])}')
        return transport_loss(density, kernel, target, use_background=self.background)


@MODELS.register_module()
class PseudoDensityL2Loss(_CountingLoss):
    """L2 baseline: squared error to a pseudo density (points blurred by a fixed
    isotropic Gaussian, integrated per cell), summed over cells, averaged over images.

    The GST paper's L2 ablation has no public training code. Per image this is
    CSRNet's loss (leeyeehoo/CSRNet-pytorch ``train.py``: ``nn.MSELoss(size_average=False)``,
    a sum over cells, trained at batch 1, where sum and mean over images coincide);
    images are averaged as in the other BL-derived trainers. A mean over cells (as
    ``nn.MSELoss()``) would make the loss depend on the crop size.

    Args:
        sigma: blur std in input px (default 8, one cell at stride 8; fixed-kernel
            density maps in the literature use 4-15 px).
        loss_weight: multiplier of the loss.
        batch_reduction: ``'mean'`` (default) or ``'sum'`` over images.
    """

    def __init__(self, sigma: float = 8.0, loss_weight: float = 1.0,
                 batch_reduction: str = 'mean') -> None:
        super().__init__(loss_weight, batch_reduction)
        self.sigma = float(sigma)

    def image_loss(self, b, density, points, kernel, target, stride, image_shape):
        return pseudo_density_l2_loss(density, points, stride, sigma=self.sigma, target=target)


@MODELS.register_module()
class BayesianLoss(_CountingLoss):
    """Bayesian loss with background (BL+, Ma et al., ICCV 2019).

    Per image ``|| P^T density - [target, 0] ||_1`` with the posterior of isotropic
    Gaussian likelihoods (``sigma`` 8 px) and BL's background point at
    ``d = st_size * bg_ratio`` px from each cell's nearest annotation (squared distance
    ``(d - min_n ||x - y_n||)^2``, ZhihengCV/Bayesian-Crowd-Counting
    ``losses/post_prob.py``); no image information. An image without points costs its
    total predicted mass, with or without background (as BL's ``Bay_Loss``).

    Args:
        sigma: likelihood std, px (paper default 8).
        bg_ratio: background ratio (0.15 in BL's public training script).
        use_background: BL+ (default) or plain BL.
        st_size: BL's image-size term in px (the background crossover lies at
            ``st_size * bg_ratio / 2`` px from the nearest point). ``'image'``
            (default): as BL, the shorter side of the source image before augmentation
            (``image_shapes``, from ``metainfo['ori_shape']``), falling back to the
            input's shorter side (``min(h, w) * stride``) when shapes are not given;
            ``'input'``: always the input's (crop's) shorter side; a number: fixed.
        loss_weight: multiplier of the loss.
        batch_reduction: ``'mean'`` (default) or ``'sum'`` over images. BL's
            ``Bay_Loss`` (ZhihengCV/Bayesian-Crowd-Counting ``losses/bay_loss.py``)
            sums the ``N + 1`` entries per image and divides by the batch size.
    """

    def __init__(self, sigma: float = 8.0, bg_ratio: float = 0.15, use_background: bool = True,
                 st_size: Union[str, float] = 'image', loss_weight: float = 1.0,
                 batch_reduction: str = 'mean') -> None:
        super().__init__(loss_weight, batch_reduction)
        if isinstance(st_size, str) and st_size not in ('image', 'input'):
            raise ValueError(f"st_size must be 'image', 'input' or a number, got {st_size!r}")
        self.sigma = float(sigma)
        self.bg_ratio = float(bg_ratio)
        self.use_background = bool(use_background)
        self.st_size = st_size if isinstance(st_size, str) else float(st_size)

    def _st_size(self, image_shape: Optional[Tuple[int, int]]) -> Optional[float]:
        """The image-size term of an image (``None``: the input's short side)."""
        if not isinstance(self.st_size, str):
            return self.st_size
        if self.st_size == 'image' and image_shape is not None:
            return float(min(image_shape[0], image_shape[1]))
        return None

    def image_loss(self, b, density, points, kernel, target, stride, image_shape):
        return bayesian_loss(density, points, stride, target=target, sigma=self.sigma,
                             bg_ratio=self.bg_ratio, st_size=self._st_size(image_shape),
                             background=self.use_background)


@MODELS.register_module()
class DMCountLoss(_CountingLoss):
    """DM-Count (Wang et al., NeurIPS 2020):
    ``count_weight * L_C + ot_weight * L_OT + tv_weight * L_TV``.

    Defaults are the paper's and its public code's (cvlab-stonybrook/DM-Count,
    ``train.py`` / ``train_helper.py``): entropic Sinkhorn with ``reg`` 10 and 100
    iterations on squared distances in input px between cell centres and points, OT
    weight 0.1, TV weight 0.01, count (L1) weight 1, and its batch reductions: the
    count L1 and the TV term are averaged over the images of the batch, the OT term is
    **summed** over them (DM-Count accumulates ``OT_Loss`` per image without dividing;
    its default batch is 10). Per-step cost O(iterations x N x h*w). Per-point
    ``targets`` are ignored (DM-Count counts points).

    Args:
        reg, num_iters: Sinkhorn regularisation and iterations.
        ot_weight, tv_weight, count_weight: term weights.
        sinkhorn_method: ``'knopp'`` (scaling form, what DM-Count runs) or ``'log'``.
        ot_reduction: ``'sum'`` (default, DM-Count's code) or ``'mean'`` over the
            images (this module's behaviour before 2026-11: at batch ``B`` it makes the
            OT term ``B`` times weaker relative to the count and TV terms).
        loss_weight: multiplier of the total.
    """

    def __init__(self, reg: float = 10.0, num_iters: int = 100, ot_weight: float = 0.1,
                 tv_weight: float = 0.01, count_weight: float = 1.0,
                 sinkhorn_method: str = 'knopp', ot_reduction: str = 'sum',
                 loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight, 'mean')
        if sinkhorn_method not in ('knopp', 'log'):
            raise ValueError(f"sinkhorn_method must be 'knopp' or 'log', got {sinkhorn_method!r}")
        self.reg = float(reg)
        self.num_iters = int(num_iters)
        self.ot_weight = float(ot_weight)
        self.tv_weight = float(tv_weight)
        self.count_weight = float(count_weight)
        self.sinkhorn_method = sinkhorn_method
        self.ot_reduction = check_reduction(ot_reduction, 'ot_reduction')

    def forward(self, density: Tensor, points: Sequence[Tensor], *,
                kernels: Optional[Sequence[TransportKernel]] = None,
                targets: Optional[Sequence[Optional[Tensor]]] = None,
                stride: float = 8,
                image_shapes: Optional[Sequence[Optional[Tuple[int, int]]]] = None) -> Tensor:
        self._check_inputs(density, points, targets, image_shapes)
        loss, _ = batch_dm_count_loss(
            density, points, stride, reg=self.reg, num_iters=self.num_iters,
            ot_weight=self.ot_weight, tv_weight=self.tv_weight,
            count_weight=self.count_weight, method=self.sinkhorn_method,
            ot_reduction=self.ot_reduction)
        return self.loss_weight * loss


@MODELS.register_module()
class UOTLoss(_CountingLoss):
    """Unbalanced OT loss (Ma et al., "Learning to Count via Unbalanced Optimal
    Transport", AAAI 2021).

    Per image the KL-penalised UOT semi-dual is maximised over one potential per
    point by L-BFGS (``max_iter`` iterations, strong-Wolfe line search) for the
    current (detached) density; the loss is the semi-dual value at that potential
    (linear in the density). Defaults: ``eps`` 0.01, Euclidean (L2) cost on
    coordinates normalised to [0, 1] by the input's longer side, KL penalty weight
    ``tau`` 1, targets = ones.

    Batch: the per-image values are **summed** over the images. The UOT authors'
    code is not public; the public re-implementation that reproduces the paper's
    setting (Nightmare4214/GeneralizedLoss-Counting-Pytorch-semi,
    ``utils/emd_dot_trainer.py``) accumulates the semi-dual of every image of the batch
    without dividing. The loss has a single term, so the reduction only scales it
    (by ``B``); under Adam that changes little.

    Args:
        eps: entropic smoothing of the c-transform.
        tau: weight of both KL marginal penalties.
        cost_power: exponent of the Euclidean distance (1 = L2 distance).
        max_iter: L-BFGS iterations per step.
        loss_weight: multiplier of the loss.
        batch_reduction: ``'sum'`` (default) or ``'mean'`` (this module's behaviour
            before 2026-11).
    """

    def __init__(self, eps: float = 0.01, tau: float = 1.0, cost_power: float = 1.0,
                 max_iter: int = 20, loss_weight: float = 1.0,
                 batch_reduction: str = 'sum') -> None:
        super().__init__(loss_weight, batch_reduction)
        self.eps = float(eps)
        self.tau = float(tau)
        self.cost_power = float(cost_power)
        self.max_iter = int(max_iter)

    def image_loss(self, b, density, points, kernel, target, stride, image_shape):
        return uot_loss(density, points, stride, target=target, eps=self.eps, tau=self.tau,
                        cost_power=self.cost_power, max_iter=self.max_iter)
