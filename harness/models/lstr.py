"""LSTR: end-to-end lane shape prediction with a Transformer (Liu et al., WACV 2021, arXiv 2011.04233).

Faithful (official config ``LSTR.json`` and ``kp.py``): a small ResNet backbone, a 1x1 projection to
``d_model``, 2-D sine positional encoding added to queries and keys of every attention (DETR style),
a post-norm Transformer encoder-decoder (2 + 2 layers, 2 heads, FFN 4 d, dropout 0.1 in the official
config: d 32, FFN 128), ``n_queries`` learned lane queries (7 officially); FFN heads: a Linear to two
classes (no lane / lane), a 3-layer MLP per query to the lane's own parameters (b'', b''', lower,
upper) and a 3-layer MLP whose output is averaged over the queries to the curvature parameters shared
by the image's lanes (k'', f'', m'', n'). Each query's lane is the curve
x = k''/(y - f'')^2 + m''/(y - f'') + n' + b'' y - b''' (normalised coordinates) sampled at the label
rows (harness/tasks/lanes.py derives it from the camera and the ground-plane cubic). The set loss
(Hungarian matching on class probability, point L1 and bounds) is the task's
(harness/tasks/lane_set.py).

Simplified: the backbone is the harness's bottleneck ResNet (harness/models/resnet.py; 3x3 stem, no
max pool, BN trained) rather than ResNet-18 BasicBlocks [1, 2, 2, 2] with a frozen stem BN; its stride
is 2^(stages - 1) (4 with three stages) rather than 32, for 32 x 64 images. The denominator y - f'' is
kept at >= 0.02 in magnitude (sign kept) so that an untrained f'' near a row cannot give an infinite x.
No auxiliary decoder-layer losses. Output: [B, Q, 4 + R] (io ``lanes``, harness/models/base.py).

Shapes: B batch, C channels, H x W image, h x w feature map, D d_model, Q queries, R label rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from harness.core.config import bounded, positive
from harness.core.registry import register_model
from harness.models.base import ImageSizeAtLength, IOFormat, ModelOutput
from harness.models.detr import sine_position_2d
from harness.models.resnet import ResNetBody, backbone_config


@dataclass
class LSTRConfig(ImageSizeAtLength):
    image_size: int = positive(64)  # image width W (the task sets it)
    image_height: int = positive(32)
    in_channels: int = positive(1)
    row_start: int = bounded(12, lo=0)  # label rows: row_start, row_start + row_step, ... < image_height
    row_step: int = positive(1)
    stem: int = positive(16)
    widths: list[int] = field(default_factory=lambda: [8, 16, 32])
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1])
    expansion: int = positive(4)
    d_model: int = positive(32)
    n_heads: int = positive(2)
    d_ff: int = positive(128)
    enc_layers: int = positive(2)
    dec_layers: int = positive(2)
    n_queries: int = positive(7)
    dropout: float = bounded(0.1, lo=0.0, hi=0.99)

    @property
    def stride(self) -> int:
        return 2 ** (len(self.widths) - 1)

    def check(self) -> list[tuple[str, str]]:
        problems = backbone_problems(self)
        if self.d_model % self.n_heads:
            problems.append(("n_heads", f"must divide d_model ({self.d_model}), got {self.n_heads}"))
        if self.d_model % 4:
            problems.append(("d_model", f"must be a multiple of 4 (2-D sine encoding), got {self.d_model}"))
        return problems


class LaneBackboneConfig(Protocol):
    """The fields of a lane model's config that its backbone reads (LSTRConfig, LaneSegConfig)."""

    image_size: int
    image_height: int
    in_channels: int
    row_start: int
    stem: int
    widths: list[int]
    blocks: list[int]
    expansion: int


def backbone_problems(c: LaneBackboneConfig) -> list[tuple[str, str]]:
    """Image sizes the backbone cannot take, and bad label rows (shared with harness/models/lane_seg.py)."""
    if not c.widths or len(c.blocks) != len(c.widths):
        return [("blocks", f"must have one entry per stage of widths ({len(c.widths)}), got {len(c.blocks)}")]
    s = 2 ** (len(c.widths) - 1)
    for key, size in (("image_size", c.image_size), ("image_height", c.image_height)):
        if size % s or size // s < 2:
            return [(key, f"must be a multiple of the backbone stride {s} and >= {2 * s}, got {size}")]
    if c.row_start >= c.image_height:
        return [("row_start", f"must be below image_height ({c.image_height}), got {c.row_start}")]
    return []


