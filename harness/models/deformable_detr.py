"""Deformable DETR: multi-scale deformable attention over backbone feature levels, in pure PyTorch.

Zhu, Su, Lu, Li, Wang, Dai. "Deformable DETR: Deformable Transformers for End-to-End Object Detection".
ICLR 2021, arXiv 2010.04159.

Faithful: multi-scale deformable attention (Sec. 4.1, Eq. 3): for each query, head m, level l and point
k, a sampling offset (two numbers) and an attention weight are linear functions of the query; the
weights are softmax-normalised over the L*K points of a head; the value map of each level (a linear
projection of the input, split into heads) is sampled bilinearly at the reference point plus the offset
(``F.grid_sample``, ``align_corners=False``, zero padding, offsets in pixels of the level, so divided by
its width and height); the heads' weighted sums are concatenated and projected. Initialisation (App.
A.2): offset weights 0 and offset biases pointing head m in direction 2 pi m / M, scaled so the larger
coordinate is 1 and multiplied by k for the k-th point; attention-weight projection all 0; value and
output projections Xavier. Encoder (post-norm, 6 -> ``enc_layers``): deformable self-attention over
all levels' tokens, each with its pixel centre as reference point on every level, positions = 2-D sine
encoding of the level plus a learned level embedding. The levels: the last ``n_levels`` of [stage 1,
..., last stage, extra], the extra one a 3x3 stride-2 conv on the last stage (the paper's C6); each
projected by a 1x1 conv (3x3/2 for the extra) and GroupNorm to ``d_model``. Decoder (post-norm): self-
attention among the queries (standard, as DETR's), deformable cross-attention to the encoder output, FFN;
a learned 2d-wide embedding per query split into the query's position and its initial content, the
reference point a sigmoid-linear function of the position; boxes are predicted relative to the reference
(``sigmoid(mlp + logit(reference))``). Iterative box refinement (``refine: true``, Sec. 4.2): each decoder
layer has its own heads and refines the previous layer's box, which (detached) becomes the next layer's
4-d reference (sampling offsets scaled by half the box's width and height, over K). Classification is
sigmoid per class (K outputs, no "no object"), class bias initialised to a 0.01 prior, trained with the
focal loss (alpha 0.25, gamma 2) with class weight 2 in both loss and matcher (harness/tasks/set_loss.py);
box head's last layer zero with the w, h bias at -2; auxiliary losses at every decoder layer.

Simplified for 32x32 images on a CPU: the harness ResNet backbone from scratch (see harness/models/detr.py),
width 64, 4 heads, FFN 128, 2 + 2 layers, 3 levels (16x16, 8x8, 4x4 at S = 32) instead of 4, 2 points
instead of 4, 12 queries instead of 300; GroupNorm with 8 groups instead of 32 (width 64); no two-stage
variant, no padding masks. FLOPs: ``grid_sample`` is counted as free (as interpolation is in
harness/flops.py); the weighted sum over the sampled points is a matmul and is counted.

Shapes: B batch, Lq queries, Lin input tokens, M heads, L levels, K points, dh = d / M, Q queries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from harness.core.config import bounded, positive
from harness.core.registry import register_model
from harness.models.base import ImageSizeAtLength, IOFormat, ModelOutput
from harness.models.detr import Attention, BoxMLP, FeedForward, sine_position_2d
from harness.models.resnet import ResNetBody, ResNetConfig, backbone_config

MAX_QUERIES = 300  # the paper's number of queries; detections are the top 100 (query, class) scores
PRIOR_PROB = 0.01


@dataclass
class DeformableDetrConfig(ImageSizeAtLength):
    image_size: int = positive(32)
    in_channels: int = positive(3)
    n_classes: int = positive(4)
    stem: int = positive(16)
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1])
    expansion: int = positive(4)
    d_model: int = positive(64)
    n_heads: int = positive(4)
    d_ff: int = positive(128)
    enc_layers: int = positive(2)
    dec_layers: int = positive(2)
    num_queries: int = bounded(12, lo=1, hi=MAX_QUERIES)
    n_levels: int = positive(3)
    n_points: int = positive(2)
    refine: bool = False  # iterative bounding box refinement
    gn_groups: int = positive(8)
    dropout: float = bounded(0.0, lo=0.0, hi=0.99)

    def backbone_config(self) -> ResNetConfig:
        return backbone_config(self)

    def check(self) -> list[tuple[str, str]]:
        problems = self.backbone_config().check()
        if problems:
            return problems
        if self.n_levels > len(self.widths) + 1:
            return [("n_levels", f"the backbone gives at most {len(self.widths) + 1} levels (its "
                                 f"{len(self.widths)} stages and one extra), got {self.n_levels}")]
        if self.d_model % self.n_heads:
            return [("n_heads", f"must divide d_model ({self.d_model}), got {self.n_heads}")]
        if self.d_model % 4:
            return [("d_model", f"must be a multiple of 4 (the 2-D sine encoding), got {self.d_model}")]
        if self.d_model % self.gn_groups:
            return [("gn_groups", f"must divide d_model ({self.d_model}), got {self.gn_groups}")]
        return []


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention (Eq. 3): M heads, L levels, K points per head and level."""

    def __init__(self, d: int, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.d, self.levels, self.heads, self.points = d, n_levels, n_heads, n_points
        self.offsets = nn.Linear(d, n_heads * n_levels * n_points * 2)
        self.weights = nn.Linear(d, n_heads * n_levels * n_points)
        self.value = nn.Linear(d, d)
        self.out = nn.Linear(d, d)
        nn.init.zeros_(self.offsets.weight)
        theta = torch.arange(n_heads, dtype=torch.float32) * (2 * math.pi / n_heads)
        grid = torch.stack([theta.cos(), theta.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid[:, None, None].repeat(1, n_levels, n_points, 1)  # (M, L, K, 2)
        grid = grid * torch.arange(1, n_points + 1, dtype=torch.float32)[None, None, :, None]
        with torch.no_grad():
            self.offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.weights.weight)
        nn.init.zeros_(self.weights.bias)
        for lin in (self.value, self.out):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, query: torch.Tensor, ref: torch.Tensor, inp: torch.Tensor,
                shapes: list[tuple[int, int]]) -> torch.Tensor:
        """``query`` (B, Lq, d); ``ref`` (B, Lq, L, 2) normalised (x, y) points or (B, Lq, L, 4) boxes
        (cx, cy, w, h); ``inp`` (B, Lin, d), the levels' tokens in order, level l of side ``shapes[l]``
        = (H_l, W_l). Returns (B, Lq, d)."""
        b, lq, _ = query.shape
        m, lv, k, dh = self.heads, self.levels, self.points, self.d // self.heads
        value = self.value(inp).view(b, -1, m, dh)
        off = self.offsets(query).view(b, lq, m, lv, k, 2)
        w = self.weights(query).view(b, lq, m, lv * k).softmax(-1)
        if ref.shape[-1] == 2:
            norm = torch.tensor([[wd, ht] for ht, wd in shapes], dtype=off.dtype)  # (L, 2) as (W, H)
            loc = ref[:, :, None, :, None, :] + off / norm[None, None, None, :, None, :]
        else:
            loc = ref[:, :, None, :, None, :2] + off / k * ref[:, :, None, :, None, 2:] * 0.5
        grid = 2 * loc - 1  # (B, Lq, M, L, K, 2) in grid_sample's [-1, 1]
        sampled, start = [], 0
        for lvl, (ht, wd) in enumerate(shapes):
            v = value[:, start : start + ht * wd].permute(0, 2, 3, 1).reshape(b * m, dh, ht, wd)
            g = grid[:, :, :, lvl].transpose(1, 2).reshape(b * m, lq, k, 2)
            sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
            start += ht * wd
        s = torch.cat(sampled, -1).permute(0, 2, 1, 3)  # (B*M, Lq, dh, L*K)
        a = w.transpose(1, 2).reshape(b * m, lq, lv * k, 1)
        o = torch.matmul(s, a).view(b, m, lq, dh).transpose(1, 2).reshape(b, lq, self.d)
        return self.out(o)


class DeformEncoderLayer(nn.Module):
    def __init__(self, c: DeformableDetrConfig) -> None:
        super().__init__()
        d = c.d_model
        self.attn = MSDeformAttn(d, c.n_levels, c.n_heads, c.n_points)
        self.ffn = FeedForward(d, c.d_ff, c.dropout)
        self.norm1, self.norm2, self.drop = nn.LayerNorm(d), nn.LayerNorm(d), nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, ref: torch.Tensor, shapes: list) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x + pos, ref, x, shapes)))
        return self.norm2(x + self.drop(self.ffn(x)))


