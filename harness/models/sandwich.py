"""Sandwich Transformer: the same sublayers, in another order.

Press, Smith, Levy. "Improving Transformer Models by Reordering their Sublayers". ACL 2020,
arXiv 1911.03864.

A stack is a string over two letters: ``s`` a self-attention sublayer, ``f`` a feed-forward sublayer,
each with its own residual connection, dropout and LayerNorm (``blocks.Residual``). An n-layer
Transformer is ``(sf)^n``; the sandwich model with coefficient k is ``s^k (sf)^(n-k) f^k`` (Sec. 4):
attention moves to the bottom, feed-forward to the top, and the parameter count, memory and compute
stay those of ``(sf)^n`` because only the order moves. Sec. 3 trains models with random orderings of
n ``s`` and n ``f``; ``order: random`` draws one.

Keys, beyond the standard sequence keys:

- ``order``: an explicit string (``ssssffsfsfffff``), or ``random``. With an explicit string the string
  *is* the structure: ``n_layers`` is ignored, and the counts of ``s`` and ``f`` may differ.
- ``k``: the sandwich coefficient, ``0 <= k <= n_layers``; ``k: 0`` is the interleaved model.
- neither: the interleaved model ``(sf)^n_layers``.
- ``order_seed``: the seed of ``order: random``; without it the job's seed draws the order
  (``for_seed``), so each seed trains a different random model, as in the paper's Sec. 3. A model
  built directly from ``order: random`` (``build_model``, ``harness profile``) draws from
  ``order_seed``, or 0 without one.

Default ``norm: pre``: the paper's word-level models, where every ordering experiment of Sec. 3-4 is
run, are Baevski & Auli's fairseq language model (``transformer_lm_baevski_wiki103``), which is pre-LN
with a final LayerNorm. Its character-level runs (enwik8 k=5, text8 k=3) are built on the
adaptive-span code, which is post-LN without a final LayerNorm: set ``norm: post`` to follow those.

Simplifications against the paper's baselines, the same for every ordering: absolute sinusoidal (or
learned) positions instead of adaptive-span's relative key embeddings and learned spans; a softmax
over the full vocabulary tied with the token embedding, instead of adaptive input/softmax (word
level) or adaptive-span's untied output layer with bias; no memory cache across segments; attention
weights are dropped at ``attn_dropout`` (default: ``dropout``).

Shapes: B batch, T length, D d_model, V vocab.
"""

from __future__ import annotations

import dataclasses
import difflib
import random
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from harness.core.config import bounded
from harness.core.registry import register_model
from harness.models.base import ConfigIO, IOFormat, ModelOutput, SublayerConfig
from harness.models.blocks import (
    AttentionSublayer,
    FeedForwardSublayer,
    TiedHead,
    TokenEmbedding,
    init_linear_xavier,
)
from harness.models.stack import Step, SublayerStack, bank_sizes, execution_plan

RANDOM = "random"


def sandwich_order(n_layers: int, k: int) -> str:
    """``s^k (sf)^(n-k) f^k`` (Press et al., Sec. 4); k = 0 is the interleaved ``(sf)^n``."""
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    if not 0 <= k <= n_layers:
        raise ValueError(f"k must lie in 0..n_layers ({n_layers}), got {k}")
    return "s" * k + "sf" * (n_layers - k) + "f" * k


def parse_order(text: str) -> str:
    """Check a sublayer string: only ``s`` and ``f``, at least one of each. Returns it unchanged."""
    if not text:
        raise ValueError("is empty; expected a string over 's' (self-attention) and 'f' (feed-forward)")
    for i, ch in enumerate(text):
        if ch not in "sf":
            raise ValueError(
                f"invalid character {ch!r} at index {i} of {text!r}; only 's' (self-attention) and "
                "'f' (feed-forward) are allowed"
            )
    for ch, name in (("s", "self-attention"), ("f", "feed-forward")):
        if ch not in text:
            raise ValueError(f"{text!r} has no {ch!r} ({name}) sublayer; at least one of each is needed")
    return text


