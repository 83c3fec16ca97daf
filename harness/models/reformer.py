"""Reformer: LSH attention with shared QK, reversible residual layers, chunked feed-forward.

Kitaev, Kaiser, Levskaya. "Reformer: The Efficient Transformer". ICLR 2020, arXiv 2001.04451.

A decoder-only language model by default (``causal: true``, io "lm"); ``causal: false`` gives the
bidirectional layout (io "masked"). Shapes: B batch, T tokens, Tp padded length, D d_model, H heads,
Dh = D / H, R hash rounds, nb buckets, C chunks per round, m chunk length (``bucket_size``), V vocab.

Faithful to the paper (Sec. 2-3):
- **LSH.** Per forward (training and evaluation alike), a fresh Gaussian R [Dh, nb/2] per round,
  batch element and head; h(x) = argmax([xR; -xR]) (``hash_vectors``), so buckets are invariant to
  scaling a vector by a positive constant.
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
- Masks are built as one additive term per entry (log N_ij, or +inf for masked keys, via x / 0) and
  the scores are edited in place: CPU exp takes a slow path on large finite negatives, and every fresh
  [.., m, 2m] tensor costs page faults, so both are avoided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from harness.config import bounded, positive
from harness.models.base import ModelOutput
from harness.models.blocks import FeedForward, TiedHead, TokenEmbedding, init_linear_xavier
from harness.registry import register_model

SELF_MASK_VALUE = -1e5  # the paper's finite value for a token attending to itself
MASK_VALUE = float("-inf")  # causal and padding masks (every row keeps its finite self entry)


# --------------------------------------------------------------------------------------------------
# Kernels, on [B, H, T, Dh] tensors


def hash_vectors(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """LSH buckets h(x) = argmax([xR; -xR]) for every round; x [B, H, T, Dh], rotations
    [B or 1, H or 1, Dh, R, nb/2] -> buckets [B, H, R, T] (int64 in [0, nb)).

    The argmax over the concatenation is read off the max and the min of xR, which saves
    materialising [xR; -xR].
    """
    b, h, _, dh = x.shape
    half = rotations.shape[-1]
    rot = rotations.expand(b, h, dh, *rotations.shape[-2:])
    with torch.no_grad():
        proj = torch.einsum("bhtd,bhdrk->bhrtk", x, rot)  # [B, H, R, T, nb/2]
        hi, hi_idx = proj.max(dim=-1)
        lo, lo_idx = proj.min(dim=-1)
        return torch.where(hi >= -lo, hi_idx, lo_idx + half)  # ties go to the first half, as argmax's


def random_rotations(
    b: int, h: int, dh: int, n_hashes: int, n_buckets: int, like: torch.Tensor
) -> torch.Tensor:
    """Fresh Gaussian rotations [B, H, Dh, R, nb/2] from torch's global RNG."""
    return torch.randn(b, h, dh, n_hashes, n_buckets // 2, device=like.device, dtype=like.dtype)


class _SoftmaxLse(torch.autograd.Function):
    """(softmax, logsumexp) over the last axis from one fused softmax.

    logsumexp = max - log(max probability): both maxima are cheap reductions without indices.
    Backward: d/d dots = softmax_backward(d probs) + probs * d lse.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, dots: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        probs = dots.softmax(dim=-1)
        ctx.save_for_backward(probs)
        return probs, dots.amax(dim=-1, keepdim=True) - probs.amax(dim=-1, keepdim=True).log()

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, d_probs: torch.Tensor, d_lse: torch.Tensor
    ) -> torch.Tensor:
        (probs,) = ctx.saved_tensors
        grad = torch._softmax_backward_data(d_probs, probs, -1, probs.dtype)
        return grad.addcmul_(probs, d_lse)


def _softmax_lse(dots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax over the last axis, logsumexp with a kept axis); the same maths with or without autograd.

    Masked entries are -inf, which exp handles on its fast path; finite scores far below the row
    maximum (< -88) take a slow path in CPU exp, so masks are -inf rather than a large finite number.
    """
    if torch.is_grad_enabled() and dots.requires_grad:
        return _SoftmaxLse.apply(dots)
    probs = dots.softmax(dim=-1)
    return probs, dots.amax(dim=-1, keepdim=True) - probs.amax(dim=-1, keepdim=True).log()


def _rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of x [B, H, T, D] at positions idx [B, H, N] -> [B, H, N, D] (row copies, not a gather)."""
    b, h = idx.shape[:2]
    bh = torch.arange(b * h, device=idx.device).view(b, h, 1)
    rows = x.reshape(b * h, *x.shape[2:])[bh.view(-1, 1), idx.reshape(b * h, -1)]  # [B*H, N, D]
    return rows.view(b, h, idx.shape[2], -1)


def full_shared_qk_attention(
    qk: torch.Tensor, v: torch.Tensor, *, causal: bool, valid_len: int | None = None
) -> torch.Tensor:
    """Dense shared-QK attention with the Reformer self mask; qk, v [B, H, T, Dh] -> [B, H, T, Dh].

    Keys are the queries normalised to unit length; a token's score on itself is -1e5 (finite);
    later positions (``causal``) and positions >= ``valid_len`` are masked as keys.
    """
    t, dh = qk.shape[-2:]
    k = F.normalize(qk, dim=-1)
    dots = torch.matmul(qk * (1.0 / math.sqrt(dh)), k.transpose(-1, -2))  # [B, H, T, T]
    with torch.no_grad():
        pos = torch.arange(t, device=qk.device)
        qpos, kpos = pos[:, None], pos[None, :]
        self_mask = qpos == kpos
        vl = valid_len if valid_len is not None and valid_len < t else None
        masked = _masked(qpos, kpos, causal, vl)
    dots = torch.where(self_mask, SELF_MASK_VALUE, dots)
    if masked is not None:  # a token's own entry stays finite, so every row has one
        dots = dots.masked_fill(masked & ~self_mask, MASK_VALUE)
    return torch.matmul(dots.softmax(dim=-1), v)


def _masked(
    qpos: torch.Tensor, kpos: torch.Tensor, causal: bool, valid_len: int | None
) -> torch.Tensor | None:
    """Keys a query may not see, from query positions [..., Q, 1] and key positions [..., 1, K]."""
    out = kpos > qpos if causal else None
    if valid_len is not None:
        pad = kpos >= valid_len
        out = pad if out is None else out | pad
    return out


def _look_back(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Chunks along ``dim``, chunk contents along ``dim + 1``: each chunk followed by the chunk before it
    (in the same round; the first chunk's predecessor is the last), [.., C, m, ..] -> [.., C, 2m, ..]."""
    return torch.cat([x, x.roll(1, dims=dim)], dim=dim + 1)


def _log_duplicates(
    chunk: torch.Tensor, rnd: int, sort_idx: torch.Tensor, kpos: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """log N_ij for the entries [B, H, C, m, 2m] of round ``rnd`` (C >= 2 chunks, R >= 2 rounds).

    N_ij counts the entries of query i that hold key j over all rounds and both chunks. Within round
    ``rnd`` that is exactly 1 (two different chunks); in another round r', key j is in i's window iff
    its chunk there (``chunk`` [B, H, R, T], by position) is i's chunk or the one before (cyclically).
    Loops over rounds only; the other rounds' hits are summed as bytes and converted to floats once.
    """
    b, h, r, _ = chunk.shape
    c, two_m = kpos.shape[-2:]
    m = two_m // 2
    shape = (b, h, c, m, two_m)
    hits = torch.zeros(shape, dtype=torch.uint8, device=chunk.device)  # N_ij - 1
    hit = torch.empty(shape, dtype=torch.uint8, device=chunk.device)
    for other in range(r):
        if other == rnd:
            continue
        cq = chunk[:, :, other].gather(2, sort_idx).view(b, h, c, m, 1)  # the query's chunk there
        ck = chunk[:, :, other].gather(2, kpos.reshape(b, h, -1)).view(b, h, c, 1, two_m)  # the key's
        hits.add_(torch.eq(ck, cq, out=hit))
        hits.add_(torch.eq(ck, (cq - 1).remainder(c), out=hit))
    return hits.to(dtype).add_(1).log()


def lsh_attention(
    qk: torch.Tensor,
    v: torch.Tensor,
    *,
    n_hashes: int,
    bucket_size: int,
    causal: bool,
    n_buckets: int | None = None,
    valid_len: int | None = None,
    rotations: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-round LSH attention with shared QK (Kitaev et al. 2020, Sec. 2); [B, H, T, Dh] -> same.

    ``bucket_size`` (m) is the chunk length and must divide T. ``n_buckets`` defaults to 2 T / m.
    ``rotations`` [B or 1, H or 1, Dh, n_hashes, n_buckets/2] replaces the fresh random draw.
    ``valid_len``: positions >= valid_len are padding. They are hashed to an extra bucket of their own,
    so they sort after every real position and never move a real position's chunk boundary (nor does
    their hash, degenerate for zero vectors, depend on rounding noise in the reversible recomputation);
    without ``causal`` they are masked as keys (with it they are in every real query's future).
    No Python loop over chunks: sorting, gathering and each round's chunked scores [B, H, C, m, 2m] are
    batched; the rounds run one after the other (a loop of R), which halves the working set for R = 2.
    """
    b, h, t, dh = qk.shape
    m, r = bucket_size, n_hashes
    if t % m:
        raise ValueError(f"bucket_size {m} must divide the (padded) length {t}")
    c = t // m
    nb = n_buckets if n_buckets is not None else 2 * c
    if nb % 2 or nb < 2:
        raise ValueError(f"n_buckets must be even and >= 2, got {nb}")
    if rotations is None:
        rotations = random_rotations(b, h, dh, r, nb, qk)
    elif rotations.shape[-3:] != (dh, r, nb // 2):
        raise ValueError(f"rotations must end in ({dh}, {r}, {nb // 2}), got {tuple(rotations.shape)}")
    dev = qk.device
    vl = valid_len if valid_len is not None and valid_len < t else None

    with torch.no_grad():
        buckets = hash_vectors(qk, rotations)  # [B, H, R, T]
        if vl is not None:  # padding gets a bucket of its own, sorted last
            buckets[..., vl:] = nb
        pos = torch.arange(t, device=dev)
        sort_idx = (buckets * t + pos).argsort(dim=-1)  # [B, H, R, T]: positions by (bucket, position)
        undo = torch.empty_like(sort_idx).scatter_(-1, sort_idx, pos.expand_as(sort_idx))  # rank of each
        count = c > 1 and r > 1  # else N_ij is one constant (1, or 2R with one chunk seen twice): it cancels
        chunk = (undo // m).to(torch.int32) if count else None  # [B, H, R, T]: a position's chunk, per round

    # scaled queries, unit-length keys and values, gathered together: [B, H, T, 2 Dh + Dv]
    packed = torch.cat([qk * (1.0 / math.sqrt(dh)), F.normalize(qk, dim=-1), v], dim=-1)
    outs, lses = [], []
    for rnd in range(r):
        order = sort_idx[:, :, rnd]  # [B, H, T]
        sq, sk, sv = _rows(packed, order).view(b, h, c, m, -1).split([dh, dh, v.shape[-1]], dim=-1)
        dots = torch.matmul(sq, _look_back(sk, 2).transpose(-1, -2))  # [B, H, C, m, 2m]

        with torch.no_grad():
            # what to subtract from each score: log N_ij, and +inf where the key is masked (causal: a
            # later position; otherwise: padding). Causal rows never need the padding mask: padding lies
            # in every real query's future, and padded queries' outputs are dropped.
            spos = order.view(b, h, c, m)
            kpos = _look_back(spos, 2)  # [B, H, C, 2m]
            penalty = _log_duplicates(chunk, rnd, order, kpos, dots.dtype) if chunk is not None else None
            if causal or vl is not None:
                kp = kpos.to(torch.int32)[..., None, :]
                if causal:  # 1 visible, 0 masked: [B, H, C, m, 2m]
                    visible = torch.empty(dots.shape, dtype=dots.dtype, device=dev)
                    torch.le(kp, spos.to(torch.int32)[..., :, None], out=visible)
                else:  # padding keys: [B, H, C, 1, 2m]
                    visible = (kp < vl).to(dots.dtype)
                # (1 + log N) / visible - 1: log N where visible, +inf where masked (x / 0: exp's fast path)
                penalty = visible.reciprocal() if penalty is None else penalty.add_(1).div_(visible)
                penalty = penalty.sub_(1)

        # In place on the matmul's output (its backward needs only its inputs): no new [.., m, 2m] tensor.
        if penalty is not None:
            dots = dots.sub_(penalty)
        # A query's own key sits on the diagonal of its own chunk's block (and of the look-back block when
        # the one chunk is its own predecessor): the self mask is a fill of that strided diagonal. It comes
        # last, so that a padded query, whose every other key is masked, keeps one finite entry.
        dots[..., :m].diagonal(dim1=-2, dim2=-1).fill_(SELF_MASK_VALUE)
        if c == 1:
            dots[..., m:].diagonal(dim1=-2, dim2=-1).fill_(SELF_MASK_VALUE)
        if r == 1:
            probs = dots.softmax(dim=-1)
        else:
            probs, lse = _softmax_lse(dots)  # [B, H, C, m, 2m], [B, H, C, m, 1]
            lses.append(_rows(lse.view(b, h, t, 1), undo[:, :, rnd]).view(b, h, t))
        out = torch.matmul(probs, _look_back(sv, 2))  # [B, H, C, m, Dv]
        outs.append(_rows(out.view(b, h, t, -1), undo[:, :, rnd]))  # back to original order: [B, H, T, Dv]
    if r == 1:
        return outs[0]
    weights = torch.stack(lses, dim=2).softmax(dim=2)  # [B, H, R, T]: the rounds' shares of the normaliser
    return (torch.stack(outs, dim=2) * weights[..., None]).sum(dim=2)


# --------------------------------------------------------------------------------------------------
# Config


@dataclass
class ReformerConfig:
    vocab_size: int = positive(32)
    d_model: int = positive(128)
    n_heads: int = positive(4)
    d_ff: int = positive(512)
    n_layers: int = positive(2)
    dropout: float = bounded(0.1, lo=0.0, hi=0.99)
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

    def check(self) -> list[tuple[str, str]]:
        if self.d_model % self.n_heads:
            return [("n_heads", f"must divide d_model ({self.d_model}), got {self.n_heads}")]
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
            y = lsh_attention(
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
    def forward(  # type: ignore[override]
        ctx: Any,
        x1: torch.Tensor,
        x2: torch.Tensor,
        layers: nn.ModuleList,
        opts: _Opts,
        *params: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        states = []
        for layer in layers:
            sf = _RngState(x1.device)
            x1 = x1 + layer.f(x2, opts)
            sg = _RngState(x1.device)
            x2 = x2 + layer.g(x1, opts)
            states.append((sf, sg))
        ctx.layers, ctx.opts, ctx.states = layers, opts, states
        ctx.save_for_backward(x1, x2)
        return x1, x2

    @staticmethod
    def backward(ctx: Any, dy1: torch.Tensor, dy2: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
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
class Reformer(nn.Module):
    """Kitaev et al. 2020: LSH attention (shared QK, n hash rounds), reversible layers, chunked FFN."""

    def __init__(self, c: ReformerConfig) -> None:
        super().__init__()
        self.config = c
        self.io = "lm" if c.causal else "masked"
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

    def forward(self, x: torch.Tensor) -> ModelOutput:
        t = x.shape[1]
        h = _mask_dropout(self.embed(x), self.config.dropout, self.training)  # [B, T, D]
        tp = self.padded_len(t)
        if tp > t:
            h = F.pad(h, (0, 0, 0, tp - t))  # [B, Tp, D]
        opts = _Opts(self.current_n_hashes(), t if tp > t else None)
        grad = torch.is_grad_enabled()
        if self.config.reversible and grad:
            params = _params(self.layers)
            y1, y2 = _ReversibleStack.apply(h, h, self.layers, opts, *params)
        else:  # ordinary residual layers, the same maths
            y1, y2 = h, h
            for layer in self.layers:
                y1 = y1 + layer.f(y2, opts)
                y2 = y2 + layer.g(y1, opts)
        y1, y2 = y1[:, :t], y2[:, :t]
        if grad:  # keep only Y1, Y2 and the logits for backward
            logits = checkpoint(self._output, y1, y2, use_reentrant=False)
        else:
            logits = self._output(y1, y2)
        return ModelOutput(logits)