class DeformDecoderLayer(nn.Module):
    def __init__(self, c: DeformableDetrConfig) -> None:
        super().__init__()
        d = c.d_model
        self.self_attn = Attention(d, c.n_heads, c.dropout)
        self.cross = MSDeformAttn(d, c.n_levels, c.n_heads, c.n_points)
        self.ffn = FeedForward(d, c.d_ff, c.dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(3))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, t: torch.Tensor, qpos: torch.Tensor, ref: torch.Tensor, mem: torch.Tensor,
                shapes: list) -> torch.Tensor:
        t = self.norms[0](t + self.drop(self.self_attn(t + qpos, t + qpos, t)))
        t = self.norms[1](t + self.drop(self.cross(t + qpos, ref, mem, shapes)))
        return self.norms[2](t + self.drop(self.ffn(t)))


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class Levels(nn.Module):
    """Backbone stage outputs plus the extra stride-2 level; the last ``n_levels`` projected to d."""

    def __init__(self, c: DeformableDetrConfig) -> None:
        super().__init__()
        self.body = ResNetBody(c.backbone_config())
        self.ends = [sum(c.blocks[: i + 1]) for i in range(len(c.blocks))]  # block count at each stage end
        chans = [c.expansion * w for w in c.widths]
        self.use = list(range(len(chans) + 1))[-c.n_levels :]  # indices into [stages..., extra]
        self.proj = nn.ModuleList()
        for i in self.use:
            conv = (nn.Conv2d(chans[-1], c.d_model, 3, stride=2, padding=1) if i == len(chans)
                    else nn.Conv2d(chans[i], c.d_model, 1))
            nn.init.xavier_uniform_(conv.weight)
            assert conv.bias is not None  # both convs have one (torch types it optional)
            nn.init.zeros_(conv.bias)
            self.proj.append(nn.Sequential(conv, nn.GroupNorm(c.gn_groups, c.d_model)))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x, feats = self.body.stem(images), []
        for j, block in enumerate(self.body.blocks):
            x = block(x)
            if j + 1 in self.ends:
                feats.append(x)
        feats.append(x)  # the extra level is computed from the last stage
        return [p(feats[i]) for p, i in zip(self.proj, self.use)]


