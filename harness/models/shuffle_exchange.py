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
  inverse; both are reshape + transpose copies, no Python loop over positions (the reference path
  gathers by index, as the definition reads).
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

Three paths, one maths. The *reference path*, ``model(x, reference=True)``, is the network as the
paper draws it, with plain autograd and shapes at every step: ``SwitchUnit.reference`` (the RSU one
formula a line), ``shuffle_reference`` (the shuffle as an index gather by rotate_left / rotate_right)
and ``ShuffleExchange.reference_forward`` (Benes blocks, the final layer, the head); nothing is
recomputed. The model runs faster code for the same result. Where gradients are wanted (no autocast,
no dropout being drawn), the switch layers, their shuffles and the head run as one autograd node,
the kernel ``SwitchStack`` (``harness.models.kernels.switch_stack``), with a hand-written backward:
its forward keeps each block's input (``block``) or every layer's intermediates (``none``); its
backward recomputes a block without autograd, then walks the layers in reverse with fused ATen kernels
(layer-norm and GELU backward) and accumulates each shared unit's gradients in place. It exists for
speed and memory on long inputs: it avoids autograd's many small elementwise backward nodes and keeps
only each block's input with ``block``. Elsewhere (inference, FLOP tracing, autocast, dropout) the
*module path* runs: ``SwitchUnit.forward`` (h folded into W and B, one fused matrix product), the
shuffle as one transpose copy, ``torch.utils.checkpoint`` per block. tests/test_kernels_reference.py
checks both against the reference on outputs and on the gradients of every parameter and of the input
(float64, to rounding). How the kernel and the module path compare in step time and ``act_bytes`` is
measured by ``benchmarks/bench_side_by_side.py``, not recorded here. The default stays the kernel
and the module path, so committed results reproduce bit for bit; ``reference`` is an argument of
``forward``, not a config key, so no run_id changes.

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from harness.core.config import bounded, positive
from harness.core.registry import register_model
from harness.models.base import IOFormat, MaxLenAtLength, ModelOutput
from harness.models.kernels.switch_stack import StackSpec, SwitchStack, shuffle, unit_tensors

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


