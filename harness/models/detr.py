"""DETR: a CNN backbone, a Transformer encoder-decoder and a set of learned object queries.

Carion, Massa, Synnaeve, Usunier, Kirillov, Zagoruyko. "End-to-End Object Detection with
Transformers". ECCV 2020, arXiv 2005.12872.

Faithful (Sec. 3.2, App. A.3, Fig. 10): a CNN backbone's last feature map, a 1x1 conv projecting it to
``d_model``, flattened to H*W tokens; a fixed 2-D sine positional encoding (half the channels encode y,
half x, each coordinate normalised to (0, 2 pi] over the map, temperature 10000) added to the queries
and keys of every attention layer, never to the values; post-norm encoder layers (self-attention, FFN,
each followed by residual add and LayerNorm) and decoder layers (self-attention among the queries,
cross-attention to the encoder output, FFN); ``num_queries`` learned query embeddings added to the
queries and keys of the decoder's attentions, the decoder's input starting at zero; every decoder layer's
output goes through a shared LayerNorm and the shared heads: a linear class head with K + 1 outputs (the
last is "no object") and a 3-layer ReLU MLP giving (cx, cy, w, h) through a sigmoid. All decoder layers'
predictions are returned (io ``detect``) so the task's set loss (harness/tasks/set_loss.py: Hungarian
matching on class probability, L1 and GIoU costs 1/5/2, no-object weight 0.1, L1 x5, GIoU x2) applies
to every layer, as the paper's auxiliary decoding losses.

Simplified for 32x32 images on a CPU: the backbone is the harness's small bottleneck ResNet
(harness/models/resnet.py: 3x3 stem, 3 stages, output stride 4) trained from scratch, not an
ImageNet-pretrained ResNet-50 with frozen BN at stride 32; the Transformer is 2 + 2 layers of width 64
with 4 heads and FFN 128 instead of 6 + 6 of width 256 with 8 heads and FFN 2048; 12 queries instead
of 100 (the scenes hold at most 6 objects; the paper's ratio is about 100 to COCO's at most 63 per
image); dropout 0 instead of 0.1 (short training); no padding masks (all images have one size); no
auxiliary panoptic head. The optimiser (AdamW, the backbone at a 10x lower rate) is the train config's:
here one rate for all parameters.

Shapes: B batch, S image side, H x W feature map, N = H*W tokens, Q queries, d width, D decoder layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from harness.core.config import bounded, positive
from harness.core.registry import register_model
from harness.models.base import ImageSizeAtLength, IOFormat, ModelOutput
from harness.models.resnet import ResNetBody, ResNetConfig, backbone_config

MAX_QUERIES = 100  # COCO scores at most 100 detections per image; one per query for a softmax head


@dataclass
class DetrConfig(ImageSizeAtLength):
    image_size: int = positive(32)  # the task sets it
    in_channels: int = positive(3)
    n_classes: int = positive(4)  # object classes K (the class head adds "no object")
    stem: int = positive(16)  # backbone: harness ResNet keys
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1])
    expansion: int = positive(4)
    d_model: int = positive(64)
    n_heads: int = positive(4)
    d_ff: int = positive(128)
    enc_layers: int = positive(2)
    dec_layers: int = positive(2)
    num_queries: int = bounded(12, lo=1, hi=MAX_QUERIES)
    dropout: float = bounded(0.0, lo=0.0, hi=0.99)

    def backbone_config(self) -> ResNetConfig:
        return backbone_config(self)

    def check(self) -> list[tuple[str, str]]:
        problems = self.backbone_config().check()
        if problems:
            return problems
        if self.d_model % self.n_heads:
            return [("n_heads", f"must divide d_model ({self.d_model}), got {self.n_heads}")]
        if self.d_model % 4:
            return [("d_model", f"must be a multiple of 4 (the 2-D sine encoding), got {self.d_model}")]
        return []


def sine_position_2d(h: int, w: int, d: int) -> torch.Tensor:
    """(H*W, d) fixed encoding: d/2 channels for y then d/2 for x, each the interleaved sin/cos of the
    coordinate ((i + 1) / H * 2 pi) over d/4 frequencies 10000^(2j / (d/2)) (DETR's PositionEmbeddingSine
    with normalize=True)."""
    half = d // 2
    dim_t = 10000 ** (2 * (torch.arange(half) // 2) / half)
    y = (torch.arange(1, h + 1, dtype=torch.float32) / (h + 1e-6) * 2 * math.pi)[:, None] / dim_t
    x = (torch.arange(1, w + 1, dtype=torch.float32) / (w + 1e-6) * 2 * math.pi)[:, None] / dim_t
    y = torch.stack([y[:, 0::2].sin(), y[:, 1::2].cos()], -1).flatten(1)  # (H, d/2)
    x = torch.stack([x[:, 0::2].sin(), x[:, 1::2].cos()], -1).flatten(1)  # (W, d/2)
    return torch.cat([y[:, None].expand(h, w, half), x[None].expand(h, w, half)], -1).reshape(h * w, d)


class Attention(nn.Module):
    """Multi-head attention with separate query, key and value inputs (positions already added by the
    caller to query and key), through ``scaled_dot_product_attention``."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.p = heads, dropout
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, lq, d = q.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, -1, self.heads, d // self.heads).transpose(1, 2)

        o = F.scaled_dot_product_attention(split(self.q(q)), split(self.k(k)), split(self.v(v)),
                                           dropout_p=self.p if self.training else 0.0)
        return self.out(o.transpose(1, 2).reshape(b, lq, d))


