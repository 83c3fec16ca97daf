"""Reformer (Kitaev et al. 2020): LSH attention, shared QK, duplicate correction, reversible layers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import harness
from harness.core.errors import HarnessError
from harness.core.registry import TASKS
from harness.measure.costs import measure_act_bytes
from harness.measure.flops import count_flops
from harness.models import reformer as rf
from harness.models.kernels.lsh_attention import hash_vectors, lsh_attention
from harness.models.lsh import full_shared_qk_attention
from harness.tasks.base import Batch

V = 12
TINY = {"vocab_size": V, "d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 2, "dropout": 0.0}


def build(**cfg: object) -> torch.nn.Module:
    return harness.build_model("reformer", **{**TINY, **cfg})


def qkv(b: int = 2, h: int = 2, t: int = 16, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, t, d, generator=g, dtype=torch.float64),
            torch.randn(b, h, t, d, generator=g, dtype=torch.float64))


def tokens(b: int = 2, t: int = 13, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


# --- the kernel --------------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n_hashes", [1, 4])
def test_one_chunk_lsh_equals_full_shared_qk_attention(causal: bool, n_hashes: int) -> None:
    """With bucket_size = length everything is one chunk: LSH sees every key (twice per round, which
    the log N correction undoes), so it equals dense shared-QK attention under the same self mask."""
    qk, v = qkv(t=16)
    full = full_shared_qk_attention(qk, v, causal=causal)
    lsh = lsh_attention(qk, v, n_hashes=n_hashes, bucket_size=16, causal=causal)
    torch.testing.assert_close(lsh, full, atol=1e-5, rtol=0)
    # padding: keys at positions >= valid_len are invisible to both
    full = full_shared_qk_attention(qk, v, causal=causal, valid_len=11)
    lsh = lsh_attention(qk, v, n_hashes=n_hashes, bucket_size=16, causal=causal, valid_len=11)
    torch.testing.assert_close(lsh[..., :11, :], full[..., :11, :], atol=1e-5, rtol=0)


def test_self_mask_is_finite_and_used_only_without_other_targets() -> None:
    qk, v = qkv(t=8)
    out = full_shared_qk_attention(qk, v, causal=True)
    torch.testing.assert_close(out[..., 0, :], v[..., 0, :])  # position 0 has only itself
    # elsewhere a token's own value gets weight exp(-1e5) ~ 0: the output is the average over the others
    dots = qk @ F.normalize(qk, dim=-1).transpose(-1, -2) / math.sqrt(qk.shape[-1])
    w = dots[..., 3, :3].softmax(-1)
    torch.testing.assert_close(out[..., 3, :], (w[..., None] * v[..., :3, :]).sum(-2))


def test_buckets_are_argmax_of_plus_minus_projection_and_scale_invariant() -> None:
    qk, _ = qkv(t=32)
    rot = torch.randn(1, 2, 8, 3, 5, dtype=torch.float64)
    buckets = hash_vectors(qk, rot)
    proj = torch.einsum("bhtd,hdrk->bhrtk", qk, rot[0])
    assert torch.equal(buckets, torch.cat([proj, -proj], -1).argmax(-1))
    assert buckets.min() >= 0 and buckets.max() < 10
    for c in (0.01, 3.7, 1e4):
        assert torch.equal(hash_vectors(qk * c, rot), buckets)


def _union_attention(
    qk: torch.Tensor, v: torch.Tensor, rot: torch.Tensor, m: int, causal: bool
) -> torch.Tensor:
    """Dense attention restricted to the union of every query's windows, built with Python loops."""
    b, h, t, d = qk.shape
    buckets = hash_vectors(qk, rot)  # [B, H, R, T]
    n_chunks = t // m
    allowed = torch.zeros(b, h, t, t, dtype=torch.bool)
    for bi in range(b):
        for hi in range(h):
            for r in range(buckets.shape[2]):
                order = sorted(range(t), key=lambda p: (int(buckets[bi, hi, r, p]), p))
                chunk = {p: k // m for k, p in enumerate(order)}
                for i in range(t):
                    for j in range(t):
                        if chunk[j] in (chunk[i], (chunk[i] - 1) % n_chunks):
                            allowed[bi, hi, i, j] = True
    dots = qk @ F.normalize(qk, dim=-1).transpose(-1, -2) / math.sqrt(d)
    eye = torch.eye(t, dtype=torch.bool)
    dots = dots.masked_fill(eye, -1e5).masked_fill(~allowed, float("-inf"))
    if causal:
        dots = dots.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    return dots.softmax(-1) @ v


@pytest.mark.parametrize("causal", [True, False])
def test_multi_round_lsh_is_attention_over_the_union_of_windows(causal: bool) -> None:
    """Rounds combined by their logsumexps, with log N_ij subtracted, is exactly softmax attention over
    the union of the keys a query saw in any round (each key counted once)."""
    qk, v = qkv(b=1, t=32, seed=3)
    rot = torch.randn(1, 2, 8, 3, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    out = lsh_attention(qk, v, n_hashes=3, bucket_size=4, causal=causal, rotations=rot)
    torch.testing.assert_close(out, _union_attention(qk, v, rot, 4, causal), atol=1e-6, rtol=0)


@pytest.mark.parametrize("causal", [True, False])
def test_identical_rounds_equal_one_round(causal: bool) -> None:
    """Duplicate correction: R identical rounds see every key R times; log N = log R undoes it."""
    qk, v = qkv(t=32, seed=1)
    rot = torch.randn(1, 2, 8, 1, 8, dtype=torch.float64)  # 32 positions, 8 chunks of 4: 16 buckets
    one = lsh_attention(qk, v, n_hashes=1, bucket_size=4, causal=causal, rotations=rot)
    four = lsh_attention(qk, v, n_hashes=4, bucket_size=4, causal=causal, rotations=rot.expand(1, 2, 8, 4, 8))
    torch.testing.assert_close(four, one, atol=1e-6, rtol=0)
    # without the correction the rounds would not be interchangeable with one: a different rotation differs
    other = lsh_attention(qk, v, n_hashes=1, bucket_size=4, causal=causal, rotations=torch.randn_like(rot))
    assert not torch.allclose(other, one, atol=1e-3)


def test_causal_mask_holds_with_many_chunks() -> None:
    """With several chunks and rounds, output i does not depend on the value of any later position."""
    qk, v = qkv(b=1, t=32, seed=2)
    v.requires_grad_(True)
    rot = torch.randn(1, 2, 8, 2, 8, dtype=torch.float64)
    out = lsh_attention(qk, v, n_hashes=2, bucket_size=4, causal=True, rotations=rot)
    for i in (0, 5, 17, 30):
        (grad,) = torch.autograd.grad(out[..., i, :].sum(), v, retain_graph=True)
        assert grad[..., i + 1 :, :].abs().max() == 0
        assert grad[..., : i + 1, :].abs().max() > 0


# --- the model ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dropout", [0.0, 0.2])
@pytest.mark.parametrize("ff_chunks", [1, 3])
def test_reversible_gradients_equal_ordinary_residuals(dropout: float, ff_chunks: int) -> None:
    """Same weights and RNG stream: the reversible backward (rebuilding X from Y and replaying the RNG for
    rotations and dropout) gives the gradients of plain residual layers, for parameters and input."""
    cfg = dict(TINY, n_layers=3, bucket_size=4, n_hashes=2, dropout=dropout, ff_chunks=ff_chunks)
    torch.manual_seed(0)
    rev = harness.build_model("reformer", reversible=True, **cfg).double()
    plain = harness.build_model("reformer", reversible=False, **cfg).double()
    plain.load_state_dict(rev.state_dict())
    x = tokens(t=13)
    embedded = torch.randn(2, 13, 16, dtype=torch.float64)
    results = []
    for model in (rev, plain):
        h0 = embedded.clone().requires_grad_(True)
        # differentiate with respect to the embedded input
        model.embed.forward = lambda _x, h0=h0: h0  # type: ignore[method-assign]
        torch.manual_seed(7)
        logits = model(x).logits
        (logits * torch.linspace(-1, 1, logits.numel(), dtype=logits.dtype).view_as(logits)).sum().backward()
        results.append((logits.detach(), h0.grad, {n: p.grad for n, p in model.named_parameters()}))
    (la, ga, pa), (lb, gb, pb) = results
    torch.testing.assert_close(la, lb, atol=1e-10, rtol=0)
    torch.testing.assert_close(ga, gb, atol=1e-5, rtol=0)
    assert pa.keys() == pb.keys()
    for name in pa:
        torch.testing.assert_close(pa[name], pb[name], atol=1e-5, rtol=0, msg=name)
    assert all(g is not None and g.abs().sum() > 0 for g in pa.values())


def test_rng_is_restored_and_replayed() -> None:
    """The backward recomputation must not disturb the global RNG stream."""
    model = build(dropout=0.3, bucket_size=4)
    torch.manual_seed(3)
    model(tokens()).logits.sum().backward()
    after_rev = torch.rand(3)
    plain = build(dropout=0.3, bucket_size=4, reversible=False)
    plain.load_state_dict(model.state_dict())
    torch.manual_seed(3)
    plain(tokens()).logits.sum().backward()
    assert torch.equal(torch.rand(3), after_rev)


@pytest.mark.parametrize(
    "cfg", [{"attention": "full"}, {"attention": "lsh", "bucket_size": 64, "n_hashes": 3}],
    ids=["full", "lsh-one-chunk"],
)
def test_changing_a_future_token_leaves_earlier_logits(cfg: dict) -> None:
    model = build(**cfg).eval()
    x = tokens(b=1, t=20)
    y = x.clone()
    y[0, -1] = (int(x[0, -1]) + 1) % V
    torch.manual_seed(0)
    a = model(x).logits
    torch.manual_seed(0)
    b = model(y).logits
    torch.testing.assert_close(a[0, :-1], b[0, :-1], atol=1e-6, rtol=0)
    assert not torch.allclose(a[0, -1], b[0, -1])
    # the bidirectional layout sees the change everywhere
    enc = build(causal=False, **cfg).eval()
    assert enc.io == "masked" and model.io == "lm"
    torch.manual_seed(0)
    a = enc(x).logits
    torch.manual_seed(0)
    assert not torch.allclose(a[0, :-1], enc(y).logits[0, :-1], atol=1e-6)


def test_eval_n_hashes_is_used_in_eval_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = rf.lsh_attention

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        seen.append(int(kwargs["n_hashes"]))  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rf, "lsh_attention", spy)
    model = build(n_hashes=2, eval_n_hashes=5, n_layers=1)
    model(tokens())
    assert seen == [2]
    model.eval()
    with torch.no_grad():
        model(tokens())
    assert seen == [2, 5]
    model(tokens()).logits.sum().backward()  # eval mode with autograd: the reversible path, rounds replayed
    assert seen == [2, 5, 5, 5]
    default = build(n_hashes=3, n_layers=1).eval()
    with torch.no_grad():
        default(tokens())
    assert seen[-1] == 3


@pytest.mark.parametrize(
    "cfg,key",
    [
        ({"pad_len": 100, "bucket_size": 64, "max_len": 64}, "bucket_size: must divide the padded length"),
        ({"pad_len": 32, "bucket_size": 16, "max_len": 64}, "pad_len: must be >= max_len"),
        ({"n_hashes": 0}, "n_hashes: must be >= 1"),
        ({"eval_n_hashes": 0}, "eval_n_hashes: must be >= 1"),
        ({"n_buckets": 7}, "n_buckets: must be even"),
        ({"bucket_size": 0}, "bucket_size: must be >= 1"),
        ({"d_model": 30, "n_heads": 4}, "n_heads: must divide d_model"),
    ],
)
def test_impossible_settings_are_refused_naming_the_key(cfg: dict, key: str) -> None:
    with pytest.raises(HarnessError, match=key):
        harness.build_model("reformer", **cfg)


def test_padding_and_explicit_lengths() -> None:
    """Inputs are padded to a multiple of bucket_size (or to pad_len) and cut back; padding is invisible."""
    x = tokens(b=2, t=13)
    a = build(bucket_size=8, n_hashes=1, n_buckets=2).eval()  # padded to 16: 2 chunks, 2 buckets
    b = build(bucket_size=8, n_hashes=1, n_buckets=2, pad_len=64, max_len=64).eval()  # padded to 64: 8 chunks
    b.load_state_dict(a.state_dict())
    assert a.padded_len(13) == 16 and b.padded_len(13) == 64
    assert a(x).logits.shape == b(x).logits.shape == (2, 13, V)
    with pytest.raises(ValueError, match="exceeds pad_len 64"):
        b(tokens(t=65))
    # padding sorts after every real position, so it never moves a real chunk boundary: with every real
    # token in one bucket (2 buckets, and a rotation that sends all real tokens to the positive side)
    # the real positions' causal windows are the same whatever the padded length.
    qk, v = qkv(b=1, h=1, t=32)
    rot = torch.ones(1, 1, 8, 1, 1, dtype=torch.float64)
    qk = qk.abs()  # every real projection is positive: bucket 0
    kw = {"n_hashes": 1, "bucket_size": 4, "causal": True, "n_buckets": 2, "valid_len": 13, "rotations": rot}
    short = lsh_attention(qk[..., :16, :], v[..., :16, :], **kw)  # type: ignore[arg-type]
    long = lsh_attention(qk, v, **kw)  # type: ignore[arg-type]
    torch.testing.assert_close(short[..., :13, :], long[..., :13, :])


@pytest.mark.parametrize("causal", [True, False])
def test_heavy_padding_stays_finite(causal: bool) -> None:
    """Chunks holding nothing but padding: each padded query keeps its finite self entry (no NaN)."""
    model = build(causal=causal, bucket_size=4, n_hashes=2, pad_len=32, max_len=32)
    x = tokens(t=5)
    logits = model(x).logits
    logits.sum().backward()
    assert logits.shape == (2, 5, V) and torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    qk, v = qkv(b=1, t=32)
    out = lsh_attention(qk, v, n_hashes=2, bucket_size=4, causal=causal, valid_len=5)
    assert torch.isfinite(out).all()


def test_ff_chunks_do_not_change_the_maths() -> None:
    torch.manual_seed(0)
    a = build(ff_chunks=1, attention="full").eval()
    b = build(ff_chunks=4, attention="full").eval()
    b.load_state_dict(a.state_dict())
    x = tokens()
    torch.testing.assert_close(a(x).logits, b(x).logits)


@pytest.mark.parametrize("causal", [True, False])
def test_flops_counted_without_unsupported_ops_on_many_chunks(causal: bool) -> None:
    model = build(bucket_size=4, n_hashes=3, causal=causal)
    x = tokens(t=18)  # padded to 20
    flops, unsupported = count_flops(model, Batch.of_tokens({"x": x}, x))
    assert unsupported == []
    assert flops > 0


def _act_bytes(n_layers: int, reversible: bool, seq_len: int = 512) -> int:
    task = TASKS.get("copy").obj(TASKS.get("copy").config())
    torch.manual_seed(0)
    model = harness.build_model("reformer", vocab_size=task.vocab_size, d_model=32, n_heads=2, d_ff=64,
                                n_layers=n_layers, dropout=0.0, max_len=seq_len, bucket_size=32,
                                reversible=reversible)
    batch = task.profile_batch(seq_len, 1, model.io, torch.Generator().manual_seed(0))
    return measure_act_bytes(model, batch, lambda m, b: task.loss(m(**b.inputs), b))


def test_memory_kept_for_backward_does_not_grow_with_depth() -> None:
    one, four = _act_bytes(1, True), _act_bytes(4, True)
    assert four <= 1.5 * one
    # Y1 and Y2 of the last layer, [512, 32] fp32 each, are kept; little else
    assert one < 4 * 512 * 32 * 4
    # the ordinary residual stack keeps every layer's activations
    assert _act_bytes(4, False) > 2 * _act_bytes(1, False)
