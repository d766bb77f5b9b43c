"""VGG-19 + graph-modulated transformer density regressor (the GST paper's best counter).

The GST paper's best numbers (QNRF, JHU-Crowd++, NWPU) use the ``vgg19_trans``
counter of its official repository, which is the Gramformer of Lin et al.
(AAAI 2024, "Gramformer: Learning Crowd Counting via Graph-Modulated
Transformer") on a VGG-19 trunk. Written here from that description::

    features.*      VGG-19 conv stack without its last max-pool (stride 16), as in
                    VGG19Regressor, so torchvision's ImageNet file loads unchanged
    encoder         ``num_layers`` graph-modulated transformer encoder layers on the
                    L = (H // 16) * (W // 16) trunk cells (tokens of ``C`` channels)
    (bilinear resampling onto the stride-8 grid (H // 8, W // 8))
    reg_layer       3x3 conv C -> C/2, 3x3 conv C/2 -> C/4 (+ ReLU), 1x1 conv -> 1, abs
                    (or relu: ``output_act``)

Graph modulation (per image, per layer):

- *attention graph*: a small conv branch (``anchor``: 3x3 conv C -> C/2, ReLU, 3x3
  conv -> heads, sigmoid) gives every token one value ``a_h in (0, 1)`` per head;
  the softmax attention of head ``h`` is multiplied, entry by entry, by
  ``|a_h(query) - a_h(key)|`` (no renormalisation), so a token attends to tokens
  unlike itself (diverse attention);
- *centrality encoding*: each token's in-degree in the k-nearest-neighbour graph of
  the current tokens (feature distance, ``k = knn_ratio * L``; not differentiated) is
  scaled by the image's largest degree into ``num_degrees`` levels and a learned
  embedding of its level is added to the queries and keys.

Each layer is post-norm: ``x = LN(x + W_o attn(x))`` (the attention's own residual
and norm), ``x = LN(x + dropout(that))``, ``x = LN(x + FFN(x))``.

Auxiliary loss: in training mode the backbone records, per layer, the variance
over keys of the softmax attention (before modulation), summed over queries and
heads and averaged over the batch; :meth:`auxiliary_losses` returns
``attn_var_weight`` times its sum over layers as ``loss_attn_var``, which
``DensityCounter`` adds to the counting loss (the official trainer adds
``0.1 * sum(var(attention, -1))`` to its loss at batch 1).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from gst_mm.registry import MODELS

from .vgg_regressor import (
    VGG19_NUM_CONVS,
    VGG19_WIDTHS,
    check_output_act,
    make_vgg_features,
    nonnegative,
)


def knn_in_degree(tokens: torch.Tensor, k: int) -> torch.Tensor:
    """In-degree of every token in the k-nearest-neighbour graph of its image.

    Args:
        tokens: ``(B, L, C)`` features.
        k: neighbours per token (``1 <= k <= L - 1``; a token is never its own
            neighbour).

    Returns:
        ``(B, L)`` float: how many tokens of the same image count this one among
        their ``k`` nearest (Euclidean) neighbours; each row sums to ``L * k``.
    """
    b, n, _ = tokens.shape
    dist = torch.cdist(tokens, tokens)
    eye = torch.eye(n, dtype=torch.bool, device=tokens.device)
    dist = dist.masked_fill(eye, float('inf'))
    idx = dist.topk(k, dim=-1, largest=False).indices  # (B, L, k)
    degree = tokens.new_zeros(b, n)
    degree.scatter_add_(1, idx.reshape(b, -1), tokens.new_ones(b, n * k))
    return degree


class GraphModulatedAttention(nn.Module):
    """Multi-head self-attention whose weights are scaled by ``|a(q) - a(k)|``.

    Args:
        dim: token channels ``C`` (a multiple of ``num_heads``).
        num_heads: heads.
        dropout: dropout on the attention weights and the output projection.

    Shapes: ``x (B, L, C)``, ``qk_pos (B, L, C)`` added to queries and keys,
    ``anchor (B, heads, L)`` in (0, 1) -> ``(out (B, L, C), softmax attention
    (B, heads, L, L))``; ``out`` already includes the residual and LayerNorm.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'GraphModulatedAttention: {dim} channels are not divisible '
                             f'by {num_heads} heads')
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.attn_drop = nn.Dropout(dropout)
        self.proj_drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, qk_pos: torch.Tensor,
                anchor: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b, n, c = x.shape
        qk = x + qk_pos
        q, k, v = self._heads(self.q(qk)), self._heads(self.k(qk)), self._heads(self.v(x))
        logits = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        attn = self.attn_drop(logits.softmax(dim=-1))  # (B, heads, L, L)
        graph = (anchor[..., :, None] - anchor[..., None, :]).abs()  # (B, heads, L, L)
        out = (attn * graph) @ v  # (B, heads, L, head_dim)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))
        return self.norm(out + qk), attn


