"""Universal Transformer, with fixed depth or Adaptive Computation Time.

Dehghani, Gouws, Vinyals, Uszkoreit, Kaiser. "Universal Transformers". ICLR 2019, arXiv 1807.03819.
ACT: Graves, "Adaptive Computation Time for Recurrent Neural Networks", arXiv 1603.08983 (2016).

One layer, shared over depth, is applied at every recurrent step t = 1 .. T (Sec. 2.1, post-LN):

    A^t = LN((H^{t-1} + P^t) + MHSA(H^{t-1} + P^t))
    H^t = LN(A^t + FFN(A^t))

with dropout on each sublayer output, and the fixed coordinate embedding added at *every* step:

    P^t[i, 2j]   = sin(i / 10000^(2j/d)) + sin(t / 10000^(2j/d))
    P^t[i, 2j+1] = cos(i / 10000^(2j/d)) + cos(t / 10000^(2j/d))

Token embeddings are scaled by sqrt(d) and carry no positions of their own; the output projection is
the embedding matrix (tied). Layouts, as in ``vanilla``: ``decoder`` (causal, io "lm"), ``encoder``
(bidirectional, io "masked"), ``encdec`` (the paper's MT model: a recurrent encoder, then a recurrent
decoder whose shared layer adds cross-attention over the encoder output; one shared vocabulary).

Keys. ``n_layers`` is the number of recurrent steps T of the fixed-depth model (named like the
vanilla key so that suites can share ``model: {n_layers: ...}``; tensor2tensor sets num_rec_steps =
num_hidden_layers). With ``act: true`` the step count is decided per position and ``max_steps``
caps it; its default, 2 x n_layers, is tensor2tensor's act_max_steps = 2 x num_hidden_layers.

ACT (paper App. C listing; tensor2tensor ``universal_transformer_act``, act_type "basic"). At step
t every position computes p = sigmoid(w . (H^{t-1} + P^t) + b), with b initialised to 1.0. A running
position halts at the step where its cumulative p would exceed ``halt_threshold`` (1 - act_epsilon,
default 0.99) and gets the remainder R = 1 - (sum of its earlier p) as its weight; a position that
keeps running gets weight p; a halted one gets 0, so its weights sum to 1. The output state mixes
``S^t = w * H^t + (1 - w) * S^{t-1}`` (S^0 = 0), so halted positions copy their state forward, while
the recurrence itself runs on H^t for every position (halted ones stay visible to attention). The
loop stops when every position has halted or at ``max_steps``. Ponder cost (Graves, Eq. 11):
rho = N + R per position, N the steps it ran; ``aux_loss = ponder_weight * mean(N + R)``
(tensor2tensor: act_loss_weight * reduce_mean(ponder_times + remainders), weight 0.01). With
``encdec`` the two stacks halt independently and their costs add, as in tensor2tensor.
``Universal.halting_weights()`` returns the weights w of the last forward, (K, B, T) per stack.

Simplifications and choices, each a deviation to know about:
- At ``max_steps`` every position still running is made to halt with weight R (Graves' bound on N).
  tensor2tensor stops the loop there without assigning remainders, so its weights may sum to < 1.
- The paper's step signal is the sinusoid of t above; tensor2tensor's default is a learned step
  embedding. Positions i count from 0 (as in ``vanilla``); steps t count from 1 (the paper's H^t).
- The transition is the position-wise ReLU FFN (the paper's MT choice); no separable convolution.
- Attention weights are also dropped (``attn_dropout``, default ``dropout``), as in ``vanilla``.
- No mixing with vanilla layers, no GRU gating (the variants of Narang et al. 2021 are not the paper's).
- ``extras["ponder_steps"]`` is the mean of N over all positions of the batch (both stacks for
  ``encdec``); the harness averages it over evaluation batches.

Shapes: B batch, S source length, T sequence/target length, D d_model, V vocabulary, K steps run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from harness.core.config import bounded, positive
from harness.core.registry import register_model
from harness.models.base import ARCH_IO, Arch, ConfigIO, IOFormat, ModelOutput, SublayerConfig, layout_problem
from harness.models.blocks import (
    TiedHead,
    TokenEmbedding,
    TransformerLayer,
    init_linear_xavier,
    sinusoid_table,
)
from harness.models.stack import SublayerStack, execution_plan

HALT_BIAS_INIT = 1.0  # tensor2tensor act_halting_bias_init


@dataclass
class UniversalConfig(SublayerConfig):
    n_layers: int = positive(4)  # recurrent steps T of the fixed-depth model (ignored when act is true)
    # attn_dropout: None, the same as dropout; max_len: kept for the harness, as the sinusoidal
    # signals extend to any length
    arch: Arch = "decoder"
    causal: bool | None = None  # decoder: True, encoder: False; set only to confirm
    attention: Literal["sdpa", "math"] = "sdpa"
    activation: Literal["relu", "gelu"] = "relu"
    act: bool = False  # Adaptive Computation Time (per-position halting) instead of n_layers steps
    max_steps: int | None = positive(None)  # ACT cap; None: 2 x n_layers (tensor2tensor act_max_steps)
    halt_threshold: float = bounded(0.99, hi=1.0)  # 1 - act_epsilon; must lie in (0, 1]
    ponder_weight: float = bounded(0.01, lo=0.0)  # act_loss_weight: aux_loss = weight * mean(N + R)

    @property
    def io(self) -> IOFormat:
        return ARCH_IO[self.arch]

    def check(self) -> list[tuple[str, str]]:
        return (
            self.heads_problem()
            or layout_problem(self.arch, self.causal)
            or self.attn_dropout_problem()
            or self.halt_problem()
        )

    def halt_problem(self) -> list[tuple[str, str]]:
        if not self.halt_threshold > 0.0:
            return [("halt_threshold", f"must be in (0, 1], got {self.halt_threshold}")]
        return []

    @property
    def step_cap(self) -> int:
        """Steps run at most: max_steps (default 2 x n_layers) under ACT, else exactly n_layers."""
        if not self.act:
            return self.n_layers
        return self.max_steps if self.max_steps is not None else 2 * self.n_layers


def coordinate_embedding(
    length: int, step: int, dim: int, device: torch.device | None = None
) -> torch.Tensor:
    """P^t (Sec. 2.1): the sinusoid of each position i plus the sinusoid of the step t; (length, dim)."""
    return sinusoid_table(length, dim, device) + sinusoid_table(1, dim, device, offset=step)


@dataclass
class Pondering:
    """What one ACT recurrence reports: ponder cost terms and the per-step halting weights."""

    cost: torch.Tensor  # (B, T) N + R per position, differentiable through R
    steps: torch.Tensor  # (B, T) N, steps each position ran
    weights: torch.Tensor  # (K, B, T) halting weights w, summing to 1 over K


class Recurrence(nn.Module):
    """One shared layer (``blocks.TransformerLayer``) applied over depth: ``n_layers`` fixed steps, or ACT
    up to ``max_steps``."""

    def __init__(self, c: UniversalConfig, causal: bool, cross: bool) -> None:
        super().__init__()
        # the shared transition (Sec. 2.1): self-attention (and cross-attention in the decoder), then the FFN
        self.layer = TransformerLayer(
            c.d_model, c.n_heads, c.d_ff, c.dropout, c.attn_p, c.attention, c.activation, "post",
            causal, cross,
        )
        self.act, self.n_steps, self.threshold = c.act, c.step_cap, c.halt_threshold
        self.unrolled = SublayerStack(execution_plan("l" * self.n_steps, shared="l"), {"l": [self.layer]})
        self.halt = nn.Linear(c.d_model, 1) if c.act else None  # halting unit, shared over steps
        self.last: Pondering | None = None  # set by each ACT forward, for inspection

    def forward(
        self, h: torch.Tensor, memory: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Pondering | None]:
        b, n, d = h.shape
        pos = sinusoid_table(n, d, h.device)  # the position part of P^t, the same at every step

        def signal(t: int) -> torch.Tensor:  # P^t = coordinate_embedding(n, t, d), one table per forward
            return pos + sinusoid_table(1, d, h.device, offset=t)

        if self.halt is None:  # H^t = layer(H^{t-1} + P^t), t = 1 .. T
            return self.unrolled(h, memory, signal=signal), None

        # ACT, paper App. C: halting accumulators per position (B, T)
        cum_p = h.new_zeros(b, n)  # sum of p over the steps a position ran without halting
        remainder = h.new_zeros(b, n)  # R
        n_updates = h.new_zeros(b, n)  # N
        halted = torch.zeros(b, n, dtype=torch.bool, device=h.device)
        state = torch.zeros_like(h)  # S^t, the weighted output state (B, T, D)
        weights = []
        for t, layer in enumerate(self.unrolled.steps(), start=1):
            x = h + signal(t)
            p = torch.sigmoid(self.halt(x)).squeeze(-1)  # (B, T)
            running = ~halted
            # a running position halts when its cumulative p would exceed the threshold, or at the cap
            halting = running if t == self.n_steps else running & (cum_p + p > self.threshold)
            going_on = running & ~halting
            cum_p = cum_p + p * going_on
            r = (1.0 - cum_p) * halting  # remainder of the positions halting now
            remainder = remainder + r
            n_updates = n_updates + running
            w = p * going_on + r  # (B, T): p if still running, R if halting now, 0 if halted before
            h = layer(x, memory)  # H^t (B, T, D); the recurrence runs on for every position
            state = w.unsqueeze(-1) * h + (1.0 - w.unsqueeze(-1)) * state
            weights.append(w)
            halted = halted | halting
            if not bool(going_on.any()):
                break
        ponder = Pondering(n_updates + remainder, n_updates, torch.stack(weights))
        # a detached copy: the module must stay deep-copyable (the profiler copies it) between calls
        self.last = Pondering(ponder.cost.detach(), n_updates.detach(), ponder.weights.detach())
        return state, ponder


@register_model("universal", config=UniversalConfig)
class Universal(ConfigIO, nn.Module):
    """Dehghani et al. 2019: one shared layer applied over depth, fixed steps or ACT halting."""

    def __init__(self, c: UniversalConfig) -> None:
        super().__init__()
        self.config = c
        self.embed = TokenEmbedding(c.vocab_size, c.d_model, c.max_len, "none", c.dropout)
        self.stack = Recurrence(c, causal=c.arch == "decoder", cross=False)
        self.dec_stack = Recurrence(c, causal=True, cross=True) if c.arch == "encdec" else None
        self.head = TiedHead(self.embed.tok)
        init_linear_xavier(self)
        for rec in (self.stack, self.dec_stack):
            if rec is not None and rec.halt is not None:
                nn.init.constant_(rec.halt.bias, HALT_BIAS_INIT)

    def halting_weights(self) -> list[torch.Tensor]:
        """Halting weights (K, B, T) of the last forward, one tensor per recurrent stack (encoder first)."""
        return [
            rec.last.weights
            for rec in (self.stack, self.dec_stack)
            if rec is not None and rec.last is not None
        ]

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> ModelOutput:
        h, ponders = self.stack(self.embed(x))  # (B, S, D)
        found = [ponders]
        if self.dec_stack is not None:
            if y is None:
                raise ValueError("encdec needs the shifted target y")
            h, ponders = self.dec_stack(self.embed(y), h)  # (B, T, D); one embedding for both sides
            found.append(ponders)
        out = ModelOutput(self.head(h))  # (B, T, V)
        done = [p for p in found if p is not None]
        if done:
            out.aux_loss = self.config.ponder_weight * sum(p.cost.mean() for p in done)
            steps = torch.cat([p.steps.flatten() for p in done])
            out.extras["ponder_steps"] = float(steps.mean())
        return out
