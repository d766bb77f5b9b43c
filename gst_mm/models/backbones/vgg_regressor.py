"""VGG-19 stride-8 density regressor (method.md 6).

Layout (torchvision's ``vgg19`` names, so ImageNet weights load unchanged)::

    features.0 .. features.35   VGG-19 conv stack (16 conv 3x3 + ReLU, 4 max-pools),
                                i.e. torchvision's ``features`` without its last
                                max-pool (``features.36``): stride 16
    (bilinear up-sampling x2 to stride 8: output grid (H // 8, W // 8))
    reg_layer.0 / reg_layer.2   3x3 conv 512 -> 256, 3x3 conv 256 -> 128 (+ ReLU)
    density_layer.0             1x1 conv 128 -> 1, then ``abs`` (BL / GST) or ``relu``
                                (DM-Count): the non-negative density (``output_act``)

ImageNet weights: ``init_cfg=dict(type='Pretrained', checkpoint='/path/vgg19-dcbb9e9d.pth')``
(torchvision's file; its ``classifier.*`` entries are ignored). Nothing is
downloaded at run time; without ``init_cfg`` the network is randomly initialised.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from gst_mm.registry import MODELS

#: Convolutions per VGG-19 stage and the stage widths of the original network.
VGG19_NUM_CONVS = (2, 2, 4, 4, 4)
VGG19_WIDTHS = (64, 128, 256, 512, 512)
#: Maps from the last convolution's output to a non-negative density.
OUTPUT_ACTS = ('abs', 'relu')


def check_output_act(name: str, owner: str) -> str:
    """``name`` if it is one of :data:`OUTPUT_ACTS`, else a one-line ``ValueError``."""
    if name not in OUTPUT_ACTS:
        raise ValueError(f'{owner}: output_act must be one of {OUTPUT_ACTS}, got {name!r}')
    return name


def nonnegative(x: torch.Tensor, output_act: str) -> torch.Tensor:
    """The density of a pre-activation map: ``|x|`` (``'abs'``) or ``max(x, 0)`` (``'relu'``).

    ``abs`` is sign-agnostic, so a network may output either sign, and where the sign
    of the pre-activation changes inside a region with mass the density drops to 0
    along the zero crossing: a dark seam between two bright bands (the demo's top
    edge, docs/counting.md). ``relu`` is monotone: no seam is possible.
    """
    return torch.abs(x) if output_act == 'abs' else F.relu(x)


def make_vgg_features(widths: Sequence[int] = VGG19_WIDTHS,
                      num_convs: Sequence[int] = VGG19_NUM_CONVS,
                      in_channels: int = 3,
                      batch_norm: bool = False) -> nn.Sequential:
    """VGG conv stack with torchvision's module indices, last max-pool omitted.

    Each stage is ``num_convs[s]`` x (conv 3x3 pad 1, [BatchNorm,] ReLU) followed
    by a 2x2 max-pool, except the last stage (no pool). With the default
    arguments the module indices (``0`` .. ``35``) and tensor shapes equal
    torchvision's ``vgg19().features[:36]``; with ``batch_norm=True`` they equal
    ``vgg19_bn().features[:52]``.

    Args:
        widths: output channels of each stage.
        num_convs: convolutions of each stage.
        in_channels: input channels (3 for RGB).
        batch_norm: insert BatchNorm after every convolution (torchvision's ``_bn`` layout).

    Returns:
        ``nn.Sequential`` of stride ``2 ** (len(widths) - 1)``.
    """
    if len(widths) != len(num_convs):
        raise ValueError(f'widths {tuple(widths)} and num_convs {tuple(num_convs)} '
                         'must have one entry per stage')
    layers: List[nn.Module] = []
    channels = in_channels
    for stage, (width, n) in enumerate(zip(widths, num_convs)):
        for _ in range(n):
            layers.append(nn.Conv2d(channels, width, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
            channels = width
        if stage < len(widths) - 1:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


@MODELS.register_module()
class VGG19Regressor(BaseModule):
    """VGG-19 density regressor at stride 8 with a non-negative (``abs`` / ``relu``) output.

    Args:
        widths: stage widths; default VGG-19's ``(64, 128, 256, 512, 512)``.
            Narrower widths (e.g. ``(8, 16, 32, 64, 64)``) give a CPU-sized
            network of the same layout (ImageNet weights then do not apply).
        num_convs: convolutions per stage; default VGG-19's ``(2, 2, 4, 4, 4)``.
        head_widths: the two 3x3 convolutions of the regression head; default
            ``(256, 128)`` for the full widths, else ``(w // 2, w // 4)`` of the
            last stage width ``w``.
        batch_norm: torchvision's ``vgg19_bn`` trunk (BatchNorm after every
            convolution; ImageNet file ``vgg19_bn-c79401a0.pth``). The paper uses
            plain VGG-19; BatchNorm makes short from-scratch CPU runs converge.
        output_act: ``'abs'`` (the GST / BL code, default) or ``'relu'`` (DM-Count's;
            monotone, so no zero-crossing seams: the synthetic configs use it, see
            :func:`nonnegative`).
        init_cfg: MMEngine init config, e.g.
            ``dict(type='Pretrained', checkpoint='vgg19-dcbb9e9d.pth')``.

    Shapes: input ``(B, 3, H, W)`` normalised RGB (``H, W >= 16``); output
    ``(B, 1, H // 8, W // 8)`` density per cell of 8 x 8 input pixels, cell
    ``(r, c)`` centred at input pixel ``(8 c + 4, 8 r + 4)`` (x, y).
    """

    stride = 8

    def __init__(self,
                 widths: Sequence[int] = VGG19_WIDTHS,
                 num_convs: Sequence[int] = VGG19_NUM_CONVS,
                 head_widths: Optional[Sequence[int]] = None,
                 batch_norm: bool = False,
                 output_act: str = 'abs',
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.output_act = check_output_act(output_act, 'VGG19Regressor')
        if len(widths) != 5:
            raise ValueError(f'VGG19Regressor needs 5 stage widths (stride 16 trunk), '
                             f'got {tuple(widths)}')
        self.widths = tuple(int(w) for w in widths)
        self.features = make_vgg_features(self.widths, num_convs, batch_norm=batch_norm)
        last = self.widths[-1]
        if head_widths is None:
            head_widths = (256, 128) if last == 512 else (max(last // 2, 1), max(last // 4, 1))
        h1, h2 = (int(w) for w in head_widths)
        self.reg_layer = nn.Sequential(
            nn.Conv2d(last, h1, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(h1, h2, kernel_size=3, padding=1), nn.ReLU(inplace=True))
        self.density_layer = nn.Sequential(nn.Conv2d(h2, 1, kernel_size=1))
        self.trunk_stride = 2**(len(self.widths) - 1)

    def init_weights(self) -> None:
        """Random init (Kaiming, as torchvision's VGG), then ``init_cfg`` (e.g. ImageNet weights).

        The regression head always keeps the random init: pretrained checkpoints
        only cover ``features.*``.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # a small positive output keeps abs() away from its kink (relu: alive) at the start
        nn.init.normal_(self.density_layer[0].weight, std=0.01)
        nn.init.constant_(self.density_layer[0].bias, 1e-3)
        if self.init_cfg is not None:
            super().init_weights()
        self._is_init = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> density ``(B, 1, H // 8, W // 8)`` (non-negative)."""
        height, width = x.shape[-2:]
        if height < self.trunk_stride or width < self.trunk_stride:
            raise ValueError(f'VGG19Regressor: input {height}x{width} is smaller than the '
                             f'trunk stride {self.trunk_stride} px')
        x = self.features(x)
        # bilinear up-sampling to the stride-8 grid: exactly x2 when H, W are
        # multiples of 16; otherwise resampled onto (H // 8, W // 8) cells so the
        # map always matches the transport kernel's grid.
        x = F.interpolate(x, size=(height // self.stride, width // self.stride),
                          mode='bilinear', align_corners=False)
        x = self.reg_layer(x)
        return nonnegative(self.density_layer(x), self.output_act)