class GraphModulatedEncoderLayer(nn.Module):
    """One post-norm encoder layer: graph-modulated attention, then a ReLU FFN.

    Shapes: ``x (B, L, C)`` -> ``(B, L, C)`` and the layer's softmax attention
    ``(B, heads, L, L)``.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn = GraphModulatedAttention(dim, num_heads, dropout)
        self.drop1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True),
                                 nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.drop2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, qk_pos: torch.Tensor,
                anchor: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        y, attn = self.attn(x, qk_pos, anchor)
        x = self.norm1(x + self.drop1(y))
        x = self.norm2(x + self.drop2(self.ffn(x)))
        return x, attn


@MODELS.register_module()
class VGG19TransformerRegressor(BaseModule):
    """VGG-19 trunk + graph-modulated transformer encoder, stride-8 non-negative density.

    Args:
        widths: VGG stage widths; the last one is the transformer's token width
            ``C`` (default VGG-19's ``(64, 128, 256, 512, 512)``: ``C = 512``).
        num_convs: convolutions per stage (VGG-19's ``(2, 2, 4, 4, 4)``).
        batch_norm: ``vgg19_bn`` trunk (BatchNorm after every convolution); the paper
            uses plain VGG-19, BatchNorm helps short from-scratch CPU runs.
        num_layers: encoder layers (2).
        num_heads: attention heads (8; ``C`` must be divisible by it).
        ffn_dim: FFN hidden width (default ``4 * C``, 2048 at ``C = 512``).
        dropout: dropout in attention and FFN (0.1).
        knn_ratio: neighbours per token of the centrality graph, as a fraction of
            the tokens ``L`` (0.3 in the official training script).
        num_degrees: centrality levels (embedding rows; 18 there).
        head_widths: the two 3x3 convolutions of the regression head (default
            ``(C // 2, C // 4)``: ``(256, 128)`` at ``C = 512``).
        attn_var_weight: weight of the attention-variance auxiliary loss (0.1;
            0 disables it).
        output_act: ``'abs'`` (the official model) or ``'relu'`` (see
            :func:`~gst_mm.models.backbones.vgg_regressor.nonnegative`).
        init_cfg: MMEngine init config, e.g. torchvision's VGG-19 file
            ``dict(type='Pretrained', checkpoint='vgg19-dcbb9e9d.pth')`` (it covers
            ``features.*`` only; encoder and head keep their random init).

    Shapes: input ``(B, 3, H, W)`` normalised RGB (``H, W >= 16``); tokens
    ``(B, L, C)`` with ``L = (H // 16) * (W // 16)``; output ``(B, 1, H // 8, W // 8)``,
    cell ``(r, c)`` centred at input pixel ``(8 c + 4, 8 r + 4)`` (x, y).
    Attention memory grows as ``B * heads * L^2`` (a 512 px tile: L = 1024).
    """

    stride = 8

    def __init__(self,
                 widths: Sequence[int] = VGG19_WIDTHS,
                 num_convs: Sequence[int] = VGG19_NUM_CONVS,
                 batch_norm: bool = False,
                 num_layers: int = 2,
                 num_heads: int = 8,
                 ffn_dim: Optional[int] = None,
                 dropout: float = 0.1,
                 knn_ratio: float = 0.3,
                 num_degrees: int = 18,
                 head_widths: Optional[Sequence[int]] = None,
                 attn_var_weight: float = 0.1,
                 output_act: str = 'abs',
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.output_act = check_output_act(output_act, 'VGG19TransformerRegressor')
        if len(widths) != 5:
            raise ValueError(f'VGG19TransformerRegressor needs 5 stage widths (stride 16 '
                             f'trunk), got {tuple(widths)}')
        if not 0 < knn_ratio < 1:
            raise ValueError(f'VGG19TransformerRegressor: knn_ratio must be in (0, 1), '
                             f'got {knn_ratio}')
        if num_degrees < 1:
            raise ValueError(f'VGG19TransformerRegressor: num_degrees must be >= 1, '
                             f'got {num_degrees}')
        self.widths = tuple(int(w) for w in widths)
        dim = self.widths[-1]
        if dim % num_heads:
            raise ValueError(f'VGG19TransformerRegressor: token width {dim} (last stage '
                             f'width) is not divisible by num_heads={num_heads}')
        self.features = make_vgg_features(self.widths, num_convs, batch_norm=batch_norm)
        self.trunk_stride = 2**(len(self.widths) - 1)
        self.knn_ratio = float(knn_ratio)
        self.num_degrees = int(num_degrees)
        self.attn_var_weight = float(attn_var_weight)
        self.anchor = nn.Sequential(
            nn.Conv2d(dim, max(dim // 2, 1), 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(max(dim // 2, 1), num_heads, 3, padding=1), nn.Sigmoid())
        self.degree_embed = nn.Embedding(self.num_degrees, dim)
        self.layers = nn.ModuleList(
            GraphModulatedEncoderLayer(dim, num_heads, int(ffn_dim or 4 * dim), dropout)
            for _ in range(num_layers))
        if head_widths is None:
            head_widths = (max(dim // 2, 1), max(dim // 4, 1))
        h1, h2 = (int(w) for w in head_widths)
        self.reg_layer = nn.Sequential(
            nn.Conv2d(dim, h1, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(h1, h2, 3, padding=1), nn.ReLU(inplace=True))
        self.density_layer = nn.Sequential(nn.Conv2d(h2, 1, kernel_size=1))
        self._attn_var: List[torch.Tensor] = []

    def init_weights(self) -> None:
        """Kaiming convolutions, Xavier encoder matrices, then ``init_cfg`` (e.g. ImageNet
        weights for ``features.*``)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for p in list(self.layers.parameters()) + list(self.degree_embed.parameters()):
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        # a small positive output keeps abs() away from its kink at the start
        nn.init.normal_(self.density_layer[0].weight, std=0.01)
        nn.init.constant_(self.density_layer[0].bias, 1e-3)
        if self.init_cfg is not None:
            super().init_weights()
        self._is_init = True

    def degree_levels(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, L, C)`` -> ``(B, L)`` long centrality levels in ``[0, num_degrees)``:
        k-NN in-degree divided by the image's largest, times ``num_degrees - 1``,
        truncated (a lone token: level 0)."""
        n = tokens.shape[1]
        if n < 2:
            return tokens.new_zeros(tokens.shape[:2], dtype=torch.long)
        k = min(max(int(self.knn_ratio * n), 1), n - 1)
        with torch.no_grad():
            degree = knn_in_degree(tokens.detach().float(), k)
            top = degree.amax(dim=1, keepdim=True).clamp_min(1.0)
            return (degree / top * (self.num_degrees - 1)).long()

    def encode(self, feats: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Trunk features ``(B, C, h, w)`` -> encoded ``(B, C, h, w)`` and each layer's
        softmax attention ``(B, heads, h*w, h*w)``."""
        b, c, h, w = feats.shape
        anchor = self.anchor(feats).flatten(2)  # (B, heads, L)
        x = feats.flatten(2).transpose(1, 2)  # (B, L, C)
        attns = []
        for layer in self.layers:
            pos = self.degree_embed(self.degree_levels(x))
            x, attn = layer(x, pos, anchor)
            attns.append(attn)
        return x.transpose(1, 2).reshape(b, c, h, w), attns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> density ``(B, 1, H // 8, W // 8)`` (non-negative)."""
        height, width = x.shape[-2:]
        if height < self.trunk_stride or width < self.trunk_stride:
            raise ValueError(f'VGG19TransformerRegressor: input {height}x{width} is smaller '
                             f'than the trunk stride {self.trunk_stride} px')
        feats, attns = self.encode(self.features(x))
        # (a single token has no variance over keys: nothing to regularise)
        self._attn_var = ([a.var(dim=-1).sum(dim=(1, 2)).mean() for a in attns]
                          if self.training and self.attn_var_weight > 0
                          and feats.shape[-2] * feats.shape[-1] > 1 else [])
        feats = F.interpolate(feats, size=(height // self.stride, width // self.stride),
                              mode='bilinear', align_corners=False)
        return nonnegative(self.density_layer(self.reg_layer(feats)), self.output_act)

    def auxiliary_losses(self) -> Dict[str, torch.Tensor]:
        """``{'loss_attn_var': weight * sum over layers}`` of the last training forward
        (``{}`` in eval mode or with ``attn_var_weight=0``)."""
        if not self._attn_var:
            return {}
        return dict(loss_attn_var=self.attn_var_weight * torch.stack(self._attn_var).sum())