def random_order(n_layers: int, seed: int) -> str:
    """A uniformly random arrangement of n ``s`` and n ``f`` (Sec. 3), the same for the same seed.

    A private ``random.Random`` keeps the draw off torch's global generator, so drawing an order does
    not shift the weight initialisation that follows.
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    letters = ["s"] * n_layers + ["f"] * n_layers
    random.Random(seed).shuffle(letters)
    return "".join(letters)


@dataclass
class SandwichConfig(SublayerConfig):
    # n_layers: n of (sf)^n; used by k, random and the default, not by an explicit order.
    # attn_dropout: on the CPU, SDPA with attention dropout > 0 leaves the fused kernel for one that
    # keeps the T x T weights for backward (see base.SublayerConfig); 0 keeps long runs linear in memory.
    causal: bool = True  # True: a language model (io "lm"); False: bidirectional (io "masked")
    norm: Literal["post", "pre"] = "pre"
    pos: Literal["sinusoidal", "learned"] = "sinusoidal"
    attention: Literal["sdpa", "math"] = "sdpa"
    activation: Literal["relu", "gelu"] = "relu"
    order: str | None = None  # a string over s/f, or "random"; excludes k
    k: int | None = bounded(None, lo=0)  # sandwich coefficient; excludes order
    order_seed: int | None = bounded(None, lo=0)  # seed of order: random; None: the job's seed

    @property
    def io(self) -> IOFormat:
        return "lm" if self.causal else "masked"

    def check(self) -> list[tuple[str, str]]:
        return self.heads_problem() or self.attn_dropout_problem() or self.order_problem()

    def order_problem(self) -> list[tuple[str, str]]:
        if self.k is not None and self.order is not None:
            return [("k", f"cannot be combined with order ({self.order!r}); give one of them")]
        if self.k is not None and self.k > self.n_layers:
            return [("k", f"must be <= n_layers ({self.n_layers}), got {self.k}")]
        if self.order is not None and self.order != RANDOM:
            try:
                parse_order(self.order)
            except ValueError as e:
                close = difflib.get_close_matches(self.order, [RANDOM], n=1, cutoff=0.6)
                return [("order", f"{e}{'; did you mean ' + repr(RANDOM) + '?' if close else ''}")]
        return []

    def resolved_order(self) -> str:
        """The concrete sublayer string this config builds."""
        if self.order == RANDOM:
            return random_order(self.n_layers, 0 if self.order_seed is None else self.order_seed)
        if self.order is not None:
            return parse_order(self.order)
        return sandwich_order(self.n_layers, self.k or 0)

    def for_seed(self, seed: int) -> SandwichConfig:
        """``order: random`` -> the drawn string, from ``order_seed`` or else the job's seed; the seed
        used is kept in ``order_seed`` so the stored config says where the order came from."""
        if self.order != RANDOM:
            return self
        used = seed if self.order_seed is None else self.order_seed
        return dataclasses.replace(self, order=random_order(self.n_layers, used), order_seed=used)


@register_model("sandwich", config=SandwichConfig)
class Sandwich(ConfigIO, nn.Module):
    """Press et al. 2020: attention (s) and FFN (f) sublayers in any order: sandwich k, random, explicit."""

    def __init__(self, c: SandwichConfig) -> None:
        super().__init__()
        self.config = c
        self.order = c.resolved_order()
        self.embed = TokenEmbedding(c.vocab_size, c.d_model, c.max_len, c.pos, c.dropout)
        # The i-th 's' of the string runs attn[i], the i-th 'f' runs ff[i]: the parameter names, and
        # so the state dict, depend on the counts only, never on the order.
        plan = self.plan()
        n = bank_sizes(plan)
        self.attn = nn.ModuleList(
            AttentionSublayer(c.d_model, c.n_heads, c.dropout, c.attn_p, c.attention, c.norm, c.causal)
            for _ in range(n["s"])
        )
        self.ff = nn.ModuleList(
            FeedForwardSublayer(c.d_model, c.d_ff, c.dropout, c.activation, c.norm) for _ in range(n["f"])
        )
        self.stack = SublayerStack(plan, {"s": self.attn, "f": self.ff})
        self.final_norm = nn.LayerNorm(c.d_model) if c.norm == "pre" else None
        self.head = TiedHead(self.embed.tok)
        init_linear_xavier(self)

    def plan(self) -> tuple[Step, ...]:
        """Which module each letter of ``self.order`` runs: every sublayer its own weights. A variant
        that only shares sublayers overrides this (e.g. ``execution_plan(self.order, shared="sf")``)."""
        return execution_plan(self.order)

    def sublayers(self) -> list[nn.Module]:
        """The sublayers in execution order, one per letter of ``self.order``."""
        return self.stack.steps()

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.stack(self.embed(x))  # (B, T, D)
        if self.final_norm is not None:
            h = self.final_norm(h)
        return ModelOutput(self.head(h))  # (B, T, V)
