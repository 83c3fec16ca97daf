"""The Residual Shuffle-Exchange network's training kernel: switch layers with a hand-written backward.

Draguns et al., "Residual Shuffle-Exchange Networks for Fast Processing of Long Sequences", AAAI 2021,
arXiv 2004.04662. The maths is the model's (:mod:`harness.models.shuffle_exchange`, whose
``ShuffleExchange.reference_forward`` writes the network out as the paper draws it); this module
computes the same switch layers, shuffles and output head as one autograd node, :class:`SwitchStack`.

Why: autograd through the switch layers keeps every layer's intermediates and spends much of the step
on small elementwise backward nodes; ``torch.utils.checkpoint`` then replays the autograd forward.
SwitchStack's forward keeps only each segment's input (``checkpoint: block``) or every layer's
intermediates (``none``); its backward recomputes a segment without autograd, then walks its layers
in reverse with fused ATen kernels (native layer-norm and GELU backward) and accumulates the shared
units' gradients in place. tests/test_kernels_reference.py checks it against the reference path.

Shapes: B batch, n padded length (2^k), m d_model, F d_ff, N = B n/2 pairs, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class StackSpec:
    """What SwitchStack runs, besides the tensors.

    ``layers``: (unit index, shuffle after: None | False (rol) | True (ror)) per switch layer;
    ``segments``: the [start, end) layer ranges recomputed together; ``t``: the real length (the head
    sees positions < t); ``norm_axis``, ``norm_eps``: the unit's norm; ``keep_all``: keep every layer's
    intermediates instead of recomputing; ``scale``: the candidate scale h; ``lr_adjust``: sigmoid(S)
    is sigmoid(lr_adjust * stored S).
    """

    layers: tuple[tuple[int, bool | None], ...]
    segments: tuple[tuple[int, int], ...]
    t: int
    norm_axis: str
    norm_eps: float
    keep_all: bool
    scale: float
    lr_adjust: float


def shuffle(x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Perfect-shuffle permutation of axis 1 of x [B, n, D], n a power of two.

    ``inverse=False``: out[j] = x[rotate_left(j)]; ``inverse=True``: out[j] = x[rotate_right(j)].
    Writing j = hi * n/2 + r (hi the top bit), rotate_left(j) = 2r + hi: a [n/2, 2] -> [2, n/2]
    transpose of the index grid, one copy instead of a gather.
    """
    b, n, d = (int(s) for s in x.shape)
    if n <= 2:  # a 1-bit rotation is the identity
        return x
    if inverse:
        return x.view(b, 2, n // 2, d).transpose(1, 2).reshape(b, n, d)
    return x.view(b, n // 2, 2, d).transpose(1, 2).reshape(b, n, d)


def pairs(h: torch.Tensor) -> torch.Tensor:
    """[B, n, m] positions -> [B n/2, 2m] adjacent pairs (a view when h is contiguous)."""
    b, n, m = (int(s) for s in h.shape)
    return h.reshape(b * n // 2, 2 * m)


class SwitchUnitParts(Protocol):
    """What SwitchStack reads from a switch unit (``shuffle_exchange.SwitchUnit``)."""

    z: nn.Linear
    w: nn.Linear
    norm_bias: nn.Parameter
    unit_gain: torch.Tensor  # a buffer
    s: nn.Parameter


def unit_tensors(u: SwitchUnitParts) -> list[torch.Tensor]:
    """The tensors SwitchStack reads from one switch unit, in its fixed order (a buffer, the unit gain,
    included): Z, the norm bias, the unit gain, W, B, S."""
    return [u.z.weight, u.norm_bias, u.unit_gain, u.w.weight, u.w.bias, u.s]


PER_UNIT = 6  # len(unit_tensors(u))


def norm_forward(
    z: torch.Tensor, nb: torch.Tensor, gain: torch.Tensor, b: int, axis: str, eps: float
) -> tuple:
    """Norm of z [N, F] (N = b * n/2 pairs); returns (y, what norm_backward needs)."""
    if axis == "feature":
        y, mean, rstd = torch.native_layer_norm(z, [int(z.shape[1])], gain, nb, eps)
        return y, (z, mean, rstd)
    z3 = z.view(b, -1, int(z.shape[1]))
    c = z3 - z3.mean(dim=1, keepdim=True) + nb
    r = torch.rsqrt(c.square().mean(dim=1, keepdim=True) + eps)  # [b, 1, F]
    y = c.mul_(r)
    return y.view_as(z), (y, r)


def norm_backward(dy: torch.Tensor, saved: tuple, gain: torch.Tensor, nb: torch.Tensor, b: int, axis: str):
    """(dz, d norm_bias) for norm_forward."""
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

    Inputs: h [B, n, m] (padded), a :class:`StackSpec`, then each unit's :func:`unit_tensors` and the
    head's weight and bias. Returns the logits [B, t, V].
    """

    @staticmethod
    def _layer(
        x: torch.Tensor, p: list[torch.Tensor], sig: torch.Tensor, b: int, spec: StackSpec, keep: bool
    ):
        """One switch layer on pairs x [N, 2m]; returns (out [N, 2m], stash for backward or None)."""
        zw, nb, gain, ww, wb, _ = p
        z = torch.mm(x, zw.t())
        y, nstash = norm_forward(z, nb, gain, b, spec.norm_axis, spec.norm_eps)
        g = F.gelu(y) if keep else torch.ops.aten.gelu_(y)
        out = torch.addcmul(wb * spec.scale, x, sig).addmm_(g, ww.t(), alpha=spec.scale)
        return out, ((x, y, g, nstash) if keep else None)

    @staticmethod
    def _run(ctx, x: torch.Tensor, lo: int, hi: int, keep: bool) -> tuple[torch.Tensor, list]:
        """Layers [lo, hi) from pairs x; returns the last layer's output pairs and the stashes."""
        b, spec = ctx.b, ctx.spec
        stash = []
        for idx in range(lo, hi):
            unit, inverse = spec.layers[idx]
            out, st = SwitchStack._layer(x, ctx.units[unit], ctx.sigs[unit], b, spec, keep)
            stash.append(st)
            x = out if inverse is None else pairs(shuffle(out.view(b, -1, ctx.m), inverse))
        return x, stash

    @staticmethod
    def forward(ctx, h: torch.Tensor, spec: StackSpec, *tensors: torch.Tensor) -> torch.Tensor:
        b, n, m = (int(s) for s in h.shape)
        ctx.spec, ctx.b, ctx.m = spec, b, m
        n_units = (len(tensors) - 2) // PER_UNIT
        ctx.units = [list(tensors[i * PER_UNIT : (i + 1) * PER_UNIT]) for i in range(n_units)]
        ctx.sigs = [torch.sigmoid(p[5] * spec.lr_adjust) for p in ctx.units]
        head_w, head_b = tensors[-2:]  # the bias's gradient needs only dlogits
        x = pairs(h)
        inputs, stashes = [], []
        for lo, hi in spec.segments:
            inputs.append(x)
            x, st = SwitchStack._run(ctx, x, lo, hi, spec.keep_all)
            stashes.append(st)
        final = x.view(b, n, m)[:, : spec.t]
        ctx.stashes = stashes if spec.keep_all else None
        ctx.save_for_backward(*inputs, final if spec.keep_all else x.new_empty(0), head_w)
        return F.linear(final, head_w, head_b)

    @staticmethod
    def backward(ctx, dlogits: torch.Tensor):
        *inputs, final, head_w = ctx.saved_tensors
        spec, b, m = ctx.spec, ctx.b, ctx.m
        t, axis, scale = spec.t, spec.norm_axis, spec.scale
        n = int(inputs[0].shape[0]) * 2 // b
        grads = [[torch.zeros_like(p) if i != 2 else None for i, p in enumerate(u)] for u in ctx.units]
        dlog = dlogits.reshape(-1, int(dlogits.shape[-1]))
        d_head_b = dlog.sum(0)
        scaled_w = [u[3] * scale for u in ctx.units]  # h W, [2m, F] each
        d: torch.Tensor | None = None  # gradient w.r.t. the current layer's output pairs
        for seg in reversed(range(len(spec.segments))):
            lo, hi = spec.segments[seg]
            if spec.keep_all:
                stash = ctx.stashes[seg]
            else:
                with torch.no_grad():
                    last, stash = SwitchStack._run(ctx, inputs[seg], lo, hi, True)
                if seg == len(spec.segments) - 1:
                    final = last.view(b, n, m)[:, :t]
            if d is None:  # the head, once the final switch output is at hand
                d_head_w = dlog.t().mm(final.reshape(-1, m))
                d_pos = dlogits.new_zeros(b, n, m)
                d_pos[:, :t] = dlogits.matmul(head_w)
                d = pairs(d_pos)
            for idx in reversed(range(lo, hi)):
                unit, inverse = spec.layers[idx]
                if inverse is not None:  # the permutation's gradient is the inverse permutation
                    d = pairs(shuffle(d.view(b, n, m), not inverse))
                x, y, g, nstash = stash[idx - lo]
                zw, nb, gain, _, _, _ = ctx.units[unit]
                gz, gnb, _, gw, gb, gs = grads[unit]
                gb.add_(d.sum(0))
                gs.add_((d * x).sum(0))
                gw.addmm_(d.t(), g)
                dy = torch.ops.aten.gelu_backward(torch.mm(d, scaled_w[unit]), y.view_as(g))
                dz, dnb = norm_backward(dy, nstash, gain, nb, b, axis)
                gnb.add_(dnb)
                gz.addmm_(dz.t(), x)
                d = (d * ctx.sigs[unit]).addmm_(dz, zw)
                stash[idx - lo] = None  # free this layer's intermediates as soon as they are used
        assert d is not None  # spec.segments is never empty
        out: list[torch.Tensor | None] = [d.view(b, n, m), None]
        used = {unit for unit, _ in spec.layers}
        for u, (gz, gnb, _, gw, gb, gs) in enumerate(grads):
            if u not in used:  # as autograd: a unit no layer ran (short inputs, ``inner``) gets no gradient
                out += [None] * PER_UNIT
                continue
            assert gw is not None and gb is not None and gs is not None  # only the unit gain's slot is None
            sig = ctx.sigs[u]
            d_s = gs.mul_(sig * (1 - sig) * spec.lr_adjust)
            out += [gz, gnb, None, gw.mul_(scale), gb.mul_(scale), d_s]
        ctx.stashes = None
        return (*out, d_head_w, d_head_b)