class FeedForward(nn.Module):
    def __init__(self, d: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class EncoderLayer(nn.Module):
    """Post-norm: x = LN(x + SA(x + pos, x + pos, x)); x = LN(x + FFN(x))."""

    def __init__(self, d: int, heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.attn, self.ffn = Attention(d, heads, dropout), FeedForward(d, d_ff, dropout)
        self.norm1, self.norm2, self.drop = nn.LayerNorm(d), nn.LayerNorm(d), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x + pos, x + pos, x)))
        return self.norm2(x + self.drop(self.ffn(x)))


class DecoderLayer(nn.Module):
    """Post-norm: self-attention among the queries, cross-attention to the memory, FFN."""

    def __init__(self, d: int, heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.self_attn, self.cross = Attention(d, heads, dropout), Attention(d, heads, dropout)
        self.ffn = FeedForward(d, d_ff, dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def forward(self, t: torch.Tensor, qpos: torch.Tensor, mem: torch.Tensor,
                pos: torch.Tensor) -> torch.Tensor:
        t = self.norms[0](t + self.drop(self.self_attn(t + qpos, t + qpos, t)))
        t = self.norms[1](t + self.drop(self.cross(t + qpos, mem + pos, mem)))
        return self.norms[2](t + self.drop(self.ffn(t)))


class BoxMLP(nn.Module):
    """3-layer ReLU MLP d -> d -> d -> out (the box head; its sigmoid is applied by the caller)."""

    def __init__(self, d: int, out: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_model("detr", config=DetrConfig)
class Detr(nn.Module):
    """Carion et al. 2020: ResNet features, Transformer encoder-decoder, object queries, set loss."""

    io: IOFormat = "detect"

    def __init__(self, c: DetrConfig) -> None:
        super().__init__()
        self.config = c
        self.backbone = ResNetBody(c.backbone_config())
        self.proj = nn.Conv2d(self.backbone.out_channels, c.d_model, 1)
        self.encoder = nn.ModuleList(EncoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout)
                                     for _ in range(c.enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout)
                                     for _ in range(c.dec_layers))
        self.dec_norm = nn.LayerNorm(c.d_model)
        self.queries = nn.Parameter(torch.randn(c.num_queries, c.d_model))  # nn.Embedding's N(0, 1)
        self.class_head = nn.Linear(c.d_model, c.n_classes + 1)
        self.box_head = BoxMLP(c.d_model)
        for layer in [*self.encoder, *self.decoder]:  # the official code's xavier init of the Transformer
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def forward(self, images: torch.Tensor) -> ModelOutput:  # (B, C, S, S) -> logits (B, D, Q, K + 5)
        f = self.proj(self.backbone(images))  # (B, d, H, W)
        b, d, h, w = f.shape
        x = f.flatten(2).transpose(1, 2)  # (B, N, d)
        pos = sine_position_2d(h, w, d).to(x)[None]
        for layer in self.encoder:
            x = layer(x, pos)
        qpos = self.queries[None].expand(b, -1, -1)
        t = torch.zeros_like(qpos)
        outs = []
        for layer in self.decoder:
            t = layer(t, qpos, x, pos)
            outs.append(self.dec_norm(t))
        hs = torch.stack(outs, 1)  # (B, D, Q, d)
        return ModelOutput(torch.cat([self.class_head(hs), self.box_head(hs).sigmoid()], -1))
