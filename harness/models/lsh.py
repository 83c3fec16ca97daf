"""LSH attention as Kitaev et al. write it, and the dense shared-QK attention of the Reformer.

Kitaev, Kaiser, Levskaya. "Reformer: The Efficient Transformer". ICLR 2020, arXiv 2001.04451, Sec. 2.
The model (``harness.models.reformer``) says what is faithful and what is a choice. The fast LSH
kernel is :func:`harness.models.kernels.lsh_attention.lsh_attention`.

Shapes: B batch, H heads, T (padded) length, Dh head width, R hash rounds, nb buckets.
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