def backbone(c: LaneBackboneConfig) -> ResNetBody:
    return ResNetBody(backbone_config(c))


class EncoderLayer(nn.Module):
    """Post-norm: x = LN(x + Attn(x + pos, x + pos, x)); x = LN(x + FFN(x))."""

    def __init__(self, c: LSTRConfig) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(c.d_model, c.n_heads, dropout=c.dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(c.d_model, c.d_ff), nn.ReLU(), nn.Dropout(c.dropout),
                                 nn.Linear(c.d_ff, c.d_model))
        self.norm1, self.norm2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        q = x + pos
        x = self.norm1(x + self.drop(self.attn(q, q, x, need_weights=False)[0]))
        return self.norm2(x + self.drop(self.ffn(x)))


class DecoderLayer(nn.Module):
    """Post-norm: self-attention over the queries, cross-attention to the memory, FFN."""

    def __init__(self, c: LSTRConfig) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(c.d_model, c.n_heads, dropout=c.dropout, batch_first=True)
        self.cross = nn.MultiheadAttention(c.d_model, c.n_heads, dropout=c.dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(c.d_model, c.d_ff), nn.ReLU(), nn.Dropout(c.dropout),
                                 nn.Linear(c.d_ff, c.d_model))
        self.norms = nn.ModuleList(nn.LayerNorm(c.d_model) for _ in range(3))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, t: torch.Tensor, qpos: torch.Tensor, mem: torch.Tensor,
                pos: torch.Tensor) -> torch.Tensor:
        q = t + qpos
        t = self.norms[0](t + self.drop(self.self_attn(q, q, t, need_weights=False)[0]))
        t = self.norms[1](t + self.drop(self.cross(t + qpos, mem + pos, mem, need_weights=False)[0]))
        return self.norms[2](t + self.drop(self.ffn(t)))


def mlp(d: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, out))


@register_model("lstr", config=LSTRConfig)
class LSTR(nn.Module):
    """Liu et al. 2021: lane queries, a Transformer and FFN heads regress each lane's curve parameters."""

    io: IOFormat = "lanes"

    def __init__(self, c: LSTRConfig) -> None:
        super().__init__()
        self.config = c
        self.body = backbone(c)
        self.proj = nn.Conv2d(self.body.out_channels, c.d_model, 1)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.dec_layers))
        self.queries = nn.Embedding(c.n_queries, c.d_model)
        self.cls = nn.Linear(c.d_model, 2)
        self.lane_head = mlp(c.d_model, 4)  # b'', b''', lower, upper
        self.shared_head = mlp(c.d_model, 4)  # k'', f'', m'', n' (averaged over queries)
        rows = torch.arange(c.row_start, c.image_height, c.row_step).float()
        self.register_buffer("y", (rows + 0.5) / c.image_height, persistent=False)

    def forward(self, images: torch.Tensor) -> ModelOutput:  # (B, C, H, W) -> (B, Q, 4 + R)
        f = self.proj(self.body(images))  # (B, D, h, w)
        b, d, h, w = f.shape
        pos = sine_position_2d(h, w, d).to(f.dtype)[None]  # (1, h*w, D)
        mem = f.flatten(2).transpose(1, 2)  # (B, h*w, D)
        for layer in self.encoder:
            mem = layer(mem, pos)
        qpos = self.queries.weight[None].expand(b, -1, -1)  # (B, Q, D)
        t = torch.zeros_like(qpos)
        for layer in self.decoder:
            t = layer(t, qpos, mem, pos)
        lane = self.lane_head(t)  # (B, Q, 4)
        k, f2, m, n = self.shared_head(t).mean(1, keepdim=True).unbind(-1)  # each (B, 1)
        dy = self.y - f2[..., None]  # (B, 1, R)
        dy = torch.where(dy >= 0, dy.clamp(min=0.02), dy.clamp(max=-0.02))
        x = k[..., None] / dy**2 + m[..., None] / dy + n[..., None] + lane[..., :1] * self.y - lane[..., 1:2]
        return ModelOutput(torch.cat([self.cls(t), lane[..., 2:4], x], -1))
