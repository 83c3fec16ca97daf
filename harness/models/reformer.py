"""Reformer: LSH attention with shared QK, reversible residual layers, chunked feed-forward.

Kitaev, Kaiser, Levskaya. "Reformer: The Efficient Transformer". ICLR 2020, arXiv 2001.04451.

A decoder-only language model by default (``causal: true``, io "lm"); ``causal: false`` gives the
bidirectional layout (io "masked"). Shapes: B batch, T tokens, Tp padded length, D d_model, H heads,
Dh = D / H, R hash rounds, nb buckets, C chunks per round, m chunk length (``bucket_size``), V vocab.

Faithful to the paper (Sec. 2-3):
- **LSH.** Per forward (training and evaluation alike), a fresh Gaussian R [Dh, nb/2] per round,
  batch element and head; h(x) = argmax([xR; -xR]) (``lsh.hash_buckets``), so buckets are invariant
  to scaling a vector by a positive constant.
- **Shared QK.** One projection gives the queries; the keys are the queries normalised to unit length;
  scores are scaled by 1/sqrt(Dh).
- **Sort and chunk.** Each round sorts the positions by (bucket, position), cuts the sorted sequence
  into C = Tp/m chunks of m tokens, and every chunk attends to itself and the chunk before it in the
  same round (the first chunk looks back to the last one, as in trax). n_buckets defaults to 2 Tp / m,
  the paper's m = 2l / n_buckets.
- **Self mask.** A token's score on itself is replaced by the paper's finite -1e5, so it is attended
  only when it has no other target. Causal masks (by original position) and padding masks are -inf;
  the finite self entry keeps every row finite.
- **Multi-round.** Each round gives an output and its logsumexp; the rounds are combined with weights
  softmax over rounds of the logsumexps, and every score first has log N_ij subtracted, N_ij the number
  of times key j occurs among query i's attended entries over all rounds and both chunks. This makes
  the result exactly softmax attention over the union of the attended keys, each counted once.
- **Reversible layers** (Sec. 3): Y1 = X1 + Attn(LN(X2)), Y2 = X2 + FF(LN(Y1)), LayerNorm inside the
  branches; the embedding is duplicated into X1 = X2. One ``torch.autograd.Function`` runs the whole
  stack without keeping any activation; its backward rebuilds X2 = Y2 - FF(Y1) and X1 = Y1 - Attn(X2)
  layer by layer, replaying the recorded RNG state so that rotations and dropout masks are the ones
  the forward drew. Only Y1 and Y2 of the last layer (and a few RNG states) are kept, whatever the depth.
  ``reversible: false`` runs the same maths as ordinary residual layers (for the gradient test).
- **Chunked feed-forward** over positions: ``ff_chunks`` pieces, applied one after the other.
- ``eval_n_hashes`` (default ``n_hashes``) is the number of rounds used when ``not self.training``
  (Table 2 evaluates with a number of hashes other than the one trained with); ``attention: full`` is
  dense shared-QK attention with the same self mask (Table 2's "trained with full attention" row).

Keys that shape the padding. Inputs are padded at the end to Tp and outputs cut back to T:
``pad_len`` (optional) fixes Tp; ``bucket_size`` must divide it, which ``check()`` refuses otherwise
(and ``pad_len`` must be >= ``max_len``, or some inputs would not fit). Without ``pad_len``, Tp is T
rounded up to a multiple of ``bucket_size`` (a short input becomes one chunk). ``n_buckets``
(optional) fixes the bucket count, which must be even (the hash halves [xR; -xR]); ``n_hashes``
and ``eval_n_hashes`` must be >= 1. Padded positions are hashed to an extra bucket of their own that
sorts after every real position, so the real positions are chunked as if the padding were not there
(the paper does not say how it pads); bidirectional models mask them as keys, and causal ones need
not (they lie in every real query's future).

Simplifications and choices, each a deviation to know about:
- Output: the mean of Y1 and Y2 -> LayerNorm -> the tied embedding matrix. trax's ReformerLM
  concatenates Y1, Y2 (2D) and uses an untied Dense; the mean keeps the tied head the other models of
  this harness use. The final norm and head run under non-reentrant activation checkpointing, so only
  Y1, Y2 and the loss's own saved tensors stay alive for backward.
- Positions: sinusoidal (or learned) as in ``vanilla``, not trax's axial positional embeddings.
- No dropout on attention weights (only on branch outputs, the FFN hidden layer and the embedding,
  the last through a bool mask, as CPU ``F.dropout`` would keep a float one for backward);
  no chunked log-probabilities (vocabularies here are small); exact GELU rather than trax's FastGelu
  (``activation`` key, default gelu as in trax's ReformerLM); q/v projections carry no bias (trax).
- Causality is by masking: a query never attends to a later position. As in the paper, which keys a
  query sees depends on where the chunk boundaries fall in the sorted order, which depends on the
  buckets of all positions, later ones included; so with more than one chunk a future token can
  change an earlier output a little (through which past keys are in its window, not through its
  own value). With one chunk (``bucket_size`` >= Tp) or ``attention: full`` the model is strictly causal.
- The self entry is set to -1e5 after log N_ij is subtracted, so it carries no duplicate correction:
  its weight is exp(-1e5) ~ 0 unless it is the query's only target, when every copy is the same key.
- Hashing costs B H Tp Dh R nb/2 multiply-adds, quadratic in Tp when nb grows with Tp (the paper's
  default); it is small next to attention at the lengths used here (trax offers factorised buckets).
- Rotations are drawn afresh at every forward, evaluation included (no fixed hash seed), so
  evaluation is stochastic; FLOPs are counted in eval mode, i.e. with ``eval_n_hashes`` rounds.
- The backward pass recomputes the buckets from the rebuilt X2, which equals the forward's X2 up to
  rounding; a projection tied to within rounding could flip a bucket (trax's recomputation shares this).

Kernel and reference path. The LSH attention the model runs is a kernel,
``harness.models.kernels.lsh_attention.lsh_attention``: sorting, gathering and the chunked scores
batched, log N_ij and the masks as one additive term subtracted in place, softmax and logsumexp from
one fused softmax with a hand-written backward (its module docstring says why). The same
algorithm written out step by step from Sec. 2, with plain autograd and shapes at every line, is
``harness.models.lsh.lsh_attention_reference``. ``model(x, reference=True)`` runs the reference, with
ordinary residual layers in place of the reversible stack and no checkpointing: the same maths to
float rounding, which tests/test_kernels_reference.py checks on values and gradients in float64. The
default is the kernel, so committed results reproduce bit for bit; the switch is an argument of
``forward``, not a config key, so no run_id changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from harness.core.config import positive
from harness.core.registry import register_model
from harness.models.base import ConfigIO, IOFormat, MaxLenAtLength, ModelOutput, TransformerConfig
from harness.models.blocks import FeedForward, TiedHead, TokenEmbedding, init_linear_xavier
from harness.models.kernels.lsh_attention import lsh_attention
from harness.models.lsh import full_shared_qk_attention, lsh_attention_reference

# --------------------------------------------------------------------------------------------------
# Config


@dataclass
class ReformerConfig(TransformerConfig, MaxLenAtLength):
    max_len: int = positive(512)  # learned positions' table size; also the least pad_len
    causal: bool = True  # True: io "lm"; False: bidirectional, io "masked"
    attention: Literal["lsh", "full"] = "lsh"
    bucket_size: int = positive(64)  # chunk length m (paper: m = 2l / n_buckets)
    n_hashes: int = positive(2)  # hash rounds in training
    eval_n_hashes: int | None = None  # hash rounds when not training; None: n_hashes
    n_buckets: int | None = None  # buckets per round; None: 2 * padded length / bucket_size
    pad_len: int | None = None  # fixed padded length; None: length rounded up to bucket_size
    reversible: bool = True
    ff_chunks: int = positive(1)
    pos: Literal["sinusoidal", "learned"] = "sinusoidal"
    activation: Literal["relu", "gelu"] = "gelu"

    @property
    def io(self) -> IOFormat:
        return "lm" if self.causal else "masked"

    def check(self) -> list[tuple[str, str]]:
        return self.heads_problem() or self.hashing_problem()

    def hashing_problem(self) -> list[tuple[str, str]]:
        if self.eval_n_hashes is not None and self.eval_n_hashes < 1:
            return [("eval_n_hashes", f"must be >= 1, got {self.eval_n_hashes}")]
        if self.n_buckets is not None and (self.n_buckets < 2 or self.n_buckets % 2):
            why = "buckets come from argmax([xR; -xR])"
            return [("n_buckets", f"must be even and >= 2 ({why}), got {self.n_buckets}")]
        if self.pad_len is not None:
            if self.pad_len % self.bucket_size:
                msg = f"must divide the padded length pad_len ({self.pad_len}), got {self.bucket_size}"
                return [("bucket_size", msg)]
            if self.pad_len < self.max_len:
                msg = f"must be >= max_len ({self.max_len}) so that every input fits, got {self.pad_len}"
                return [("pad_len", msg)]
        return []


# --------------------------------------------------------------------------------------------------
# Layers


@dataclass(frozen=True)
class _Opts:
    """What one forward decided, kept so that the backward recomputation makes the same decisions."""

    n_hashes: int
    valid_len: int | None
    reference: bool = False  # the reference LSH attention (harness.models.lsh) instead of the kernel


class AttentionBranch(nn.Module):
    """Attn(LN(x)): shared-QK multi-head attention (LSH or full) inside the residual branch."""

    def __init__(self, c: ReformerConfig) -> None:
        super().__init__()
        self.c = c
        self.norm = nn.LayerNorm(c.d_model)
        self.qk = nn.Linear(c.d_model, c.d_model, bias=False)
        self.v = nn.Linear(c.d_model, c.d_model, bias=False)
        self.out = nn.Linear(c.d_model, c.d_model)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, opts: _Opts) -> torch.Tensor:
        b, t, d = x.shape
        h = self.norm(x)
        qk = self.qk(h).view(b, t, self.c.n_heads, -1).transpose(1, 2)  # [B, H, Tp, Dh]
        v = self.v(h).view(b, t, self.c.n_heads, -1).transpose(1, 2)
        if self.c.attention == "full":
            y = full_shared_qk_attention(qk, v, causal=self.c.causal, valid_len=opts.valid_len)
        else:
            attend = lsh_attention_reference if opts.reference else lsh_attention
            y = attend(
                qk, v, n_hashes=opts.n_hashes, bucket_size=self.c.bucket_size, causal=self.c.causal,
                n_buckets=self.c.n_buckets, valid_len=opts.valid_len,
            )
        return self.drop(self.out(y.transpose(1, 2).reshape(b, t, d)))  # [B, Tp, D]


class FeedForwardBranch(nn.Module):
    """FF(LN(x)), applied to ``ff_chunks`` pieces of the positions one after the other."""

    def __init__(self, c: ReformerConfig) -> None:
        super().__init__()
        self.chunks = c.ff_chunks
        self.norm = nn.LayerNorm(c.d_model)
        self.ff = FeedForward(c.d_model, c.d_ff, c.dropout, c.activation)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, opts: _Opts) -> torch.Tensor:
        if self.chunks == 1:
            return self.drop(self.ff(self.norm(x)))
        return torch.cat([self.drop(self.ff(self.norm(p))) for p in x.chunk(self.chunks, dim=1)], dim=1)


class ReversibleLayer(nn.Module):
    """Y1 = X1 + Attn(LN(X2)), Y2 = X2 + FF(LN(Y1))."""

    def __init__(self, c: ReformerConfig) -> None:
        super().__init__()
        self.f = AttentionBranch(c)
        self.g = FeedForwardBranch(c)


def reversible_layers(layers: nn.ModuleList) -> Sequence[ReversibleLayer]:
    """``layers`` as the ReversibleLayer modules it holds (torch types a ModuleList by no element)."""
    return cast("Sequence[ReversibleLayer]", layers)


class _RngState:
    """The global RNG state of the CPU and, for a CUDA tensor, of its device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def replay(self) -> Any:
        """A context in which the global RNG starts from this state; the state is restored after."""
        devices = [self.device] if self.cuda is not None else []
        ctx = torch.random.fork_rng(devices=devices)
        ctx.__enter__()
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)
        return ctx


