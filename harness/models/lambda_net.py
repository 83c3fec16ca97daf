"""LambdaNetworks: lambda layers, LambdaResNet, and a single-layer probe against global self-attention.

Bello. "LambdaNetworks: Modeling Long-Range Interactions Without Attention". ICLR 2021, arXiv 2102.08602.

A lambda layer summarises the context into linear functions (lambdas) and applies them to each query,
instead of attending from every query to every context position:

- queries Q = BN(W_Q x): h heads of depth k per position; keys K = W_K x: depth k (x intra-depth u);
  values V = BN(W_V x): depth v = d / h (x u); all 1x1 projections without bias. Batch norm on
  queries and values as in the paper.
- content lambda   lambda^c = softmax(K)^T V  (k x v, softmax over the context positions m), shared
  by every query;
- position lambdas lambda^p_n = E_n^T V       (k x v per query position n) from relative position
  embeddings E_nm in R^{k x u};
- output           y_n = (lambda^c + lambda^p_n)^T q_n per head; the h query heads share the lambdas
  (multi-query), so the layer maps d = h*v channels to d channels. No output projection (the next 1x1
  conv of the bottleneck plays that role).

Position lambdas (``position: true``), two ways:
- ``context: global``: a learned table of the (2S-1)^2 relative offsets of an S x S map, each a k x u
  embedding, gathered into E of shape (n, m, k, u) and contracted with V ("nmku,buvm->bnkv"). This
  materialises E, the Theta(k n m) memory term of the paper's Table 2 (shared across the batch).
- ``context: local``: the lambda convolution, the paper's choice for LambdaResNets: lambda^p_n sums
  an r x r kernel (k outputs, u inputs) over V's neighbourhood of n, for each of the v value channels.
  Implemented as one 2-D conv with u input and k output channels over the (B*v) value maps
  (= a Conv3d with kernel (1, r, r) over (u, v, H, W); the 2-D form measured faster on this CPU), so
  its memory is Theta(b n k v) and no n x m tensor exists. ``r`` (odd) defaults to 23 as in the paper's
  ImageNet models and the lucidrains reimplementation; a kernel wider than 2S-1 on an S x S map only
  ever multiplies zero padding, so r is clamped to min(r, 2S-1) (S: the map side at ``image_size``),
  which changes the parameter count but not the function. With r = 2S-1 the local layer computes
  exactly the global one (the tests check the conv against the explicit E).
``position: false`` keeps the content lambda only (permutation-equivariant over pixels).

LambdaResNet (``arch: resnet``): the bottleneck ResNet of ``harness.models.resnet`` with the 3x3 conv
of every block in ``lambda_stages`` (0-based; default the last stage, like the paper's hybrid
LambdaResNets that put lambda layers in the late stages and keep convolutions early) replaced by the
layer; where that conv had stride 2, the layer is followed by a 3x3 average pool of stride 2 (the
usual placement in reimplementations; the paper's exact choice is not in a readable copy).
``layer: attention`` is the baseline: global multi-head self-attention over all pixels
(``harness.models.blocks.MultiHeadAttention``, ``attention: sdpa|math``) in the same places. It has
no position encoding of its own: the convs before it give its inputs position through zero padding.

``arch: layer`` is the cost probe: conv stem to ``width`` channels at full resolution -> one lambda or
attention layer -> BN, ReLU -> global pool -> linear, so a profile at ``image_size`` 64 measures one
mixing layer on a 64x64 map.

Simplified / not in the paper: small-image ResNet (see resnet.py); the global embedding table is
sized for the map at ``image_size`` and a smaller map (e.g. the registry tests' 8x8 images) uses its
central offsets; position embeddings and lambda-conv kernels start N(0, 1/(u * window)) with window
= S^2 (global) or r^2 (local), an init chosen here so that lambda^p has the scale of lambda^c; the
projections use the backbone's He init; every block of a chosen stage gets the layer (the paper's
hybrids choose individual blocks).

Shapes: B batch, d channels, H x W map, n = m = H*W positions, h heads, k query/key depth, u intra-depth,
v value depth = d / h.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from harness.core.config import positive
from harness.core.registry import register_model
from harness.models.base import IOFormat, ModelOutput
from harness.models.blocks import AttentionKind, MultiHeadAttention
from harness.models.resnet import ClassifierHead, ResNetBody, ResNetConfig, conv3x3, init_resnet

Context = Literal["global", "local"]


class LambdaLayer(nn.Module):
    """Lambda layer (Sec. 3-4): y_n = (softmax(K)^T V + E_n^T V)^T q_n, h query heads sharing lambdas."""

    def __init__(
        self,
        dim: int,
        dim_k: int = 16,
        dim_u: int = 1,
        heads: int = 4,
        context: Context = "local",
        r: int = 23,
        position: bool = True,
        size: int = 16,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads ({heads}) must divide dim ({dim})")
        if r < 1 or r % 2 == 0:
            raise ValueError(f"r must be odd and >= 1, got {r}")
        self.h, self.k, self.u, self.v = heads, dim_k, dim_u, dim // heads
        self.context, self.size = context, size
        self.to_q = nn.Sequential(nn.Conv2d(dim, dim_k * heads, 1, bias=False), nn.BatchNorm2d(dim_k * heads))
        self.to_k = nn.Conv2d(dim, dim_k * dim_u, 1, bias=False)
        vu = self.v * dim_u
        self.to_v = nn.Sequential(nn.Conv2d(dim, vu, 1, bias=False), nn.BatchNorm2d(vu))
        self.rel: nn.Parameter | None = None
        self.pos_conv: nn.Conv2d | None = None
        if position and context == "global":
            span = 2 * size - 1  # relative offsets -(S-1)..(S-1) per axis
            self.rel = nn.Parameter(torch.randn(span, span, dim_k, dim_u) * (dim_u * size * size) ** -0.5)
        elif position:
            self.r = min(r, 2 * size - 1)
            self.pos_conv = nn.Conv2d(dim_u, dim_k, self.r, padding=self.r // 2, bias=False)
            nn.init.normal_(self.pos_conv.weight, std=(dim_u * self.r * self.r) ** -0.5)

    def embeddings(self, height: int, width: int) -> torch.Tensor:
        """E (n, m, k, u) of a height x width map: E_nm = table[offset of m from n]."""
        assert self.rel is not None
        s = self.size
        if height > s or width > s:
            raise ValueError(f"a {height}x{width} map exceeds the {s}x{s} map of the position table")
        ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
        ys, xs = ys.reshape(-1), xs.reshape(-1)  # (n,)
        dy = ys[None, :] - ys[:, None] + s - 1  # (n, m): row offset of m from n, shifted to >= 0
        dx = xs[None, :] - xs[:, None] + s - 1
        flat = (dy * (2 * s - 1) + dx).reshape(-1).to(self.rel.device)  # (n*m,)
        table = self.rel.reshape((2 * s - 1) ** 2, self.k * self.u)
        n = height * width
        return table.index_select(0, flat).view(n, n, self.k, self.u)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, d, H, W) -> (B, d, H, W)
        b, _, height, width = x.shape
        n = height * width
        q = self.to_q(x).view(b, self.h, self.k, n)  # (B, h, k, n)
        keys = self.to_k(x).view(b, self.u, self.k, n).softmax(dim=-1)  # (B, u, k, m), normalised over m
        vals = self.to_v(x).view(b, self.u, self.v, n)  # (B, u, v, m)
        lam_c = torch.einsum("bukm,buvm->bkv", keys, vals)  # content lambda (B, k, v)
        y = torch.einsum("bhkn,bkv->bhvn", q, lam_c)  # (B, h, v, n)
        if self.rel is not None:
            e = self.embeddings(height, width)  # (n, m, k, u)
            lam_p = torch.einsum("nmku,buvm->bnkv", e, vals)  # position lambdas (B, n, k, v)
            y = y + torch.einsum("bhkn,bnkv->bhvn", q, lam_p)
        elif self.pos_conv is not None:
            maps = vals.view(b, self.u, self.v, height, width).transpose(1, 2)  # (B, v, u, H, W)
            lam_p = self.pos_conv(maps.reshape(b * self.v, self.u, height, width))  # (B*v, k, H, W)
            y = y + torch.einsum("bhkn,bvkn->bhvn", q, lam_p.view(b, self.v, self.k, n))
        return y.reshape(b, self.h * self.v, height, width)


class PixelSelfAttention(nn.Module):
    """Global multi-head self-attention over the H*W pixels of a map (the baseline the paper compares)."""

    def __init__(self, dim: int, heads: int, kind: AttentionKind) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, heads, 0.0, kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, d, H, W) -> (B, d, H, W)
        b, d, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, n, d)
        return self.attn(tokens).transpose(1, 2).reshape(b, d, height, width)


@dataclass
class LambdaConfig(ResNetConfig):
    arch: Literal["resnet", "layer"] = "resnet"  # LambdaResNet, or one layer on a full-resolution map
    layer: Literal["lambda", "attention"] = "lambda"  # attention: the global self-attention baseline
    lambda_stages: list[int] | None = None  # 0-based stages whose 3x3 convs are replaced; null: the last
    dim_k: int = positive(16)  # query/key depth |k| (paper: 16)
    dim_u: int = positive(1)  # intra-depth |u| (paper: 1, or 4 in one ablation)
    heads: int = positive(4)  # query heads sharing the lambdas (also the attention baseline's heads)
    context: Context = "local"  # local: lambda convolution over r x r; global: relative embeddings
    r: int = 23  # lambda-convolution kernel side (odd)
    position: bool = True  # false: content lambda only
    attention: AttentionKind = "sdpa"  # the attention baseline's kernel: fused, or materialising (math)
    width: int = positive(64)  # arch layer: channels of the map the layer sees

    def stages(self) -> list[int]:
        return [len(self.widths) - 1] if self.lambda_stages is None else list(self.lambda_stages)

    def check(self) -> list[tuple[str, str]]:
        problems = super().check()
        if problems:
            return problems
        if self.r < 1 or self.r % 2 == 0:
            return [("r", f"must be odd and >= 1, got {self.r}")]
        if self.arch == "layer":
            if self.width % self.heads:
                return [("heads", f"must divide width ({self.width}), got {self.heads}")]
            return []
        for s in self.stages():
            if not 0 <= s < len(self.widths):
                return [("lambda_stages", f"stage {s} does not exist: stages are 0..{len(self.widths) - 1}")]
            if self.widths[s] % self.heads:
                return [("heads", f"must divide the width of stage {s} ({self.widths[s]}), got {self.heads}")]
        return []


def mixing_layer(c: LambdaConfig, channels: int, size: int) -> nn.Module:
    """The lambda layer, or the self-attention baseline, on a ``channels`` x size x size map."""
    if c.layer == "attention":
        return PixelSelfAttention(channels, c.heads, c.attention)
    return LambdaLayer(channels, c.dim_k, c.dim_u, c.heads, c.context, c.r, c.position, size)


@register_model("lambda", config=LambdaConfig)
class LambdaNet(nn.Module):
    """Bello 2021: LambdaResNet (lambda layers for 3x3 convs), or one lambda/attention layer (arch layer)."""

    io: IOFormat = "image"

    def __init__(self, c: LambdaConfig) -> None:
        super().__init__()
        self.config = c
        if c.arch == "resnet":
            stages = set(c.stages())

            def mixer(stage: int, channels: int, stride: int, size: int) -> nn.Module:
                if stage not in stages:
                    return conv3x3(stage, channels, stride, size)
                layer = mixing_layer(c, channels, size)
                return layer if stride == 1 else nn.Sequential(layer, nn.AvgPool2d(3, stride, padding=1))

            self.body: nn.Module = ResNetBody(c, mixer)
            channels = self.body.out_channels
        else:
            self.body = nn.Sequential(
                nn.Conv2d(c.in_channels, c.width, 3, padding=1, bias=False),
                nn.BatchNorm2d(c.width), nn.ReLU(),
                mixing_layer(c, c.width, c.image_size),
                nn.BatchNorm2d(c.width), nn.ReLU(),
            )
            init_resnet(self.body)
            channels = c.width
        self.head = ClassifierHead(channels, c.n_classes, c.dropout)

    def forward(self, images: torch.Tensor) -> ModelOutput:  # (B, C_in, S, S) -> logits (B, K)
        return ModelOutput(self.head(self.body(images)))

