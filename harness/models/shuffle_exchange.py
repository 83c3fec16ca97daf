"""Residual Shuffle-Exchange Network (RSE): O(n log n) sequence mixing without attention.

Draguns, Ozolins, Sostaks, Apinis, Freivalds. "Residual Shuffle-Exchange Networks for Fast Processing
of Long Sequences". AAAI 2021, arXiv 2004.04662. Official code: LUMII-Syslab/RSE (TensorFlow 1.x).

What is built (m = ``d_model`` features per position, F = ``d_ff``, default 4m as in the paper):

- Token embedding [B, T] -> [B, T, m] (normal with std 0.25 truncated at 2 std, as the official
  code), no positional encoding (the network's wiring tells positions apart). The input is padded
  at the end to n = 2^k positions, k = max(1, ceil(log2 T)), and the logits are cut back to T.
  ``pad_id: null`` (default) pads with zero vectors after the embedding; an integer pads with that
  token before the embedding, as the official code pads with symbol 0.
- Residual Switch Unit (RSU) on each adjacent pair i = [x_2r, x_2r+1] (2m features), batched over all
  n/2 pairs as matrix products: g = GELU(Norm(Z i)), c = W g + B, out = sigmoid(S) * i + h * c.
  Z: 2m -> F without bias (a norm follows), W: F -> 2m with bias B, S a vector of 2m.
  Initialisation as the official ``switch_layer``: Z and W Glorot-uniform (``variance_scaling``
  fan_avg, scale 1), B uniform in [0, 0.01], Norm bias 0, sigmoid(S) = 0.9, and h the constant
  0.25 * sqrt(1 - 0.9^2) ~= 0.109 (not learned, as in the official code). S is stored as
  S / 2 and used as sigmoid(2 * stored), the official ``lr_adjust = 2`` reparametrisation.
  h * c is computed as (h W) g + h B inside one matrix product with the residual term (same maths).
- Shuffle: a cyclic rotation of the k index bits. Forward-half layers gather out[j] = in[rol_k(j)]
  (the official ``shuffle_layer(do_ror=False)``), backward-half layers gather with ror_k, its
  inverse; both are reshape + transpose copies, no Python loop over positions.
- Benes block = forward half (k - 1 switch + rol-shuffle layers) then backward half (k - 1 switch +
  ror-shuffle layers): 2k - 2 switch layers, and the block's permutations compose to the identity.
  ``n_blocks`` blocks (default 2, the paper's), then one final switch layer without shuffle, so
  the network has n_blocks * (2k - 2) + 1 switch layers (2 log2 n - 1 for one block). For n = 2
  (k = 1) each half has one layer (rotation of a 1-bit index is the identity).
- Weight sharing. ``sharing: halves`` (default): every layer of a block's forward half uses one RSU,
  every layer of its backward half another; blocks do not share; the final layer has its own. This
  is ``shuffle_exchange_network_heavy_sharing``, what the official ``RSE_model.py`` calls.
  ``sharing: inner`` is the repository's other builder, ``shuffle_exchange_network`` with
  ``tied_inner_weights``: the first and the middle (first backward) layer of each block get their
  own RSU and the remaining forward / backward layers share one each (same wiring, 4 RSUs a block;
  at k = 2 the shared two are unused).
- Output: Linear m -> V with bias (untied, Glorot weights, bias uniform [0, 0.01]) on every real
  position; no final norm, as in the official model.

Normalisation (``norm_axis``). The official ``layer_norm`` takes mean and variance over axis 1 of the
[batch, n/2, F] tensor, i.e. over the *pairs* (the sequence), per feature, with a learned bias added
before the scaling and no gain: y = (z - mean + b) / sqrt(mean((z - mean + b)^2) + 1e-10).
``sequence`` reproduces that formula (the official ``cur += add_bias_1(cur)`` doubles the centred term,
which only rescales the bias parameter). ``feature`` (default) is the trax port's axis: a LayerNorm
over the F features of each pair, with bias and no gain (eps 1e-5; the trax LayerNorm also has a
gain). Default ``feature`` because it is what a reader of the paper's "LayerNorm" expects, and the
sequence-axis norm makes every position's output depend on the statistics of the whole sequence
including the padding, so outputs at real positions change with the padded length and with what
fills the padding; training at one length and testing at another also shifts the statistics.

Memory (``checkpoint``). ``block`` (default) recomputes each Benes block in backward, so only each
block's input and the logits stay alive between forward and backward: O(n_blocks * n * m) bytes
instead of O(n log n * F). Recomputation costs one extra forward pass and does not change the maths.
Default ``block`` because long inputs are what this model is for and its memory claim is the point of
comparison; short-sequence suites may set ``none`` for speed.

Training path. Where gradients are wanted (no autocast, no dropout being drawn), the switch layers,
their shuffles and the head run as one autograd node, ``SwitchStack``, with a hand-written backward:
its forward keeps each block's input (``block``) or every layer's intermediates (``none``); its
backward recomputes a block without autograd, then walks the layers in reverse with fused ATen kernels
(layer-norm and GELU backward) and accumulates each shared unit's gradients in place. Outputs and
gradients equal the module path's to float rounding (tests/test_shuffle_exchange.py, in float64). The
module path (``SwitchUnit.forward``, ``torch.utils.checkpoint`` per block) serves inference, FLOP
tracing, autocast and dropout. The fast path exists for speed and memory on long inputs: it avoids
autograd's many small elementwise backward nodes and keeps only each block's input with ``block``,
where the module path with ``none`` keeps every switch layer's intermediates. How the two paths
compare in step time and ``act_bytes`` is measured by ``benchmarks/bench_side_by_side.py``, not
recorded here.

Simplifications and deviations (named):
- GELU is the exact erf form (the paper's GELU); the official code uses x * sigmoid(1.702 x).
- No information dropout (the official learned multiplicative noise on every switch output, with its
  KL term) and no additive Gaussian noise (std 0.01) on switch outputs; ``dropout`` (default 0) is
  plain dropout on the RSU's residual branch h * c, a harness choice. No saturation / L2 losses, no
  RAdam, no label smoothing (training belongs to the harness).
- Padding with zero vectors (``pad_id: null``) rather than a learned pad-token embedding.
- ``max_len`` is accepted for the token-model contract and not used: any length runs.
- The pair dimension is 2m by construction (two positions of m features), always even, so no setting
  can make it odd and ``check()`` has nothing to refuse there.

Shapes: B batch, T input length, n padded length (2^k), m d_model, F d_ff, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from harness.core.config import bounded, positive
from harness.core.registry import register_model
from harness.models.base import IOFormat, MaxLenAtLength, ModelOutput

RESIDUAL_INIT = 0.9  # sigmoid(S) at initialisation
CANDIDATE_SCALE = 0.25 * math.sqrt(1.0 - RESIDUAL_INIT**2)  # h, a constant (~0.109)
LR_ADJUST = 2.0  # S is stored divided by this and multiplied back (official lr_adjust)
SEQ_NORM_EPS = 1e-10  # official layer_norm
FEATURE_NORM_EPS = 1e-5


@dataclass
class ShuffleExchangeConfig(MaxLenAtLength):
    vocab_size: int = positive(32)
    d_model: int = positive(128)  # m, features per position; a switch unit sees pairs of 2m
    d_ff: int | None = None  # F, width of Z's output; None: 4 * d_model (the paper's 4m)
    n_blocks: int = positive(2)  # Benes blocks before the final switch layer
    dropout: float = bounded(0.0, lo=0.0, hi=0.99)  # on the RSU residual branch (harness choice)
    max_len: int = positive(512)  # unused: any length runs (token-model contract)
    norm_axis: Literal["feature", "sequence"] = "feature"
    sharing: Literal["halves", "inner"] = "halves"
    checkpoint: Literal["none", "block"] = "block"
    pad_id: int | None = None  # None: pad with zero vectors; else pad with this token

    def check(self) -> list[tuple[str, str]]:
        if self.d_ff is not None and self.d_ff < 1:
            return [("d_ff", f"must be >= 1, got {self.d_ff}")]
        if self.pad_id is not None and not 0 <= self.pad_id < self.vocab_size:
            return [("pad_id", f"must be a token id in [0, {self.vocab_size}), got {self.pad_id}")]
        return []

    @property
    def ff(self) -> int:
        return self.d_ff if self.d_ff is not None else 4 * self.d_model


# --- shuffle permutations ------------------------------------------------------------------------


def padded_length(t: int) -> int:
    """Smallest power of two >= t, at least 2 (a switch layer needs one pair)."""
    return max(2, 1 << max(t - 1, 0).bit_length())


def rotate_left(i: int, k: int) -> int:
    """Cyclic left rotation of the k-bit integer i."""
    return ((i << 1) & ((1 << k) - 1)) | (i >> (k - 1)) if k > 0 else i


def rotate_right(i: int, k: int) -> int:
    """Cyclic right rotation of the k-bit integer i."""
    return (i >> 1) | ((i & 1) << (k - 1)) if k > 0 else i


def shuffle(x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Perfect-shuffle permutation of axis 1 of x [B, n, D], n a power of two.

    ``inverse=False``: out[j] = x[rotate_left(j)]; ``inverse=True``: out[j] = x[rotate_right(j)].
    Writing j = hi * n/2 + r (hi the top bit), rotate_left(j) = 2r + hi: a [n/2, 2] -> [2, n/2]
    transpose of the index grid.
    """
    b, n, d = (int(s) for s in x.shape)
    if n <= 2:  # a 1-bit rotation is the identity
        return x
    if inverse:
        return x.view(b, 2, n // 2, d).transpose(1, 2).reshape(b, n, d)
    return x.view(b, n // 2, 2, d).transpose(1, 2).reshape(b, n, d)


# --- the switch unit -----------------------------------------------------------------------------


class SwitchUnit(nn.Module):
    """Residual Switch Unit on every adjacent pair: sigmoid(S) * i + h * (W GELU(Norm(Z i)) + B)."""

    def __init__(self, m: int, ff: int, norm_axis: Literal["feature", "sequence"], dropout: float) -> None:
        super().__init__()
        self.z = nn.Linear(2 * m, ff, bias=False)
        self.w = nn.Linear(ff, 2 * m)
        self.norm_bias = nn.Parameter(torch.zeros(ff))
        # a constant unit gain: layer_norm's CPU backward fails under bf16 autocast with a bias but no weight
        self.register_buffer("unit_gain", torch.ones(ff), persistent=False)
        self.s = nn.Parameter(torch.full((2 * m,), math.log(RESIDUAL_INIT / (1 - RESIDUAL_INIT)) / LR_ADJUST))
        self.norm_axis = norm_axis
        self.drop = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.z.weight)
        nn.init.xavier_uniform_(self.w.weight)
        nn.init.uniform_(self.w.bias, 0.0, 0.01)

    def residual_scale(self) -> torch.Tensor:
        """sigmoid(S), one gate per pair feature (2m)."""
        return torch.sigmoid(self.s * LR_ADJUST)

    def norm(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, n/2, F] normalised over the features (``feature``) or over the pairs (``sequence``)."""
        if self.norm_axis == "feature":
            return F.layer_norm(z, (z.shape[-1],), self.unit_gain, self.norm_bias, FEATURE_NORM_EPS)
        c = z - z.mean(dim=1, keepdim=True) + self.norm_bias
        return c * torch.rsqrt(c.square().mean(dim=1, keepdim=True) + SEQ_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, m = (int(s) for s in x.shape)
        pairs = x.reshape(b * n // 2, 2 * m)  # [B n/2, 2m]
        g = F.gelu(self.norm(self.z(pairs).view(b, n // 2, -1))).view(b * n // 2, -1)  # [B n/2, F]
        # h (W g + B) computed as (h W) g + h B: the constant scales the small matrices, not the activations
        w, bias = self.w.weight * CANDIDATE_SCALE, self.w.bias * CANDIDATE_SCALE
        if self.drop.p > 0 and self.training:
            out = torch.addcmul(self.drop(F.linear(g, w, bias)), pairs, self.residual_scale())
        else:  # sigmoid(S) * i + h B, then + g (h W)^T inside the matrix product
            out = torch.addmm(torch.addcmul(bias, pairs, self.residual_scale()), g, w.t())
        return out.view(b, n, m)


# --- the training fast path: hand-written backward, recomputation per segment -------------------
#
# Autograd through the switch layers keeps every layer's intermediates and spends much of the step on
# small elementwise backward nodes; torch.utils.checkpoint then replays the autograd forward.
# SwitchStack computes the same maths with one hand-written backward: the forward keeps only each
# segment's input (``checkpoint: block``) or every layer's intermediates (``none``), the backward
# recomputes a segment without autograd, then walks its layers in reverse with fused ATen kernels
# (native layer-norm and GELU backward) and accumulates the shared units' gradients in place.


def _unit_tensors(u: SwitchUnit) -> list[torch.Tensor]:
    """The tensors SwitchStack reads from one unit, in its fixed order (a buffer, the unit gain, included)."""
    return [u.z.weight, u.norm_bias, u.unit_gain, u.w.weight, u.w.bias, u.s]


_PER_UNIT = 6  # len(_unit_tensors(u))


def _norm_forward(z: torch.Tensor, nb: torch.Tensor, gain: torch.Tensor, b: int, axis: str) -> tuple:
    """Norm of z [N, F] (N = b * n/2 pairs); returns (y, what _norm_backward needs)."""
    if axis == "feature":
        y, mean, rstd = torch.native_layer_norm(z, [int(z.shape[1])], gain, nb, FEATURE_NORM_EPS)
        return y, (z, mean, rstd)
    z3 = z.view(b, -1, int(z.shape[1]))
    c = z3 - z3.mean(dim=1, keepdim=True) + nb
    r = torch.rsqrt(c.square().mean(dim=1, keepdim=True) + SEQ_NORM_EPS)  # [b, 1, F]
    y = c.mul_(r)
    return y.view_as(z), (y, r)


def _norm_backward(dy: torch.Tensor, saved: tuple, gain: torch.Tensor, nb: torch.Tensor, b: int, axis: str):
    """(dz, d norm_bias) for _norm_forward."""
    if axis == "feature":
        z, mean, rstd = saved
        dz, _, dnb = torch.ops.aten.native_layer_norm_backward(
            dy, z, [int(z.shape[1])], mean, rstd, gain, nb, [True, False, True]
        )
        return dz, dnb
    y, r = saved  # y [b, n/2, F], r [b, 1, F]; y = c * r with c = z - mean(z) + nb over axis 1
    dy3 = dy.view_as(y)
    dc = (dy3 - y * (dy3 * y).mean(dim=1, keepdim=True)).mul_(r)
    dnb = dc.sum(dim=(0, 1))
    return (dc - dc.mean(dim=1, keepdim=True)).view_as(dy), dnb


class SwitchStack(torch.autograd.Function):
    """Switch layers, their shuffles and the output head as one autograd node.

    Inputs: h [B, n, m] (padded), ``spec`` = (layers, segments, t, norm_axis, keep_all) where layers
    lists (unit index, shuffle after: None | False (rol) | True (ror)), segments the [start, end) layer
    ranges recomputed together, t the real length; then each unit's ``_unit_tensors`` and the head's
    weight and bias. Returns the logits [B, t, V]; the maths is ShuffleExchange's autograd path.
    """

    @staticmethod
    def _layer(x: torch.Tensor, p: list[torch.Tensor], sig: torch.Tensor, b: int, axis: str, keep: bool):
        """One switch layer on pairs x [N, 2m]; returns (out [N, 2m], stash for backward or None)."""
        zw, nb, gain, ww, wb, _ = p
        z = torch.mm(x, zw.t())
        y, nstash = _norm_forward(z, nb, gain, b, axis)
        g = F.gelu(y) if keep else torch.ops.aten.gelu_(y)
        out = torch.addcmul(wb * CANDIDATE_SCALE, x, sig).addmm_(g, ww.t(), alpha=CANDIDATE_SCALE)
        return out, ((x, y, g, nstash) if keep else None)

    @staticmethod
    def _run(ctx, x: torch.Tensor, lo: int, hi: int, keep: bool) -> tuple[torch.Tensor, list]:
        """Layers [lo, hi) from pairs x; returns the last layer's output pairs and the stashes."""
        b, axis = ctx.b, ctx.axis
        stash = []
        for idx in range(lo, hi):
            unit, inverse = ctx.layers[idx]
            out, st = SwitchStack._layer(x, ctx.units[unit], ctx.sigs[unit], b, axis, keep)
            stash.append(st)
            x = out if inverse is None else _pairs(shuffle(out.view(b, -1, ctx.m), inverse))
        return x, stash

    @staticmethod
    def forward(ctx, h: torch.Tensor, spec: tuple, *tensors: torch.Tensor) -> torch.Tensor:
        layers, segments, t, axis, keep_all = spec
        b, n, m = (int(s) for s in h.shape)
        ctx.layers, ctx.segments, ctx.t, ctx.axis, ctx.keep_all = layers, segments, t, axis, keep_all
        ctx.b, ctx.m = b, m
        n_units = (len(tensors) - 2) // _PER_UNIT
        ctx.units = [list(tensors[i * _PER_UNIT : (i + 1) * _PER_UNIT]) for i in range(n_units)]
        ctx.sigs = [torch.sigmoid(p[5] * LR_ADJUST) for p in ctx.units]
        head_w, head_b = tensors[-2:]  # the bias's gradient needs only dlogits
        x = _pairs(h)
        inputs, stashes = [], []
        for lo, hi in segments:
            inputs.append(x)
            x, st = SwitchStack._run(ctx, x, lo, hi, keep_all)
            stashes.append(st)
        final = x.view(b, n, m)[:, :t]
        ctx.stashes = stashes if keep_all else None
        ctx.save_for_backward(*inputs, final if keep_all else x.new_empty(0), head_w)
        return F.linear(final, head_w, head_b)

    @staticmethod
    def backward(ctx, dlogits: torch.Tensor):
        *inputs, final, head_w = ctx.saved_tensors
        b, m, t, axis = ctx.b, ctx.m, ctx.t, ctx.axis
        n = int(inputs[0].shape[0]) * 2 // b
        grads = [[torch.zeros_like(p) if i != 2 else None for i, p in enumerate(u)] for u in ctx.units]
        dlog = dlogits.reshape(-1, int(dlogits.shape[-1]))
        d_head_b = dlog.sum(0)
        scaled_w = [u[3] * CANDIDATE_SCALE for u in ctx.units]  # h W, [2m, F] each
        d = None  # gradient w.r.t. the current layer's output pairs
        for seg in reversed(range(len(ctx.segments))):
            lo, hi = ctx.segments[seg]
            if ctx.keep_all:
                stash = ctx.stashes[seg]
            else:
                with torch.no_grad():
                    last, stash = SwitchStack._run(ctx, inputs[seg], lo, hi, True)
                if seg == len(ctx.segments) - 1:
                    final = last.view(b, n, m)[:, :t]
            if d is None:  # the head, once the final switch output is at hand
                d_head_w = dlog.t().mm(final.reshape(-1, m))
                d_pos = dlogits.new_zeros(b, n, m)
                d_pos[:, :t] = dlogits.matmul(head_w)
                d = _pairs(d_pos)
            for idx in reversed(range(lo, hi)):
                unit, inverse = ctx.layers[idx]
                if inverse is not None:  # the permutation's gradient is the inverse permutation
                    d = _pairs(shuffle(d.view(b, n, m), not inverse))
                x, y, g, nstash = stash[idx - lo]
                zw, nb, gain, _, _, _ = ctx.units[unit]
                gz, gnb, _, gw, gb, gs = grads[unit]
                gb.add_(d.sum(0))
                gs.add_((d * x).sum(0))
                gw.addmm_(d.t(), g)
                dy = torch.ops.aten.gelu_backward(torch.mm(d, scaled_w[unit]), y.view_as(g))
                dz, dnb = _norm_backward(dy, nstash, gain, nb, b, axis)
                gnb.add_(dnb)
                gz.addmm_(dz.t(), x)
                d = (d * ctx.sigs[unit]).addmm_(dz, zw)
                stash[idx - lo] = None  # free this layer's intermediates as soon as they are used
        out: list[torch.Tensor | None] = [d.view(b, n, m), None]
        used = {unit for unit, _ in ctx.layers}
        for u, (gz, gnb, _, gw, gb, gs) in enumerate(grads):
            if u not in used:  # as autograd: a unit no layer ran (short inputs, ``inner``) gets no gradient
                out += [None] * _PER_UNIT
                continue
            sig = ctx.sigs[u]
            d_s = gs.mul_(sig * (1 - sig) * LR_ADJUST)
            out += [gz, gnb, None, gw.mul_(CANDIDATE_SCALE), gb.mul_(CANDIDATE_SCALE), d_s]
        ctx.stashes = None
        return (*out, d_head_w, d_head_b)


def _pairs(h: torch.Tensor) -> torch.Tensor:
    """[B, n, m] positions -> [B n/2, 2m] adjacent pairs (a view when h is contiguous)."""
    b, n, m = (int(s) for s in h.shape)
    return h.reshape(b * n // 2, 2 * m)


# --- the network ---------------------------------------------------------------------------------


def block_plan(k: int, sharing: Literal["halves", "inner"]) -> list[tuple[int, bool]]:
    """One Benes block on 2^k positions: (RSU slot within the block, inverse shuffle after it) per layer.

    halves: slot 0 for the forward half, slot 1 for the backward half. inner: slots 0 (first layer),
    1 (other forward layers), 2 (middle = first backward layer), 3 (other backward layers).
    """
    half = max(k - 1, 1)
    if sharing == "halves":
        return [(0, False)] * half + [(1, True)] * half
    return [(0, False)] + [(1, False)] * (half - 1) + [(2, True)] + [(3, True)] * (half - 1)


@register_model("shuffle_exchange", config=ShuffleExchangeConfig)
class ShuffleExchange(nn.Module):
    """Draguns et al. 2021 Residual Shuffle-Exchange network: Benes blocks of switch units, O(n log n)."""

    io: IOFormat = "masked"  # one output per input position, bidirectional

    def __init__(self, c: ShuffleExchangeConfig) -> None:
        super().__init__()
        self.config = c
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        nn.init.trunc_normal_(self.embed.weight, std=0.25, a=-0.5, b=0.5)  # official: truncated N(0, 0.25^2)
        per_block = 2 if c.sharing == "halves" else 4
        self.blocks = nn.ModuleList(
            nn.ModuleList(SwitchUnit(c.d_model, c.ff, c.norm_axis, c.dropout) for _ in range(per_block))
            for _ in range(c.n_blocks)
        )
        self.last = SwitchUnit(c.d_model, c.ff, c.norm_axis, c.dropout)
        self.head = nn.Linear(c.d_model, c.vocab_size)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.uniform_(self.head.bias, 0.0, 0.01)

    def switch_layer_count(self, t: int) -> tuple[int, int]:
        """(switch layers per Benes block, switch layers in the whole network) for input length t."""
        k = padded_length(t).bit_length() - 1
        per = len(block_plan(k, self.config.sharing))
        return per, self.config.n_blocks * per + 1

    def run_block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Benes block i on h [B, n, m]."""
        k = int(h.shape[1]).bit_length() - 1  # n = 2^k
        units = self.blocks[i]
        for slot, inverse in block_plan(k, self.config.sharing):
            h = shuffle(units[slot](h), inverse)
        return h

    def finish(self, h: torch.Tensor, t: int) -> torch.Tensor:
        """Final switch layer, unpadding and output head: [B, n, m] -> logits [B, t, V]."""
        return self.head(self.last(h)[:, :t])

    def forward(self, x: torch.Tensor) -> ModelOutput:
        c = self.config
        t = int(x.shape[1])  # a Python int also under tracing (shapes are static there)
        n = padded_length(t)
        if c.pad_id is not None and n > t:
            x = F.pad(x, (0, n - t), value=c.pad_id)
        h = self.embed(x)  # [B, n or t, m]
        if int(h.shape[1]) < n:
            h = F.pad(h, (0, 0, 0, n - t))  # zero vectors at the padded positions
        if self.fast_path_applies():
            return ModelOutput(self._stack_forward(h, t))
        recompute = c.checkpoint == "block" and torch.is_grad_enabled()
        last = c.n_blocks - 1
        for i in range(c.n_blocks):
            if not recompute:
                h = self.run_block(i, h)
            elif i < last:
                h = _checkpoint(self.run_block, i, h, use_reentrant=False)
            else:  # the last segment ends with the logits, so no [B, n, m] state outlives it
                h = _checkpoint(self._last_segment, h, t, use_reentrant=False)
        logits = h if recompute else self.finish(h, t)
        return ModelOutput(logits)  # [B, T, V]

    def fast_path_applies(self) -> bool:
        """Whether training may take SwitchStack: gradients wanted, no autocast, no dropout to draw,
        not traced."""
        active_dropout = self.training and self.config.dropout > 0
        return (
            torch.is_grad_enabled()
            and not torch.is_autocast_enabled(self.head.weight.device.type)
            and not active_dropout
            and not torch.jit.is_tracing()
            and not torch.jit.is_scripting()
        )

    def _stack_forward(self, h: torch.Tensor, t: int) -> torch.Tensor:
        """The switch layers and the head through SwitchStack; h [B, n, m] padded, logits [B, t, V]."""
        c = self.config
        k = int(h.shape[1]).bit_length() - 1
        units = [u for block in self.blocks for u in block] + [self.last]
        per_block = len(self.blocks[0])
        layers: list[tuple[int, bool | None]] = []
        segments = []
        for i in range(c.n_blocks):
            start = len(layers)
            layers += [(i * per_block + slot, inverse) for slot, inverse in block_plan(k, c.sharing)]
            segments.append((start, len(layers)))
        layers.append((len(units) - 1, None))
        segments[-1] = (segments[-1][0], len(layers))  # the final layer is recomputed with the last block
        spec = (tuple(layers), tuple(segments), t, c.norm_axis, c.checkpoint == "none")
        tensors = [p for u in units for p in _unit_tensors(u)] + [self.head.weight, self.head.bias]
        return SwitchStack.apply(h.contiguous(), spec, *tensors)

    def _last_segment(self, h: torch.Tensor, t: int) -> torch.Tensor:
        return self.finish(self.run_block(self.config.n_blocks - 1, h), t)