def _mask_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout that keeps a bool mask for backward (CPU ``F.dropout`` keeps a float one, 4x
    the bytes: at 8192 x 64 that is 2 MB, as much as Y1). Used on the embedding, outside the stack."""
    if not training or p == 0.0:
        return x
    keep = torch.rand_like(x) >= p
    return x * keep * (1.0 / (1.0 - p))


def _params(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


class _ReversibleStack(torch.autograd.Function):
    """All reversible layers in one Function: nothing is kept but the last Y1, Y2 and RNG states."""

    @staticmethod
    def forward(
        ctx: Any,
        x1: torch.Tensor,
        x2: torch.Tensor,
        layers: nn.ModuleList,
        opts: _Opts,
        *params: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        states = []
        for layer in reversible_layers(layers):
            sf = _RngState(x1.device)
            x1 = x1 + layer.f(x2, opts)
            sg = _RngState(x1.device)
            x2 = x2 + layer.g(x1, opts)
            states.append((sf, sg))
        ctx.layers, ctx.opts, ctx.states = layers, opts, states
        ctx.save_for_backward(x1, x2)
        return x1, x2

    @staticmethod
    def backward(ctx: Any, dy1: torch.Tensor, dy2: torch.Tensor) -> tuple[Any, ...]:
        y1, y2 = ctx.saved_tensors
        opts: _Opts = ctx.opts
        grads: dict[int, torch.Tensor] = {}

        def branch_backward(
            branch: nn.Module, state: _RngState, x: torch.Tensor, dout: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            """Recompute branch(x) with the forward's RNG; return (its output detached, d x)."""
            params = _params(branch)
            x = x.detach().requires_grad_(True)
            rng = state.replay()
            try:
                with torch.enable_grad():
                    out = branch(x, opts)
            finally:
                rng.__exit__(None, None, None)
            got = torch.autograd.grad(out, (x, *params), dout, allow_unused=True)
            for p, gp in zip(params, got[1:]):
                if gp is not None:
                    grads[id(p)] = grads[id(p)] + gp if id(p) in grads else gp
            dx = got[0] if got[0] is not None else torch.zeros_like(x)
            return out.detach(), dx

        for layer, (sf, sg) in zip(reversed(ctx.layers), reversed(ctx.states)):
            gy1, d = branch_backward(layer.g, sg, y1, dy2)  # Y2 = X2 + G(Y1)
            dy1 = dy1 + d
            x2 = y2 - gy1
            fx2, d = branch_backward(layer.f, sf, x2, dy1)  # Y1 = X1 + F(X2)
            dx2 = dy2 + d
            y1, y2, dy2 = y1 - fx2, x2, dx2  # dX1 = dY1 (+ the G path already added)
        param_grads = tuple(grads.get(id(p)) for p in _params(ctx.layers))
        return (dy1, dy2, None, None, *param_grads)


