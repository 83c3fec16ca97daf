"""Reformer's LSH attention, the fast kernel: batched sorting and chunking, masks as one additive term.

Kitaev, Kaiser, Levskaya. "Reformer: The Efficient Transformer". ICLR 2020, arXiv 2001.04451, Sec. 2.
The maths is :func:`harness.models.lsh.lsh_attention_reference`, the paper's algorithm written out
step by step; this module computes the same result faster and in less memory, and
tests/test_kernels_reference.py checks that the two agree on values and gradients. What the kernel
does differently, and why:

- hashing reads argmax([xR; -xR]) off the max and the min of xR (no [.., nb] concatenation);
- queries, keys and values are gathered together, one row copy per round (:func:`gather_rows`);
- log N_ij is counted as bytes over the other rounds only, and only where it is not one constant
  (one chunk, one round), where it cancels;
- the masks and log N_ij become one term subtracted in place from the scores (+inf for a masked key,
  through x / 0), and the self mask a fill of the diagonal: CPU exp takes a slow path on large finite
  negatives, and every fresh [.., m, 2m] tensor costs page faults;
- softmax and logsumexp come from one fused softmax with a hand-written backward (:class:`SoftmaxLse`).

The paper's mask values and the rotation draw are the reference module's, so that both paths draw
the same rotations from the same RNG.

Shapes: B batch, H heads, T (padded) length, Dh head width, R hash rounds, nb buckets, C chunks per
round, m chunk length (``bucket_size``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from harness.models.lsh import SELF_MASK_VALUE, random_rotations

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


class SoftmaxLse(torch.autograd.Function):
    """(softmax, logsumexp) over the last axis from one fused softmax.

    logsumexp = max - log(max probability): both maxima are cheap reductions without indices.
    Backward: d/d dots = softmax_backward(d probs) + probs * d lse.
    """

    @staticmethod
    def forward(
        ctx: Any, dots: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        probs = dots.softmax(dim=-1)
        ctx.save_for_backward(probs)
        return probs, dots.amax(dim=-1, keepdim=True) - probs.amax(dim=-1, keepdim=True).log()

    @staticmethod
    def backward(
        ctx: Any, d_probs: torch.Tensor, d_lse: torch.Tensor
    ) -> torch.Tensor:
        (probs,) = ctx.saved_tensors
        grad = torch._softmax_backward_data(d_probs, probs, -1, probs.dtype)
        return grad.addcmul_(probs, d_lse)


def softmax_lse(dots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax over the last axis, logsumexp with a kept axis); the same maths with or without autograd.

    Masked entries are -inf, which exp handles on its fast path; finite scores far below the row
    maximum (< -88) take a slow path in CPU exp, so masks are -inf rather than a large finite number.
    """
    if torch.is_grad_enabled() and dots.requires_grad:
        return SoftmaxLse.apply(dots)
    probs = dots.softmax(dim=-1)
    return probs, dots.amax(dim=-1, keepdim=True) - probs.amax(dim=-1, keepdim=True).log()


def gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of x [B, H, T, D] at positions idx [B, H, N] -> [B, H, N, D] (row copies, not a gather)."""
    b, h = idx.shape[:2]
    bh = torch.arange(b * h, device=idx.device).view(b, h, 1)
    rows = x.reshape(b * h, *x.shape[2:])[bh.view(-1, 1), idx.reshape(b * h, -1)]  # [B*H, N, D]
    return rows.view(b, h, idx.shape[2], -1)


def look_back(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Chunks along ``dim``, chunk contents along ``dim + 1``: each chunk followed by the chunk before it
    (in the same round; the first chunk's predecessor is the last), [.., C, m, ..] -> [.., C, 2m, ..]."""
    return torch.cat([x, x.roll(1, dims=dim)], dim=dim + 1)


