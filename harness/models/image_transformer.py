"""Image Transformer: an autoregressive pixel model with local self-attention.

Parmar, Vaswani, Uszkoreit, Kaiser, Shazeer, Ku, Tran. "Image Transformer". ICML 2018, arXiv 1802.05751.

Faithful: p(x) = prod_t p(x_t | x_<t) over the pixels in raster order, each a categorical over
``levels`` intensity values (the paper's categorical output, 256 values per sub-pixel, Sec. 3.1); the
input is shifted right by one position with a start symbol, so the logits at position t see only the
pixels before t. Intensities are embedded (a table of ``levels`` + 1 rows, the start symbol last) and
scaled by sqrt(D); positions get separate learned row and column embeddings, D/2 dimensions each,
concatenated (Sec. 3.1, the ``emb`` option of the released code). A decoder-only stack of post-norm
layers (dropout, add, LayerNorm) of multi-head self-attention and a two-layer ReLU feed-forward
network (tensor2tensor ``common_image_attention``), then a linear layer to ``levels`` logits.

Attention (``attention``):

- ``local1d``: the raster sequence is cut into query blocks of ``block`` positions; each block attends
  to itself and to the ``memory`` positions before it, causally masked (Sec. 3.2: the paper's l_q is
  ``block``, its memory length l_m is ``block`` + ``memory``; the released code fixes ``memory`` at one
  block, l_m = 2 l_q, here it is a key of its own; 0: each block sees only itself).
- ``local2d``: query blocks of ``block_h`` x ``block_w`` pixels; each attends to a memory window of
  (``block_h`` + ``flange_h``) rows x (``flange_w`` + ``block_w`` + ``flange_w``) columns: the block, a
  band of ``flange_h`` rows above it and ``flange_w`` columns to its left and right (the paper's 2D
  local attention and the code's ``memory_flange``), causally masked, out-of-image positions masked.
- ``full``: full causal attention over all H*W positions, the same model otherwise (the baseline).

``impl``: ``sdpa`` runs the attention in torch's fused kernel, ``math`` materialises the score
matrix (for local attention, the (blocks, block, window) scores; for full attention the T x T matrix
the paper's memory argument is about). Both compute the same function.

Simplified, at this harness's scale: grayscale images only (one sub-pixel per position; the paper's
RGB images have three positions per pixel with per-channel embeddings, and a DMOL output variant we do
not build); learned positions only. One order for all three attentions: the global raster order. The
paper's 2D local model generates block by block (raster inside each block); here every attention
factorises p(x) in the same raster order, so bits per dimension compare the attention alone, and
2D local attention is a causal restriction of full attention in that order (its memory band to the
right of the block holds pixels of earlier rows only; the rest of that band is masked).

Shapes: B batch, H x W image, T = H*W positions, D d_model, Dh = D / heads, N query blocks, Lq
queries per block, Lm memory positions per block, L levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from harness.core.config import bounded, positive
from harness.core.registry import register_model
from harness.models.base import IOFormat, ModelOutput
from harness.models.blocks import AttentionKind, FeedForward, attend

Attention = Literal["local1d", "local2d", "full"]


@dataclass
class ImageTransformerConfig:
    levels: int = bounded(16, lo=2, hi=256)  # intensity values per pixel (the task fixes it)
    height: int = positive(8)  # image rows (the task fixes it)
    width: int = positive(8)  # image columns (the task fixes it)
    d_model: int = positive(64)
    n_heads: int = positive(4)
    d_ff: int = positive(128)
    n_layers: int = positive(2)
    dropout: float = bounded(0.1, lo=0.0, hi=0.99)
    attention: Attention = "local1d"
    impl: AttentionKind = "sdpa"
    block: int = positive(16)  # local1d: query block length l_q
    memory: int = bounded(16, lo=0)  # local1d: preceding positions each block attends to (l_m)
    block_h: int = positive(4)  # local2d: query block rows
    block_w: int = positive(4)  # local2d: query block columns
    flange_h: int = bounded(4, lo=0)  # local2d: memory rows above the block
    flange_w: int = bounded(4, lo=0)  # local2d: memory columns left and right of the block

    def at_length(self, n: int) -> dict[str, Any]:
        """Profiled at size ``n``: ``n`` x ``n`` images."""
        return {"height": n, "width": n}

    def check(self) -> list[tuple[str, str]]:
        if self.d_model % self.n_heads:
            return [("n_heads", f"must divide d_model ({self.d_model}), got {self.n_heads}")]
        if self.d_model % 2:
            return [("d_model", f"must be even (half rows, half columns), got {self.d_model}")]
        t = self.height * self.width
        if self.attention == "local1d":
            if self.block > t:
                return [("block", f"must be <= the image's {self.height}x{self.width} = {t} pixels, "
                                  f"got {self.block}")]
            if t % self.block:
                return [("block", f"must divide the image's {t} pixels into whole blocks, got {self.block}")]
        if self.attention == "local2d":
            for key, side, name in (("block_h", self.height, "height"), ("block_w", self.width, "width")):
                size = getattr(self, key)
                if size > side:
                    return [(key, f"must be <= the image {name} ({side}), got {size}")]
                if side % size:
                    return [(key, f"must divide the image {name} ({side}) into whole blocks, got {size}")]
        return []


def block_layout(cfg: ImageTransformerConfig) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(query index (N, Lq), memory index (N, Lm)) of the local attention, as raster positions; -1 marks
    a memory slot outside the image (left of the first pixel, or beside the image). None: full attention."""
    h, w = cfg.height, cfg.width
    if cfg.attention == "local1d":
        lq, m = cfg.block, cfg.memory
        starts = torch.arange(0, h * w, lq)[:, None]  # (N, 1)
        q = starts + torch.arange(lq)
        k = starts - m + torch.arange(m + lq)
        return q, torch.where(k >= 0, k, -1)
    if cfg.attention == "local2d":
        bh, bw, fh, fw = cfg.block_h, cfg.block_w, cfg.flange_h, cfg.flange_w
        r0 = torch.arange(0, h, bh).repeat_interleave(w // bw)[:, None, None]  # (N, 1, 1) block origins
        c0 = torch.arange(0, w, bw).repeat(h // bh)[:, None, None]
        qr, qc = r0 + torch.arange(bh)[:, None], c0 + torch.arange(bw)  # (N, bh, bw)
        kr, kc = r0 - fh + torch.arange(bh + fh)[:, None], c0 - fw + torch.arange(bw + 2 * fw)
        inside = (kr >= 0) & (kc >= 0) & (kc < w)  # the band has no rows below the block
        k = torch.where(inside, kr * w + kc, -1)
        n = r0.shape[0]
        return (qr * w + qc).reshape(n, -1), k.reshape(n, -1)
    return None


def local_attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, qidx: torch.Tensor, kidx: torch.Tensor,
    allowed: torch.Tensor, inverse: torch.Tensor, dropout: float, kind: AttentionKind,
) -> torch.Tensor:
    """Blocked attention; q, k, v (B, H, T, Dh); ``allowed`` (N, Lq, Lm) bool; returns (B, H, T, Dh)."""
    b, h, _, dh = q.shape
    n, lq = qidx.shape
    lm = kidx.shape[1]
    qb = q[:, :, qidx]  # (B, H, N, Lq, Dh)
    kb, vb = k[:, :, kidx.clamp(min=0)], v[:, :, kidx.clamp(min=0)]  # (B, H, N, Lm, Dh)
    if kind == "sdpa":
        mask = allowed.repeat(h, 1, 1)[None]  # (1, H*N, Lq, Lm), head-major like the reshape below
        y = F.scaled_dot_product_attention(qb.reshape(b, h * n, lq, dh), kb.reshape(b, h * n, lm, dh),
                                           vb.reshape(b, h * n, lm, dh), attn_mask=mask, dropout_p=dropout)
    else:
        scores = (qb @ kb.transpose(-2, -1)) * (1.0 / math.sqrt(dh))  # (B, H, N, Lq, Lm)
        scores = scores.masked_fill(~allowed, float("-inf"))
        y = F.dropout(scores.softmax(dim=-1), p=dropout, training=dropout > 0) @ vb
    return y.reshape(b, h, n * lq, dh)[:, :, inverse]  # back to raster order


class PixelSelfAttention(nn.Module):
    """Multi-head causal self-attention over the raster sequence, full or local (module docstring)."""

    # buffers, registered when the attention is local
    qidx: torch.Tensor
    kidx: torch.Tensor
    allowed: torch.Tensor
    inverse: torch.Tensor

    def __init__(self, cfg: ImageTransformerConfig) -> None:
        super().__init__()
        self.n_heads, self.p, self.kind = cfg.n_heads, cfg.dropout, cfg.impl
        self.qkv_proj = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model)
        layout = block_layout(cfg)
        self.local = layout is not None
        if layout is not None:
            qidx, kidx = layout
            allowed = (kidx >= 0)[:, None, :] & (kidx[:, None, :] <= qidx[:, :, None])  # (N, Lq, Lm)
            self.register_buffer("qidx", qidx, persistent=False)
            self.register_buffer("kidx", kidx, persistent=False)
            self.register_buffer("allowed", allowed, persistent=False)
            self.register_buffer("inverse", qidx.flatten().argsort(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)
                   for z in self.qkv_proj(x).chunk(3, dim=-1))  # (B, H, T, Dh)
        p = self.p if self.training else 0.0
        if self.local:
            y = local_attend(q, k, v, self.qidx, self.kidx, self.allowed, self.inverse, p, self.kind)
        else:
            y = attend(q, k, v, causal=True, dropout=p, kind=self.kind)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class DecoderLayer(nn.Module):
    """x = LN(x + drop(attn(x))); x = LN(x + drop(ffn(x))) (post-norm, as the released code)."""

    def __init__(self, cfg: ImageTransformerConfig) -> None:
        super().__init__()
        self.attn = PixelSelfAttention(cfg)
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.ff = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x)))
        return self.norm2(x + self.drop(self.ff(x)))


