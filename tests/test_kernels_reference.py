"""The fast kernels (harness/models/kernels/) against the models' plain reference paths.

Each kernel must give its reference path's values and gradients (of every parameter and of the input),
in float64, with the random LSH rotations and dropout masks drawn identically for both: Reformer's
LSH attention against ``lsh.lsh_attention_reference`` and the whole model against
``Reformer(x, reference=True)``; the Residual Shuffle-Exchange network's SwitchStack kernel (training)
and its module path (inference, autocast, dropout) against ``ShuffleExchange(x, reference=True)``.
The last tests break the reference on purpose and check that the comparison then fails, so that an
agreement here is not a check that cannot fail.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import harness
from harness.models import lsh
from harness.models import shuffle_exchange as se
from harness.models.kernels.lsh_attention import hash_vectors, lsh_attention

# float64. Measured: outputs differ by at most 1.3e-15, gradients by 2.7e-13 (RSE, sequence-axis norm),
# elsewhere by 2e-14; a broken reference (the last tests) misses by more than 1e-3.
VALUES = {"rtol": 1e-12, "atol": 1e-12}
GRADS = {"rtol": 1e-11, "atol": 1e-11}

Result = tuple[torch.Tensor, dict[str, torch.Tensor | None]]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def disagreement(a: Result, b: Result) -> list[str]:
    """What differs between two (output, gradients) results beyond the tolerances, by name."""
    bad = [] if torch.allclose(a[0], b[0], **VALUES) else ["output"]
    assert a[1].keys() == b[1].keys()
    for name, ga in a[1].items():
        gb = b[1][name]
        if (ga is None) != (gb is None) or (ga is not None and not torch.allclose(ga, gb, **GRADS)):
            bad.append(name)
    return bad


# --- LSH attention: kernel against reference ------------------------------------------------------

# (length T, chunk m, valid_len, n_buckets): several chunks; padding (an odd valid length); one chunk
# (it looks back on itself) with padding; fixed bucket counts, 2 being the fewest
SHAPES = [(32, 4, None, None), (32, 4, 19, None), (16, 16, 11, None), (24, 8, None, 4), (20, 4, 13, 2)]


def lsh_run(fn: Callable[..., torch.Tensor], qk: torch.Tensor, v: torch.Tensor, weight: torch.Tensor,
            seed: int | None, **kw: object) -> Result:
    """(output, gradients of qk and v) of one attention function; rotations drawn after ``seed``."""
    qk, v = qk.clone().requires_grad_(True), v.clone().requires_grad_(True)
    if seed is not None:
        torch.manual_seed(seed)
    out = fn(qk, v, **kw)
    gqk, gv = torch.autograd.grad((out * weight).sum(), (qk, v))
    return out.detach(), {"qk": gqk, "v": gv}


def lsh_pair(t: int, m: int, valid_len: int | None, n_buckets: int | None, n_hashes: int, causal: bool,
             *, drawn: bool = False, seed: int = 0) -> tuple[Result, Result]:
    """(kernel, reference) on one random input; ``drawn``: both draw their own rotations from the same
    global RNG state, else both get the same explicit rotations."""
    g = seeded(seed)
    b, h, dh, dv = 2, 3, 8, 5
    qk = torch.randn(b, h, t, dh, generator=g, dtype=torch.float64)
    v = torch.randn(b, h, t, dv, generator=g, dtype=torch.float64)
    weight = torch.randn(b, h, t, dv, generator=g, dtype=torch.float64)
    nb = n_buckets if n_buckets is not None else 2 * t // m
    kw: dict[str, object] = {"n_hashes": n_hashes, "bucket_size": m, "causal": causal,
                             "n_buckets": n_buckets, "valid_len": valid_len}
    if not drawn:
        kw["rotations"] = torch.randn(b, 1, dh, n_hashes, nb // 2, generator=g, dtype=torch.float64)
    rng = 11 if drawn else None
    return (lsh_run(lsh_attention, qk, v, weight, rng, **kw),
            lsh_run(lsh.lsh_attention_reference, qk, v, weight, rng, **kw))


@pytest.mark.parametrize("t,m,valid_len,n_buckets", SHAPES)
@pytest.mark.parametrize("n_hashes", [1, 2, 3])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_lsh_kernel_equals_reference(
    t: int, m: int, valid_len: int | None, n_buckets: int | None, n_hashes: int, causal: bool
) -> None:
    kernel, reference = lsh_pair(t, m, valid_len, n_buckets, n_hashes, causal)
    assert disagreement(kernel, reference) == []


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_lsh_paths_draw_the_same_rotations(causal: bool) -> None:
    """Without explicit rotations each path draws its own; from one RNG state they are the same."""
    kernel, reference = lsh_pair(32, 4, 27, None, 2, causal, drawn=True)
    assert disagreement(kernel, reference) == []


def test_hashing_is_identical() -> None:
    """Buckets are integers: the kernel's max/min reading of argmax([xR; -xR]) gives the reference's."""
    g = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(2, 3, 40, 8, generator=g, dtype=dtype)
        rot = torch.randn(1, 3, 8, 4, 6, generator=g, dtype=dtype)
        assert torch.equal(hash_vectors(x, rot), lsh.hash_buckets(x, rot))


# --- the Reformer: kernel and reversible stack against the reference path -------------------------

RF = {"vocab_size": 12, "d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 2, "dropout": 0.0}


def model_run(model: torch.nn.Module, x: torch.Tensor, weight: torch.Tensor, **forward: object) -> Result:
    """(logits, gradients of every parameter and of the embedded input) of one forward and backward."""
    model.zero_grad(set_to_none=True)
    seen: list[torch.Tensor] = []

    def keep(_m: torch.nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        out.retain_grad()
        seen.append(out)
        return out

    hook = model.embed.register_forward_hook(keep)
    torch.manual_seed(7)  # the same rotations and dropout masks for every path
    try:
        logits = model(x, **forward).logits
    finally:
        hook.remove()
    (logits * weight).sum().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return logits.detach(), {**grads, "input": seen[0].grad}


@pytest.mark.parametrize("cfg,t", [
    ({"bucket_size": 4, "n_hashes": 2}, 13),  # padded to 16: 4 chunks
    ({"bucket_size": 4, "n_hashes": 3, "causal": False, "ff_chunks": 2}, 18),  # padded to 20
    ({"bucket_size": 8, "n_hashes": 1, "n_buckets": 4}, 16),  # no padding, one round
    ({"bucket_size": 4, "n_hashes": 2, "pad_len": 32, "max_len": 32, "causal": False}, 11),
    ({"bucket_size": 64, "n_hashes": 2}, 13),  # one chunk
    ({"bucket_size": 4, "n_hashes": 2, "dropout": 0.1, "n_layers": 3}, 13),  # same masks drawn
    ({"bucket_size": 4, "n_hashes": 4, "reversible": False}, 9),
], ids=["causal-h2", "bidir-h3", "h1-nopad", "pad_len", "one-chunk", "dropout", "plain-residual"])
def test_reformer_equals_its_reference_path(cfg: dict, t: int) -> None:
    torch.manual_seed(0)
    model = harness.build_model("reformer", **{**RF, **cfg}).double().train()
    x = torch.randint(0, RF["vocab_size"], (2, t), generator=seeded(1))
    weight = torch.randn(2, t, RF["vocab_size"], generator=seeded(2), dtype=torch.float64)
    kernel, reference = model_run(model, x, weight), model_run(model, x, weight, reference=True)
    assert disagreement(kernel, reference) == []
    assert all(g is not None and g.abs().sum() > 0 for g in kernel[1].values())
    model.eval()  # evaluation, without autograd: the same rounds, the same logits
    with torch.no_grad():
        torch.manual_seed(3)
        a = model(x).logits
        torch.manual_seed(3)
        assert torch.allclose(a, model(x, reference=True).logits, **VALUES)


# --- the Residual Shuffle-Exchange network: kernel and module path against the reference ---------

SE = {"vocab_size": 12, "d_model": 8, "d_ff": 16, "dropout": 0.0}


def se_model(**cfg: object) -> torch.nn.Module:
    torch.manual_seed(5)
    model = harness.build_model("shuffle_exchange", **{**SE, **cfg}).double().train()
    with torch.no_grad():  # off the initial values (norm bias 0, sigmoid(S) 0.9, ...)
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def se_runs(model: torch.nn.Module, t: int) -> dict[str, Result]:
    """The kernel (SwitchStack), the module path and the reference path on one input."""
    x = torch.randint(1, SE["vocab_size"], (3, t), generator=seeded(t))
    weight = torch.randn(3, t, SE["vocab_size"], generator=seeded(9), dtype=torch.float64)
    runs = {"reference": model_run(model, x, weight, reference=True)}
    if model.fast_path_applies():
        runs["kernel"] = model_run(model, x, weight)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(model), "fast_path_applies", lambda self: False)
        runs["module"] = model_run(model, x, weight)
    return runs


@pytest.mark.parametrize("t", [1, 2, 3, 11, 16])
@pytest.mark.parametrize("norm_axis,sharing,checkpoint,n_blocks,pad_id", [
    ("feature", "halves", "block", 2, None), ("feature", "inner", "none", 1, 0),
    ("feature", "inner", "block", 2, None), ("sequence", "halves", "none", 2, None),
    ("sequence", "inner", "block", 1, 0), ("sequence", "halves", "block", 3, 0),
])
def test_shuffle_exchange_equals_its_reference_path(
    t: int, norm_axis: str, sharing: str, checkpoint: str, n_blocks: int, pad_id: int | None
) -> None:
    """Both norm axes, both sharing modes, both checkpoint modes, zero-vector and token padding; short
    inputs leave units no layer runs (``inner``) without a gradient, on every path."""
    model = se_model(norm_axis=norm_axis, sharing=sharing, checkpoint=checkpoint, n_blocks=n_blocks,
                     pad_id=pad_id)
    runs = se_runs(model, t)
    assert runs.keys() == {"reference", "kernel", "module"}
    for path in ("kernel", "module"):
        assert disagreement(runs[path], runs["reference"]) == [], path
    assert runs["reference"][1]["input"].abs().sum() > 0


@pytest.mark.parametrize("norm_axis", ["feature", "sequence"])
def test_shuffle_exchange_dropout_paths_agree(norm_axis: str) -> None:
    """With dropout drawn (training), the module path runs; the reference draws the same masks."""
    model = se_model(dropout=0.3, norm_axis=norm_axis)
    runs = se_runs(model, 11)
    assert runs.keys() == {"reference", "module"}
    assert disagreement(runs["module"], runs["reference"]) == []


def test_shuffle_reference_is_the_kernel_permutation() -> None:
    from harness.models.kernels.switch_stack import shuffle

    for k in range(1, 9):
        x = torch.arange(1 << k).view(1, -1, 1)
        for inverse in (False, True):
            assert torch.equal(se.shuffle_reference(x, inverse), shuffle(x, inverse))


# --- the comparisons can fail ---------------------------------------------------------------------


def _no_duplicate_correction(chunk_of: torch.Tensor, qpos: torch.Tensor, kpos: torch.Tensor) -> torch.Tensor:
    return torch.ones(qpos.shape + kpos.shape[-1:], dtype=torch.long)


def _keys_without_gradient(x: torch.Tensor, dim: int) -> torch.Tensor:
    return F.normalize(x.detach(), dim=dim)


@pytest.mark.parametrize("break_it,expect", [
    (lambda mp: mp.setattr(lsh, "duplicate_counts", _no_duplicate_correction), {"output", "qk", "v"}),
    (lambda mp: mp.setattr(lsh, "SELF_MASK_VALUE", -3.0), {"output", "qk", "v"}),
    # the same values, a wrong gradient: no gradient through the keys' normalisation
    (lambda mp: mp.setattr(lsh, "F", types.SimpleNamespace(normalize=_keys_without_gradient)), {"qk"}),
], ids=["no-log-N", "self-mask", "keys-detached"])
def test_a_broken_lsh_reference_is_caught(break_it: Callable, expect: set[str]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        break_it(mp)
        kernel, reference = lsh_pair(32, 4, 19, None, 2, True)
    assert set(disagreement(kernel, reference)) == expect


def _norm_mean_detached(self: se.SwitchUnit, z: torch.Tensor) -> torch.Tensor:
    c = z - z.mean(dim=1, keepdim=True).detach() + self.norm_bias
    return c / torch.sqrt(c.square().mean(dim=1, keepdim=True) + se.SEQ_NORM_EPS)


def _never_inverse(
    x: torch.Tensor, inverse: bool = False, real: Callable = se.shuffle_reference
) -> torch.Tensor:
    return real(x)  # the backward half rotating left too: the block no longer composes to the identity


@pytest.mark.parametrize("break_it,values_differ", [
    (lambda mp: mp.setattr(se, "shuffle_reference", _never_inverse), True),
    # the same values, a wrong gradient: no gradient through the sequence-axis mean
    (lambda mp: mp.setattr(se.SwitchUnit, "reference_norm", _norm_mean_detached), False),
], ids=["no-inverse-shuffle", "norm-mean-detached"])
def test_a_broken_shuffle_exchange_reference_is_caught(break_it: Callable, values_differ: bool) -> None:
    model = se_model(norm_axis="sequence", sharing="halves", n_blocks=1)
    with pytest.MonkeyPatch.context() as mp:
        break_it(mp)
        runs = se_runs(model, 11)
    bad = disagreement(runs["kernel"], runs["reference"])
    assert ("output" in bad) == values_differ
    assert {"input", "blocks.0.0.z.weight"} <= set(bad)