def log_duplicates(
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
    vl = valid_len if valid_len is not None and valid_len < t else None
    sort_idx, undo, chunk = sort_rounds(qk, rotations, nb, m, vl)

    # scaled queries, unit-length keys and values, gathered together: [B, H, T, 2 Dh + Dv]
    packed = torch.cat([qk * (1.0 / math.sqrt(dh)), F.normalize(qk, dim=-1), v], dim=-1)
    outs, lses = [], []
    for rnd in range(r):
        order = sort_idx[:, :, rnd]  # [B, H, T]
        sq, sk, sv = gather_rows(packed, order).view(b, h, c, m, -1).split([dh, dh, v.shape[-1]], dim=-1)
        dots = torch.matmul(sq, look_back(sk, 2).transpose(-1, -2))  # [B, H, C, m, 2m]
        penalty = round_penalty(dots, order, chunk, rnd, causal, vl)
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
            probs, lse = softmax_lse(dots)  # [B, H, C, m, 2m], [B, H, C, m, 1]
            lses.append(gather_rows(lse.view(b, h, t, 1), undo[:, :, rnd]).view(b, h, t))
        out = torch.matmul(probs, look_back(sv, 2))  # [B, H, C, m, Dv]
        outs.append(gather_rows(out.view(b, h, t, -1), undo[:, :, rnd]))  # original order: [B, H, T, Dv]
    if r == 1:
        return outs[0]
    weights = torch.stack(lses, dim=2).softmax(dim=2)  # [B, H, R, T]: the rounds' shares of the normaliser
    return (torch.stack(outs, dim=2) * weights[..., None]).sum(dim=2)


def sort_rounds(
    qk: torch.Tensor, rotations: torch.Tensor, nb: int, m: int, vl: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Hash and sort every round: (sort_idx, undo, chunk), each [B, H, R, T].

    ``sort_idx`` lists the positions by (bucket, position); ``undo`` is each position's rank in that
    order; ``chunk`` is each position's chunk, or None when N_ij is one constant that cancels (one
    chunk, where every key is seen twice, or one round).
    """
    t = qk.shape[2]
    c, r = t // m, rotations.shape[-2]
    with torch.no_grad():
        buckets = hash_vectors(qk, rotations)  # [B, H, R, T]
        if vl is not None:  # padding gets a bucket of its own, sorted last
            buckets[..., vl:] = nb
        pos = torch.arange(t, device=qk.device)
        sort_idx = (buckets * t + pos).argsort(dim=-1)  # [B, H, R, T]: positions by (bucket, position)
        undo = torch.empty_like(sort_idx).scatter_(-1, sort_idx, pos.expand_as(sort_idx))  # rank of each
        count = c > 1 and r > 1  # else N_ij is one constant (1, or 2R with one chunk seen twice): it cancels
        chunk = (undo // m).to(torch.int32) if count else None  # [B, H, R, T]: a position's chunk, per round
    return sort_idx, undo, chunk


def round_penalty(
    dots: torch.Tensor,
    order: torch.Tensor,
    chunk: torch.Tensor | None,
    rnd: int,
    causal: bool,
    vl: int | None,
) -> torch.Tensor | None:
    """What to subtract from each score [B, H, C, m, 2m] of round ``rnd``: log N_ij, and +inf where the
    key is masked (causal: a later position; otherwise: padding). None: nothing to subtract.

    Causal rows never need the padding mask: padding lies in every real query's future, and padded
    queries' outputs are dropped.
    """
    b, h, c, m, _ = dots.shape
    with torch.no_grad():
        spos = order.view(b, h, c, m)
        kpos = look_back(spos, 2)  # [B, H, C, 2m]
        penalty = log_duplicates(chunk, rnd, order, kpos, dots.dtype) if chunk is not None else None
        if causal or vl is not None:
            kp = kpos.to(torch.int32)[..., None, :]
            if causal:  # 1 visible, 0 masked: [B, H, C, m, 2m]
                visible = torch.empty(dots.shape, dtype=dots.dtype, device=dots.device)
                torch.le(kp, spos.to(torch.int32)[..., :, None], out=visible)
            else:  # padding keys: [B, H, C, 1, 2m]
                assert vl is not None  # not causal, so the branch was taken for vl
                visible = (kp < vl).to(dots.dtype)
            # (1 + log N) / visible - 1: log N where visible, +inf where masked (x / 0: exp's fast path)
            penalty = visible.reciprocal() if penalty is None else penalty.add_(1).div_(visible)
            penalty = penalty.sub_(1)
    return penalty