@register_model("deformable_detr", config=DeformableDetrConfig)
class DeformableDetr(nn.Module):
    """Zhu et al. 2021: multi-scale deformable attention encoder-decoder, focal set loss."""

    io: IOFormat = "detect"

    def __init__(self, c: DeformableDetrConfig) -> None:
        super().__init__()
        self.config = c
        d = c.d_model
        self.levels = Levels(c)
        self.level_embed = nn.Parameter(torch.randn(c.n_levels, d))
        self.encoder = nn.ModuleList(DeformEncoderLayer(c) for _ in range(c.enc_layers))
        self.decoder = nn.ModuleList(DeformDecoderLayer(c) for _ in range(c.dec_layers))
        self.query_embed = nn.Parameter(torch.randn(c.num_queries, 2 * d))
        self.ref_point = nn.Linear(d, 2)
        nn.init.xavier_uniform_(self.ref_point.weight)
        nn.init.zeros_(self.ref_point.bias)
        n_heads = c.dec_layers if c.refine else 1
        self.class_heads = nn.ModuleList(nn.Linear(d, c.n_classes) for _ in range(n_heads))
        self.box_heads = nn.ModuleList(BoxMLP(d) for _ in range(n_heads))
        class_heads = cast("Sequence[nn.Linear]", self.class_heads)
        box_heads = cast("Sequence[BoxMLP]", self.box_heads)
        for cls, box in zip(class_heads, box_heads):
            nn.init.constant_(cls.bias, -math.log((1 - PRIOR_PROB) / PRIOR_PROB))
            last = cast(nn.Linear, box.net[-1])
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            nn.init.constant_(last.bias[2:], -2.0)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """The encoder's output over all levels' tokens (B, Lin, d) and the levels' sides."""
        feats = self.levels(images)
        d = self.config.d_model
        shapes = [(int(f.shape[2]), int(f.shape[3])) for f in feats]
        x = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], 1)
        pos = torch.cat([sine_position_2d(h, w, d) + self.level_embed[i] for i, (h, w) in enumerate(shapes)])
        centres = [torch.stack(torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w,
                                              indexing="ij")[::-1], -1).reshape(-1, 2) for h, w in shapes]
        ref = torch.cat(centres)[None, :, None].expand(x.shape[0], -1, len(shapes), -1).to(x)
        for layer in self.encoder:
            x = layer(x, pos.to(x)[None], ref, shapes)
        return x, shapes

    def forward(self, images: torch.Tensor) -> ModelOutput:  # (B, C, S, S) -> logits (B, D, Q, K + 4)
        mem, shapes = self.encode(images)
        b, n_lv = images.shape[0], len(shapes)
        qpos, t = self.query_embed[None].expand(b, -1, -1).chunk(2, -1)
        ref = self.ref_point(qpos).sigmoid()  # (B, Q, 2)
        outs = []
        for i, layer in enumerate(self.decoder):
            t = layer(t, qpos, ref[:, :, None].expand(-1, -1, n_lv, -1), mem, shapes)
            j = i if self.config.refine else 0
            delta = self.box_heads[j](t)
            if ref.shape[-1] == 4:
                box = (delta + inverse_sigmoid(ref)).sigmoid()
            else:
                box = torch.cat([delta[..., :2] + inverse_sigmoid(ref), delta[..., 2:]], -1).sigmoid()
            if self.config.refine:
                ref = box.detach()
            outs.append(torch.cat([self.class_heads[j](t), box], -1))
        return ModelOutput(torch.stack(outs, 1))
