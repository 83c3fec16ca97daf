"""LSH attention as Kitaev et al. write it (the reference path), and dense shared-QK attention.

Kitaev, Kaiser, Levskaya. "Reformer: The Efficient Transformer". ICLR 2020, arXiv 2001.04451, Sec. 2.
The model (``harness.models.reformer``) says what is faithful and what is a choice.

:func:`lsh_attention_reference` is the algorithm step by step, with plain autograd: hash every
position by a random rotation, h(x) = argmax([xR; -xR]) (:func:`hash_buckets`); sort each round by
(bucket, position); cut the sorted order into chunks of m; let each chunk attend to itself and the
chunk before it, with shared QK (keys the unit-length queries), the finite self mask and log N_ij
subtracted for keys seen more than once (:func:`attend_round`, :func:`duplicate_counts`); combine the
rounds by their logsumexps. The model runs the fast kernel
:func:`harness.models.kernels.lsh_attention.lsh_attention` for the same result;
``Reformer(x, reference=True)`` runs this one, and tests/test_kernels_reference.py checks that the
two agree on values and gradients. The self-mask value and :func:`random_rotations` are shared
with the kernel, so both paths draw the same rotations.

:func:`full_shared_qk_attention` (``attention: full``) is dense and plain already; both paths use it.

Shapes: B batch, H heads, T (padded) length, Dh head width, Dv value width, R hash rounds, nb buckets,
C = T / m chunks per round, m chunk length (``bucket_size``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SELF_MASK_VALUE = -1e5  # the paper's finite value for a token attending to itself
MASK_VALUE = float("-inf")  # causal and padding masks (every row keeps its finite self entry)


def random_rotations(
    b: int, h: int, dh: int, n_hashes: int, n_buckets: int, like: torch.Tensor
) -> torch.Tensor:
    """Fresh Gaussian rotations [B, H, Dh, R, nb/2] from torch's global RNG."""
    return torch.randn(b, h, dh, n_hashes, n_buckets // 2, device=like.device, dtype=like.dtype)


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


# --------------------------------------------------------------------------------------------------
# The reference path: LSH attention step by step, as Sec. 2 describes it


def hash_buckets(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """h(x) = argmax([xR; -xR]), one random R per round: x [B, H, T, Dh], rotations
    [B or 1, H or 1, Dh, R, nb/2] -> buckets [B, H, R, T] in [0, nb)."""
    b, h, _, dh = x.shape
    rot = rotations.expand(b, h, dh, *rotations.shape[-2:])
    xr = torch.einsum("bhtd,bhdrk->bhrtk", x.detach(), rot)  # [B, H, R, T, nb/2]: xR
    return torch.cat([xr, -xr], dim=-1).argmax(dim=-1)  # [B, H, R, T]


def take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of x [B, H, T, D] at positions idx [B, H, *S] -> [B, H, *S, D]."""
    b, h, _, d = x.shape
    flat = idx.reshape(b, h, -1, 1).expand(-1, -1, -1, d)  # [B, H, N, D]
    return x.gather(2, flat).view(*idx.shape, d)


def duplicate_counts(chunk_of: torch.Tensor, qpos: torch.Tensor, kpos: torch.Tensor) -> torch.Tensor:
    """N_ij for the scores [B, H, C, m, 2m] of one round: how many of query i's attended entries, over
    all rounds, hold key j. In round r, key j is in query i's window once if j's chunk is i's chunk and
    once if it is the chunk before (both, with one chunk per round).

    chunk_of [B, H, R, T]: each position's chunk in each round; qpos [B, H, C, m] and kpos
    [B, H, C, 2m]: the query and key positions of this round's chunks.
    """
    b, h, r, _ = chunk_of.shape
    c, m = qpos.shape[-2:]
    cq = chunk_of.gather(3, qpos.reshape(b, h, 1, -1).expand(-1, -1, r, -1))  # [B, H, R, C m]
    ck = chunk_of.gather(3, kpos.reshape(b, h, 1, -1).expand(-1, -1, r, -1))  # [B, H, R, C 2m]
    cq, ck = cq.view(b, h, r, c, m, 1), ck.view(b, h, r, c, 1, 2 * m)
    hits = (ck == cq).long() + (ck == (cq - 1) % c).long()  # [B, H, R, C, m, 2m]
    return hits.sum(dim=2)  # [B, H, C, m, 2m]


def attend_round(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    order: torch.Tensor,
    chunk_of: torch.Tensor,
    m: int,
    causal: bool,
    valid: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One hash round: the positions in sorted order ``order`` [B, H, T] are cut into chunks of m, and
    each chunk attends to itself and to the chunk before it (the first chunk to the last).
    q, k [B, H, T, Dh], v [B, H, T, Dv] -> (out [B, H, T, Dv], logsumexp [B, H, T, 1]) in sorted order.
    """
    b, h, t, _ = q.shape
    c = t // m
    qpos = order.view(b, h, c, m)  # [B, H, C, m]: the positions in each chunk
    kpos = torch.cat([qpos, qpos.roll(1, dims=2)], dim=-1)  # [B, H, C, 2m]: and in the chunk before
    dots = take(q, qpos) @ take(k, kpos).transpose(-1, -2)  # [B, H, C, m, 2m]
    dots = dots - duplicate_counts(chunk_of, qpos, kpos).to(dots.dtype).log()  # each key counts once
    qp, kp = qpos[..., :, None], kpos[..., None, :]  # [B, H, C, m, 1], [B, H, C, 1, 2m]
    # causal: no later position (padding is later than every real one); else: no padding key
    dots = dots.masked_fill(kp > qp if causal else kp >= valid, MASK_VALUE)
    dots = dots.masked_fill(kp == qp, SELF_MASK_VALUE)  # a token attends to itself only if nothing else
    out = dots.softmax(dim=-1) @ take(v, kpos)  # [B, H, C, m, Dv]
    lse = dots.logsumexp(dim=-1, keepdim=True)  # [B, H, C, m, 1]: the round's share, for combining
    return out.view(b, h, t, -1), lse.view(b, h, t, 1)


def lsh_attention_reference(
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
    """Multi-round LSH attention with shared QK, the paper's algorithm with plain autograd;
    qk [B, H, T, Dh], v [B, H, T, Dv] -> [B, H, T, Dv].

    The same arguments and result as the kernel :func:`harness.models.kernels.lsh_attention.lsh_attention`
    (which the model runs); this one is written for reading and for testing the kernel against.
    ``bucket_size`` m must divide T; ``n_buckets`` defaults to 2 T / m; ``rotations`` replaces the
    random draw; positions >= ``valid_len`` are padding, hashed to a bucket of their own that sorts last.
    """
    b, h, t, dh = qk.shape
    m, c = bucket_size, t // bucket_size  # chunk length, chunks per round
    if t % m:
        raise ValueError(f"bucket_size {m} must divide the (padded) length {t}")
    nb = n_buckets if n_buckets is not None else 2 * c
    if rotations is None:
        rotations = random_rotations(b, h, dh, n_hashes, nb, qk)  # [B, H, Dh, R, nb/2]
    valid = valid_len if valid_len is not None else t

    # hash every position in every round, then sort each round by (bucket, position)
    buckets = hash_buckets(qk, rotations)  # [B, H, R, T]
    buckets[..., valid:] = nb  # padding: a bucket after every real one
    order = buckets.sort(dim=-1, stable=True).indices  # [B, H, R, T]: positions in sorted order
    rank = order.argsort(dim=-1)  # [B, H, R, T]: each position's place in that order
    chunk_of = rank // m  # [B, H, R, T]: each position's chunk

    # shared QK: the keys are the queries normalised to unit length; scores scaled by 1/sqrt(Dh)
    q = qk / math.sqrt(dh)  # [B, H, T, Dh]
    k = F.normalize(qk, dim=-1)  # [B, H, T, Dh]
    outs, lses = [], []
    for rnd in range(n_hashes):
        out, lse = attend_round(q, k, v, order[:, :, rnd], chunk_of, m, causal, valid)
        outs.append(take(out, rank[:, :, rnd]))  # [B, H, T, Dv], back in original order
        lses.append(take(lse, rank[:, :, rnd]).squeeze(-1))  # [B, H, T]
    # the rounds combined: round r weighs exp(lse_r - logsumexp over rounds of lse)
    weights = torch.stack(lses, dim=2).softmax(dim=2)  # [B, H, R, T]
    return (torch.stack(outs, dim=2) * weights[..., None]).sum(dim=2)  # [B, H, T, Dv]
