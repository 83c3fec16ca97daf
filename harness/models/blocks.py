"""Building blocks shared by the sequence models: attention, feed-forward, positions, embeddings,
and the sublayers and layers built from them.

A *sublayer* is one attention or feed-forward network inside its residual connection, dropout and
LayerNorm (:class:`Residual`): :class:`AttentionSublayer` (``s``) and :class:`FeedForwardSublayer`
(``f``), the units that Sandwich reorders and ALBERT shares. :class:`TransformerLayer` is the
paper's layer, self-attention (cross-attention) feed-forward, the unit the Universal Transformer
repeats (vanilla keeps its own layer classes, whose parameter order its committed runs depend on).
``harness.models.stack`` runs either kind in a given order.

Shape legend: B batch, T query length, S key length, D d_model, H heads, Dh = D / H, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

AttentionKind = Literal["sdpa", "math"]
Norm = Literal["post", "pre"]
Activation = Literal["relu", "gelu"]


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    dropout: float,
    kind: AttentionKind,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh)) v over the last two axes; q (B, H, T, Dh), k and v (B, H, S, Dh).

    ``sdpa`` calls PyTorch's fused kernel, whose memory is linear in T; ``math`` materialises the
    (B, H, T, S) score matrix as the 2017-2021 papers did, which is what their memory claims assume.
    """
    if kind == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=causal)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, T, S)
    if causal:
        t, s = scores.shape[-2:]
        future = torch.ones(t, s, dtype=torch.bool, device=q.device).triu(s - t + 1)
        scores = scores.masked_fill(future, float("-inf"))
    weights = F.dropout(scores.softmax(dim=-1), p=dropout, training=dropout > 0)
    return weights @ v  # (B, H, T, Dh)


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017, Sec. 3.2.2) with a fused q/k/v projection.

    Self-attention projects q, k, v with one (D, 3D) matrix; cross-attention projects q from the
    queries and k, v from ``memory`` with a (D, 2D) matrix. Parameter count is 4 D^2 + 4 D either way.
    """

    def __init__(
        self, d_model: int, n_heads: int, dropout: float, kind: AttentionKind = "sdpa", cross: bool = False
    ) -> None:
        super().__init__()
        self.n_heads, self.dropout, self.kind, self.cross = n_heads, dropout, kind, cross
        if cross:
            self.q_proj = nn.Linear(d_model, d_model)
            self.kv_proj = nn.Linear(d_model, 2 * d_model)
        else:
            self.qkv_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)  # (B, H, T, Dh)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        if self.cross:
            assert memory is not None
            q = self.q_proj(x)
            k, v = self.kv_proj(memory).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv_proj(x).chunk(3, dim=-1)
        p = self.dropout if self.training else 0.0
        y = attend(self._heads(q), self._heads(k), self._heads(v), causal=causal, dropout=p, kind=self.kind)
        b, _, t, _ = y.shape
        return self.out_proj(y.transpose(1, 2).reshape(b, t, -1))  # (B, T, D)


class FeedForward(nn.Module):
    """Position-wise feed-forward network FFN(x) = W2 act(W1 x + b1) + b2 (Sec. 3.3)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, activation: Activation = "relu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


def sinusoid_table(
    length: int, dim: int, device: torch.device | None = None, offset: int = 0
) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(...) (Sec. 3.5); (length, dim)."""
    pos = torch.arange(offset, offset + length, device=device, dtype=torch.float32)[:, None]
    inv = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * inv)
    table[:, 1::2] = torch.cos(pos * inv[: dim // 2])
    return table


class TokenEmbedding(nn.Module):
    """Token embedding scaled by sqrt(D) (Sec. 3.4), plus sinusoidal or learned positions."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        max_len: int,
        pos: Literal["sinusoidal", "learned", "none"],
        dropout: float,
    ) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.tok.weight, std=d_model**-0.5)
        self.pos_kind, self.max_len, self.scale = pos, max_len, math.sqrt(d_model)
        self.pos = nn.Embedding(max_len, d_model) if pos == "learned" else None
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        h = self.tok(x) * self.scale  # (B, T, D)
        if self.pos_kind == "learned":
            assert self.pos is not None
            if t > self.max_len:
                raise ValueError(
                    f"sequence of {t} tokens exceeds max_len {self.max_len} of learned positions"
                )
            h = h + self.pos(torch.arange(t, device=x.device))
        elif self.pos_kind == "sinusoidal":
            h = h + sinusoid_table(t, h.shape[-1], x.device)
        return self.drop(h)


class Residual(nn.Module):
    """One sublayer with its residual connection, dropout and LayerNorm, post-LN or pre-LN
    (Vaswani et al. 2017, Sec. 3.1 and 5.4; pre-LN as in Xiong et al. 2020)."""

    def __init__(self, d_model: int, dropout: float, norm: Literal["post", "pre"]) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.pre = norm == "pre"

    def forward(self, x: torch.Tensor, sublayer: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if self.pre:
            return x + self.drop(sublayer(self.ln(x)))
        return self.ln(x + self.drop(sublayer(x)))


class TiedHead(nn.Module):
    """Output projection that reuses an embedding matrix (Sec. 3.4: shared pre-softmax weights)."""

    _embedding: nn.Embedding  # set with object.__setattr__, so Module.__getattr__ never types it

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        object.__setattr__(self, "_embedding", embedding)  # a reference, not a second registration

    def extra_applied_params(self) -> list[torch.Tensor]:
        return [self._embedding.weight]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self._embedding.weight)  # (B, T, V)


def init_linear_xavier(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every Linear, as tensor2tensor's Transformer does."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class AttentionSublayer(nn.Module):
    """``s``: multi-head self-attention in its residual block, x = Residual(x, MHA)."""

    def __init__(
        self, d_model: int, n_heads: int, dropout: float, attn_dropout: float, kind: AttentionKind,
        norm: Norm, causal: bool,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.attn = MultiHeadAttention(d_model, n_heads, attn_dropout, kind)
        self.res = Residual(d_model, dropout, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(x, lambda h: self.attn(h, causal=self.causal))  # (B, T, D)


class FeedForwardSublayer(nn.Module):
    """``f``: the position-wise feed-forward network in its residual block, x = Residual(x, FFN)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, activation: Activation, norm: Norm) -> None:
        super().__init__()
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.res = Residual(d_model, dropout, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(x, self.ff)  # (B, T, D)


class TransformerLayer(nn.Module):
    """Self-attention, then (``cross``) attention over an encoder's output, then the feed-forward
    network, each in its residual block (Vaswani et al. 2017, Sec. 3.1: encoder and decoder layers)."""

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float, attn_dropout: float,
        kind: AttentionKind, activation: Activation, norm: Norm, causal: bool, cross: bool,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.attn = MultiHeadAttention(d_model, n_heads, attn_dropout, kind)
        self.res_attn = Residual(d_model, dropout, norm)
        self.cross_attn = (
            MultiHeadAttention(d_model, n_heads, attn_dropout, kind, cross=True) if cross else None
        )
        self.res_cross = Residual(d_model, dropout, norm) if cross else None
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.res_ff = Residual(d_model, dropout, norm)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        x = self.res_attn(x, lambda h: self.attn(h, causal=self.causal))  # (B, T, D)
        if self.cross_attn is not None:
            assert self.res_cross is not None and memory is not None
            cross_attn = self.cross_attn
            x = self.res_cross(x, lambda h: cross_attn(h, memory))
        return self.res_ff(x, self.ff)  # (B, T, D)
