"""Vanilla Transformer.

Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser, Polosukhin. "Attention Is All You Need".
NIPS 2017, arXiv 1706.03762.

Three layouts of the same layers:
- ``encdec``: the paper's encoder-decoder (N encoder layers, N decoder layers with cross-attention);
  source and target share one vocabulary, whose embedding is also the pre-softmax projection (Sec. 3.4).
- ``decoder``: the decoder stack without cross-attention, causal (a language model).
- ``encoder``: the encoder stack, bidirectional, with the tied output projection on every position.

Sublayers are wrapped as in the paper, post-LN: ``x = LN(x + Dropout(Sublayer(x)))``; ``norm: pre``
uses ``x = x + Dropout(Sublayer(LN(x)))`` with a final LN. Faithful choices: embeddings scaled by
sqrt(d_model), dropout on embedding + position sums and on every sublayer output, ReLU FFN, sinusoidal
positions. Deviations from the paper: attention weights are also dropped (as tensor2tensor and
``torch.nn.Transformer`` do; ``attn_dropout`` sets that rate apart, 0 keeps CPU SDPA fused); no label
smoothing or beam search here (training belongs to the harness).

Shapes: B batch, S source length, T target length, D d_model, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from harness.core.registry import register_model, register_preset
from harness.models.base import ARCH_IO, Arch, ConfigIO, IOFormat, ModelOutput, SublayerConfig, layout_problem
from harness.models.blocks import (
    FeedForward,
    MultiHeadAttention,
    Residual,
    TiedHead,
    TokenEmbedding,
    init_linear_xavier,
)


@dataclass
class VanillaConfig(SublayerConfig):
    # n_layers: encoder layers (encdec, encoder) or decoder layers (decoder)
    n_dec_layers: int | None = None  # encdec only; default n_layers (the paper's N = 6 for both)
    arch: Arch = "decoder"
    causal: bool | None = None  # decoder: True, encoder: False; set only to confirm
    norm: Literal["post", "pre"] = "post"
    pos: Literal["sinusoidal", "learned"] = "sinusoidal"
    attention: Literal["sdpa", "math"] = "sdpa"
    activation: Literal["relu", "gelu"] = "relu"

    @property
    def io(self) -> IOFormat:
        return ARCH_IO[self.arch]

    def check(self) -> list[tuple[str, str]]:
        return (
            self.heads_problem()
            or layout_problem(self.arch, self.causal)
            or self.attn_dropout_problem()
            or self.dec_layers_problem()
        )

    def dec_layers_problem(self) -> list[tuple[str, str]]:
        if self.n_dec_layers is not None and self.n_dec_layers < 1:
            return [("n_dec_layers", f"must be >= 1, got {self.n_dec_layers}")]
        return []


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each in a residual block (Sec. 3.1, encoder).

    Vanilla keeps its own layer classes: their parameter names and registration order (attn, ff,
    res_attn, res_ff) fix the order of ``model.parameters()``, which gradient clipping sums over, so a
    retrained vanilla job reproduces its committed row bit for bit."""

    def __init__(self, c: VanillaConfig, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.attn = MultiHeadAttention(c.d_model, c.n_heads, c.attn_p, c.attention)
        self.ff = FeedForward(c.d_model, c.d_ff, c.dropout, c.activation)
        self.res_attn = Residual(c.d_model, c.dropout, c.norm)
        self.res_ff = Residual(c.d_model, c.dropout, c.norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res_attn(x, lambda h: self.attn(h, causal=self.causal))  # (B, S, D)
        return self.res_ff(x, self.ff)


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the encoder output, feed-forward (Sec. 3.1)."""

    def __init__(self, c: VanillaConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(c.d_model, c.n_heads, c.attn_p, c.attention)
        self.cross_attn = MultiHeadAttention(c.d_model, c.n_heads, c.attn_p, c.attention, cross=True)
        self.ff = FeedForward(c.d_model, c.d_ff, c.dropout, c.activation)
        self.res_self = Residual(c.d_model, c.dropout, c.norm)
        self.res_cross = Residual(c.d_model, c.dropout, c.norm)
        self.res_ff = Residual(c.d_model, c.dropout, c.norm)

    def forward(self, y: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        y = self.res_self(y, lambda h: self.self_attn(h, causal=True))  # (B, T, D)
        y = self.res_cross(y, lambda h: self.cross_attn(h, memory))
        return self.res_ff(y, self.ff)


@register_model("vanilla", config=VanillaConfig)
class Vanilla(ConfigIO, nn.Module):
    """Vaswani et al. 2017: encoder-decoder, decoder-only or encoder-only; post-LN or pre-LN."""

    def __init__(self, c: VanillaConfig) -> None:
        super().__init__()
        self.config = c
        self.embed = TokenEmbedding(c.vocab_size, c.d_model, c.max_len, c.pos, c.dropout)
        causal = c.arch == "decoder"
        self.layers = nn.ModuleList(EncoderLayer(c, causal) for _ in range(c.n_layers))
        self.enc_norm = nn.LayerNorm(c.d_model) if c.norm == "pre" else None
        if c.arch == "encdec":
            n_dec = c.n_dec_layers or c.n_layers
            # masked self-attention, cross-attention over the encoder output, feed-forward
            self.dec_layers = nn.ModuleList(DecoderLayer(c) for _ in range(n_dec))
            self.dec_norm = nn.LayerNorm(c.d_model) if c.norm == "pre" else None
        self.head = TiedHead(self.embed.tok)
        init_linear_xavier(self)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)  # (B, S, D)
        for layer in self.layers:
            h = layer(h)
        return self.enc_norm(h) if self.enc_norm is not None else h

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> ModelOutput:
        h = self.encode(x)
        if self.config.arch == "encdec":
            if y is None:
                raise ValueError("encdec needs the shifted target y")
            g = self.embed(y)  # (B, T, D); the source's embedding (shared vocabulary)
            for layer in self.dec_layers:
                g = layer(g, h)
            h = self.dec_norm(g) if self.dec_norm is not None else g
        return ModelOutput(self.head(h))  # (B, T, V)


# Table 3 of the paper; one shared 37000-token BPE vocabulary for source and target (EN-DE).
_BASE = {
    "arch": "encdec", "vocab_size": 37000, "n_layers": 6, "max_len": 512, "norm": "post", "pos": "sinusoidal",
}
register_preset(
    "transformer-base", "vanilla",
    summary="Table 3 base: N=6, d 512, d_ff 2048, h 8, P_drop 0.1 (65M printed)",
    **_BASE, d_model=512, d_ff=2048, n_heads=8, dropout=0.1,
)
register_preset(
    "transformer-big", "vanilla",
    summary="Table 3 big: N=6, d 1024, d_ff 4096, h 16, P_drop 0.3 (213M printed)",
    **_BASE, d_model=1024, d_ff=4096, n_heads=16, dropout=0.3,
)