@register_model("image_transformer", config=ImageTransformerConfig)
class ImageTransformer(nn.Module):
    """Parmar et al. 2018: autoregressive pixels with local 1D / 2D (or full) causal self-attention."""

    io: IOFormat = "image"
    # its io is the image classifiers', but it models pixels: ``harness profile``'s task for it
    profile_task: ClassVar[str] = "pixels"

    def __init__(self, cfg: ImageTransformerConfig) -> None:
        super().__init__()
        problems = cfg.check()
        if problems:
            key, why = problems[0]
            raise ValueError(f"image_transformer {key}: {why}")
        self.config = cfg
        d, h, w = cfg.d_model, cfg.height, cfg.width
        self.embed = nn.Embedding(cfg.levels + 1, d)  # row `levels` is the start symbol
        self.row_embed = nn.Embedding(h, d // 2)
        self.col_embed = nn.Embedding(w, d // 2)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layers))
        self.head = nn.Linear(d, cfg.levels)
        rows = torch.arange(h).repeat_interleave(w)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", torch.arange(w).repeat(h), persistent=False)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pixel values (B, T) -> the decoder's input (B, T, D): shifted right behind the start symbol,
        scaled by sqrt(D), plus the row and column embeddings of the pixel each position predicts."""
        start = torch.full_like(tokens[:, :1], self.config.levels)
        shifted = torch.cat([start, tokens[:, :-1]], dim=1)
        pos = torch.cat([self.row_embed(self.rows), self.col_embed(self.cols)], dim=-1)  # (T, D)
        return self.drop(self.embed(shifted) * math.sqrt(self.config.d_model) + pos)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder stack and output layer: (B, T, D) -> logits (B, T, L); position t sees x[:, :t+1]."""
        for layer in self.layers:
            x = layer(x)
        return self.head(x)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, H, W) holding intensity values 0..levels-1 -> (B, T) long, raster order."""
        return images.round().long().clamp(0, self.config.levels - 1).flatten(1)

    def forward(self, images: torch.Tensor) -> ModelOutput:
        b = images.shape[0]
        logits = self.decode(self.embed_tokens(self.tokens(images)))
        return ModelOutput(logits.view(b, self.config.height, self.config.width, self.config.levels))

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
        """``n`` images (n, H, W) long, drawn pixel by pixel in raster order from a CPU ``gen``:
        softmax(logits / temperature), greedy (argmax) at temperature 0."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        cfg = self.config
        dev = self.head.weight.device
        tokens = torch.zeros(n, cfg.height * cfg.width, dtype=torch.long, device=dev)
        for t in range(tokens.shape[1]):  # position t's logits see only pixels < t (shifted input)
            logits = self.decode(self.embed_tokens(tokens))[:, t].float().cpu()
            if temperature == 0:
                pick = logits.argmax(-1)
            else:
                pick = torch.multinomial((logits / temperature).softmax(-1), 1, generator=gen)[:, 0]
            tokens[:, t] = pick.to(dev)
        return tokens.view(n, cfg.height, cfg.width)
