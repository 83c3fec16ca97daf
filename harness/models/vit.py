"""Vision Transformer (ViT).

Dosovitskiy, Beyer, Kolesnikov, Weissenborn, Zhai, Unterthiner, Dehghani, Minderer, Heigold, Gelly,
Uszkoreit, Houlsby. "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale".
ICLR 2021, arXiv 2010.11929.

Faithful (Sec. 3.1, Eq. 1-4): the image is cut into non-overlapping P x P patches, each linearly
projected to D (a conv with kernel and stride P, the "hybrid-free" patch embedding); a learned class
token is prepended; learned 1-D position embeddings are added; dropout after the sum (App. B.1);
L pre-LN encoder blocks z' = MSA(LN(z)) + z, z = MLP(LN(z')) + z' with a GELU MLP (blocks from
``harness.models.blocks``, norm "pre"); a final LayerNorm on the class token's output, then the head.
Attention weights are not dropped (the paper's configs use attention dropout 0), which also keeps the
fused SDPA kernel on the CPU.

Simplified: the head is one linear layer (the paper uses an MLP with one hidden layer for pre-training
and a linear layer for fine-tuning; we train from scratch with the linear one); initialisation is
Xavier-uniform for linear layers with zero biases, position embeddings N(0, 0.02), class token zero
(the released code's choices, not stated in the paper). An input whose patch grid differs from the
configured ``image_size`` gets its position embeddings resized by 2-D bilinear interpolation, as the
paper does when fine-tuning at a new resolution (Sec. 3.2); the image tasks always configure the size
they feed, so this only happens when a model is called directly on other images.

Shapes: B batch, C input channels, S image side, P patch side, N = (S/P)^2 patches, D d_model, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from harness.core.config import bounded, positive
from harness.core.registry import register_model
from harness.models.base import ImageSizeAtLength, IOFormat, ModelOutput
from harness.models.blocks import AttentionKind, FeedForward, MultiHeadAttention, Residual, init_linear_xavier


@dataclass
class ViTConfig(ImageSizeAtLength):
    image_size: int = positive(16)
    in_channels: int = positive(1)
    n_classes: int = positive(10)
    head: Literal["classify"] = "classify"
    patch_size: int = positive(4)  # P; must divide image_size (the paper's ViT-B/16 uses 16 at 224)
    d_model: int = positive(64)
    n_heads: int = positive(4)
    d_ff: int = positive(128)
    n_layers: int = positive(4)
    dropout: float = bounded(0.1, lo=0.0, hi=0.99)
    attention: AttentionKind = "sdpa"

    def check(self) -> list[tuple[str, str]]:
        if self.image_size % self.patch_size:
            return [("patch_size", f"must divide image_size ({self.image_size}), got {self.patch_size}")]
        if self.d_model % self.n_heads:
            return [("n_heads", f"must divide d_model ({self.d_model}), got {self.n_heads}")]
        return []


class EncoderBlock(nn.Module):
    """Pre-LN Transformer encoder block (Eq. 2-3)."""

    def __init__(self, c: ViTConfig) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(c.d_model, c.n_heads, 0.0, c.attention)
        self.mlp = FeedForward(c.d_model, c.d_ff, c.dropout, "gelu")
        self.res_attn = Residual(c.d_model, c.dropout, "pre")
        self.res_mlp = Residual(c.d_model, c.dropout, "pre")

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, 1+N, D)
        z = self.res_attn(z, self.attn)
        return self.res_mlp(z, self.mlp)


@register_model("vit", config=ViTConfig)
class ViT(nn.Module):
    """Dosovitskiy et al. 2021: patch embedding, class token, learned positions, pre-LN encoder."""

    io: IOFormat = "image"

    def __init__(self, c: ViTConfig) -> None:
        super().__init__()
        self.config = c
        self.grid = c.image_size // c.patch_size
        self.patch = nn.Conv2d(c.in_channels, c.d_model, c.patch_size, stride=c.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, c.d_model))
        self.pos = nn.Parameter(torch.randn(1, 1 + self.grid**2, c.d_model) * 0.02)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(c) for _ in range(c.n_layers))
        self.norm = nn.LayerNorm(c.d_model)
        self.fc = nn.Linear(c.d_model, c.n_classes)
        init_linear_xavier(self)

    def positions(self, grid: int) -> torch.Tensor:
        """Position embeddings (1, 1+grid^2, D); resized bilinearly for another grid (Sec. 3.2)."""
        if grid == self.grid:
            return self.pos
        cls_pos, patch_pos = self.pos[:, :1], self.pos[:, 1:]
        d = patch_pos.shape[-1]
        table = patch_pos.reshape(1, self.grid, self.grid, d).permute(0, 3, 1, 2)  # (1, D, g, g)
        table = F.interpolate(table, size=(grid, grid), mode="bilinear", align_corners=False)
        return torch.cat([cls_pos, table.permute(0, 2, 3, 1).reshape(1, grid * grid, d)], dim=1)

    def forward(self, images: torch.Tensor) -> ModelOutput:  # (B, C, S, S) -> logits (B, K)
        p = self.config.patch_size
        if images.shape[-1] % p or images.shape[-2] % p:
            raise ValueError(f"image side {tuple(images.shape[-2:])} is not a multiple of patch_size {p}")
        if images.shape[-1] != images.shape[-2]:
            raise ValueError(f"ViT here takes square images, got {tuple(images.shape[-2:])}")
        x = self.patch(images)  # (B, D, S/P, S/P)
        b, _, g, _ = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, N, D)
        z = torch.cat([self.cls.expand(b, -1, -1), x], dim=1)  # (B, 1+N, D), Eq. 1
        z = self.drop(z + self.positions(g))
        for block in self.blocks:
            z = block(z)
        return ModelOutput(self.fc(self.norm(z[:, 0])))  # Eq. 4 on the class token