# --------------------------------------------------------------------------------------------------
# Model


@register_model("reformer", config=ReformerConfig)
class Reformer(ConfigIO, nn.Module):
    """Kitaev et al. 2020: LSH attention (shared QK, n hash rounds), reversible layers, chunked FFN."""

    def __init__(self, c: ReformerConfig) -> None:
        super().__init__()
        self.config = c
        self.embed = TokenEmbedding(c.vocab_size, c.d_model, c.max_len, c.pos, 0.0)  # dropout: _mask_dropout
        self.layers = nn.ModuleList(ReversibleLayer(c) for _ in range(c.n_layers))
        self.norm = nn.LayerNorm(c.d_model)
        self.head = TiedHead(self.embed.tok)
        init_linear_xavier(self)

    def padded_len(self, t: int) -> int:
        """The length the layers run on: ``pad_len``, or T rounded up to a multiple of bucket_size."""
        c = self.config
        if c.attention == "full":
            return t
        if c.pad_len is not None:
            if t > c.pad_len:
                raise ValueError(f"sequence of {t} tokens exceeds pad_len {c.pad_len}")
            return c.pad_len
        return -(-t // c.bucket_size) * c.bucket_size

    def current_n_hashes(self) -> int:
        c = self.config
        return c.n_hashes if self.training or c.eval_n_hashes is None else c.eval_n_hashes

    def _output(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(0.5 * (y1 + y2)))  # [B, T, V]

    def forward(self, x: torch.Tensor, reference: bool = False) -> ModelOutput:
        """Logits [B, T, V]. ``reference``: the paper's maths with plain autograd (the reference LSH
        attention, ordinary residual layers, no checkpointing) instead of the kernel and the
        reversible stack; the same result to rounding, for tests and for reading."""
        t = x.shape[1]
        h = _mask_dropout(self.embed(x), self.config.dropout, self.training)  # [B, T, D]
        tp = self.padded_len(t)
        if tp > t:
            h = F.pad(h, (0, 0, 0, tp - t))  # [B, Tp, D]
        opts = _Opts(self.current_n_hashes(), t if tp > t else None, reference)
        save_memory = torch.is_grad_enabled() and not reference  # the reference path keeps everything
        if self.config.reversible and save_memory:
            params = _params(self.layers)
            y1, y2 = _ReversibleStack.apply(h, h, self.layers, opts, *params)
        else:  # ordinary residual layers, the same maths
            y1, y2 = h, h
            for layer in reversible_layers(self.layers):
                y1 = y1 + layer.f(y2, opts)
                y2 = y2 + layer.g(y1, opts)
        y1, y2 = y1[:, :t], y2[:, :t]
        if save_memory:  # keep only Y1, Y2 and the logits for backward
            logits = checkpoint(self._output, y1, y2, use_reentrant=False)
        else:
            logits = self._output(y1, y2)
        return ModelOutput(logits)