def shuffle_reference(x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """The shuffle layer by its definition, an index gather: out[j] = x[rol_k(j)] (``inverse``:
    x[ror_k(j)]) for x [B, n, D], n = 2^k. The model runs the same permutation as one transpose copy
    (``kernels.switch_stack.shuffle``)."""
    n = int(x.shape[1])
    k = n.bit_length() - 1
    rotate = rotate_right if inverse else rotate_left
    return x[:, [rotate(j, k) for j in range(n)]]  # [B, n, D]


# --- the switch unit -----------------------------------------------------------------------------


class SwitchUnit(nn.Module):
    """Residual Switch Unit on every adjacent pair: sigmoid(S) * i + h * (W GELU(Norm(Z i)) + B)."""

    unit_gain: torch.Tensor  # a buffer

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

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The RSU as the paper writes it, one step a line (what ``forward`` and the kernel fuse);
        x [B, n, m] -> [B, n, m]."""
        b, n, m = (int(s) for s in x.shape)
        i = x.reshape(b, n // 2, 2 * m)  # [B, n/2, 2m]: pair r is [x_2r, x_2r+1]
        g = F.gelu(self.reference_norm(i @ self.z.weight.T))  # [B, n/2, F]: GELU(Norm(Z i))
        c = g @ self.w.weight.T + self.w.bias  # [B, n/2, 2m]: W g + B
        gate = torch.sigmoid(LR_ADJUST * self.s)  # [2m]: sigmoid(S), S stored as S / lr_adjust
        out = gate * i + self.drop(CANDIDATE_SCALE * c)  # [B, n/2, 2m]: sigmoid(S) * i + h * c
        return out.reshape(b, n, m)  # each pair back into its two positions

    def reference_norm(self, z: torch.Tensor) -> torch.Tensor:
        """Norm(z) for z [B, n/2, F], written out: ``feature``, a LayerNorm over each pair's F features
        with a bias and no gain; ``sequence``, the official layer_norm over the n/2 pairs."""
        if self.norm_axis == "feature":
            mean = z.mean(dim=-1, keepdim=True)  # [B, n/2, 1]
            var = z.var(dim=-1, unbiased=False, keepdim=True)  # [B, n/2, 1]
            return (z - mean) / torch.sqrt(var + FEATURE_NORM_EPS) + self.norm_bias  # [B, n/2, F]
        c = z - z.mean(dim=1, keepdim=True) + self.norm_bias  # [B, n/2, F]: centred over the pairs, + bias
        return c / torch.sqrt(c.square().mean(dim=1, keepdim=True) + SEQ_NORM_EPS)  # [B, n/2, F]


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

    def block_units(self, i: int) -> Sequence[SwitchUnit]:
        """Benes block i's switch units by slot (an nn.ModuleList, which torch types by no element)."""
        return cast("Sequence[SwitchUnit]", self.blocks[i])

    def run_block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Benes block i on h [B, n, m]."""
        k = int(h.shape[1]).bit_length() - 1  # n = 2^k
        units = self.block_units(i)
        for slot, inverse in block_plan(k, self.config.sharing):
            h = shuffle(units[slot](h), inverse)
        return h

    def finish(self, h: torch.Tensor, t: int) -> torch.Tensor:
        """Final switch layer, unpadding and output head: [B, n, m] -> logits [B, t, V]."""
        return self.head(self.last(h)[:, :t])

    def forward(self, x: torch.Tensor, reference: bool = False) -> ModelOutput:
        """Logits [B, T, V]. ``reference``: :meth:`reference_forward`, the network as the paper draws it
        with plain autograd, instead of the kernel or the module path (the same result to rounding)."""
        c = self.config
        t = int(x.shape[1])  # a Python int also under tracing (shapes are static there)
        n = padded_length(t)
        if c.pad_id is not None and n > t:
            x = F.pad(x, (0, n - t), value=c.pad_id)
        h = self.embed(x)  # [B, n or t, m]
        if int(h.shape[1]) < n:
            h = F.pad(h, (0, 0, 0, n - t))  # zero vectors at the padded positions
        if reference:
            return ModelOutput(self.reference_forward(h, t))
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
        units = [u for i in range(len(self.blocks)) for u in self.block_units(i)] + [self.last]
        per_block = len(self.block_units(0))
        layers: list[tuple[int, bool | None]] = []
        segments = []
        for i in range(c.n_blocks):
            start = len(layers)
            layers += [(i * per_block + slot, inverse) for slot, inverse in block_plan(k, c.sharing)]
            segments.append((start, len(layers)))
        layers.append((len(units) - 1, None))
        segments[-1] = (segments[-1][0], len(layers))  # the final layer is recomputed with the last block
        eps = FEATURE_NORM_EPS if c.norm_axis == "feature" else SEQ_NORM_EPS
        spec = StackSpec(tuple(layers), tuple(segments), t, c.norm_axis, eps, c.checkpoint == "none",
                         CANDIDATE_SCALE, LR_ADJUST)
        tensors = [p for u in units for p in unit_tensors(u)] + [self.head.weight, self.head.bias]
        return SwitchStack.apply(h.contiguous(), spec, *tensors)

    def reference_forward(self, h: torch.Tensor, t: int) -> torch.Tensor:
        """The switch layers and the head as the paper draws them, plain autograd, nothing recomputed:
        h [B, n, m] (padded, n = 2^k) -> logits [B, t, V]."""
        k = int(h.shape[1]).bit_length() - 1
        for i in range(len(self.blocks)):  # Benes blocks: k - 1 switch + rol layers, then k - 1 switch + ror
            units = self.block_units(i)
            for slot, inverse in block_plan(k, self.config.sharing):
                h = shuffle_reference(units[slot].reference(h), inverse)  # [B, n, m]
        return self.head(self.last.reference(h)[:, :t])  # final switch layer, no shuffle: [B, t, V]

    def _last_segment(self, h: torch.Tensor, t: int) -> torch.Tensor:
        return self.finish(self.run_block(self.config.n_blocks - 1, h), t)
