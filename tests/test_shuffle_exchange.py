"""Residual Shuffle-Exchange network (Draguns et al. 2021): shuffles, Benes wiring, RSU, padding, memory."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import harness
from harness.core.errors import HarnessError
from harness.models.kernels.switch_stack import SwitchStack, shuffle
from harness.models.shuffle_exchange import (
    CANDIDATE_SCALE,
    SwitchUnit,
    block_plan,
    padded_length,
    rotate_left,
    rotate_right,
)
from harness.tasks.base import Batch

V, D, FF = 12, 8, 16
TINY = {"vocab_size": V, "d_model": D, "d_ff": FF, "dropout": 0.0}


def build(**cfg: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return harness.build_model("shuffle_exchange", **{**TINY, **cfg})


def tokens(b: int, t: int, seed: int = 0, lo: int = 1) -> torch.Tensor:
    return torch.randint(lo, V, (b, t), generator=torch.Generator().manual_seed(seed))


# --- shuffle permutations ------------------------------------------------------------------------


@pytest.mark.parametrize("k", range(1, 15))
def test_shuffle_is_the_bit_rotation_and_inverse_undoes_it(k: int) -> None:
    n = 1 << k
    x = torch.arange(n).view(1, n, 1)
    left, right = shuffle(x), shuffle(x, inverse=True)
    assert left.flatten().tolist() == [rotate_left(j, k) for j in range(n)]  # out[j] = x[rol(j)]
    assert right.flatten().tolist() == [rotate_right(j, k) for j in range(n)]
    assert torch.equal(shuffle(left, inverse=True), x)
    assert torch.equal(shuffle(right), x)


def test_rotations_are_cyclic_bit_rotations() -> None:
    for k in (1, 3, 6):
        for j in range(1 << k):
            bits = format(j, f"0{k}b")
            assert rotate_left(j, k) == int(bits[1:] + bits[0], 2)
            assert rotate_right(j, k) == int(bits[-1] + bits[:-1], 2)
            assert rotate_right(rotate_left(j, k), k) == j


def test_shuffle_moves_feature_vectors_whole() -> None:
    x = torch.randn(2, 16, 5)
    y = shuffle(x)
    for j in range(16):
        assert torch.equal(y[:, j], x[:, rotate_left(j, 4)])


# --- Benes wiring --------------------------------------------------------------------------------


@pytest.mark.parametrize("sharing", ["halves", "inner"])
@pytest.mark.parametrize("k", range(1, 11))
def test_block_has_2k_minus_2_layers_and_its_shuffles_compose_to_identity(k: int, sharing: str) -> None:
    plan = block_plan(k, sharing)  # type: ignore[arg-type]
    assert len(plan) == max(2 * k - 2, 2)
    x = torch.arange(1 << k).view(1, -1, 1)
    y = x
    for _, inverse in plan:
        y = shuffle(y, inverse)
    assert torch.equal(y, x)
    # forward half rotates left, backward half right
    assert [inv for _, inv in plan] == [False] * (len(plan) // 2) + [True] * (len(plan) // 2)


@pytest.mark.parametrize("t,k", [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (11, 4), (16, 4), (100, 7)])
@pytest.mark.parametrize("n_blocks", [1, 2])
def test_switch_layers_applied(t: int, k: int, n_blocks: int) -> None:
    """One block is 2 log2 n - 2 switch layers (2 for n = 2); the network adds one final layer, so a
    one-block network has 2 log2 n - 1 (literature.md's count)."""
    m = build(n_blocks=n_blocks)
    calls = []
    for mod in m.modules():
        if isinstance(mod, SwitchUnit):
            mod.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():  # the module path (the training fast path does not call the modules)
        m(tokens(1, t))
    per_block = 2 if k == 1 else 2 * k - 2
    assert padded_length(t) == 1 << k
    assert m.switch_layer_count(t) == (per_block, n_blocks * per_block + 1)
    assert len(calls) == n_blocks * per_block + 1
    if n_blocks == 1 and k > 1:
        assert len(calls) == 2 * k - 1
    fast = []  # the training fast path runs the same number of layers
    real = SwitchStack._layer
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SwitchStack, "_layer", staticmethod(lambda *a: fast.append(1) or real(*a)))
        m(tokens(1, t))
    assert len(fast) == len(calls)


def test_weight_sharing_unit_counts() -> None:
    unit = sum(p.numel() for p in SwitchUnit(D, FF, "feature", 0.0).parameters())
    assert unit == 2 * D * FF + FF * 2 * D + 2 * D + FF + 2 * D  # Z, W, B, norm bias, S
    for sharing, per_block in (("halves", 2), ("inner", 4)):
        m = build(n_blocks=3, sharing=sharing)
        n = sum(p.numel() for p in m.parameters())
        assert n == V * D + (3 * per_block + 1) * unit + D * V + V


# --- the residual switch unit ---------------------------------------------------------------------


def test_rsu_initialisation() -> None:
    torch.manual_seed(0)
    u = SwitchUnit(D, FF, "feature", 0.0)
    torch.testing.assert_close(u.residual_scale(), torch.full((2 * D,), 0.9))
    assert CANDIDATE_SCALE == pytest.approx(0.25 * math.sqrt(1 - 0.81))
    assert CANDIDATE_SCALE == pytest.approx(0.10897, abs=1e-5)
    assert u.z.bias is None
    assert torch.all(u.w.bias >= 0) and torch.all(u.w.bias <= 0.01)
    assert torch.equal(u.norm_bias, torch.zeros(FF))
    bound = math.sqrt(6 / (2 * D + FF))  # Glorot uniform
    assert u.z.weight.abs().max() <= bound and u.w.weight.abs().max() <= bound


@pytest.mark.parametrize("norm_axis", ["feature", "sequence"])
def test_rsu_matches_the_formula_on_adjacent_pairs(norm_axis: str) -> None:
    torch.manual_seed(1)
    u = SwitchUnit(D, FF, norm_axis, 0.0)  # type: ignore[arg-type]
    with torch.no_grad():
        u.norm_bias.normal_()
        u.s.normal_()
    x = torch.randn(2, 8, D)
    i = torch.cat([x[:, 0::2], x[:, 1::2]], dim=-1)  # [B, 4, 2D]: pair r = [x_2r, x_2r+1]
    z = i @ u.z.weight.T
    if norm_axis == "feature":
        mu, var = z.mean(-1, keepdim=True), z.var(-1, unbiased=False, keepdim=True)
        normed = (z - mu) / torch.sqrt(var + 1e-5) + u.norm_bias
    else:  # the official layer_norm: over the pairs (axis 1), bias added before the scaling
        cen = z - z.mean(1, keepdim=True) + u.norm_bias
        normed = cen / torch.sqrt((cen**2).mean(1, keepdim=True) + 1e-10)
    c = F.gelu(normed) @ u.w.weight.T + u.w.bias
    expected = torch.sigmoid(2 * u.s) * i + CANDIDATE_SCALE * c
    out = u(x)  # [B, 8, D]
    got = torch.cat([out[:, 0::2], out[:, 1::2]], dim=-1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_dropout_path_equals_fused_path_without_dropout() -> None:
    torch.manual_seed(2)
    u = SwitchUnit(D, FF, "feature", 0.5)
    x = torch.randn(2, 8, D)
    u.eval()
    fused = u(x)
    u.drop.p = 1e-12
    u.train()
    torch.testing.assert_close(u(x), fused, atol=1e-5, rtol=1e-5)


# --- padding -------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [1, 2, 3, 5, 8, 11, 16, 17])
def test_output_length_equals_input_length(t: int) -> None:
    m = build()
    assert m(tokens(2, t)).logits.shape == (2, t, V)


def test_pad_token_equals_explicit_padding() -> None:
    m = build(pad_id=0).eval()
    x = tokens(2, 11)
    explicit = F.pad(x, (0, 5), value=0)
    torch.testing.assert_close(m(x).logits, m(explicit).logits[:, :11], atol=1e-6, rtol=1e-6)


def test_zero_vector_padding_equals_a_zero_embedded_pad_token() -> None:
    zero = build().eval()
    tok = build(pad_id=0).eval()
    tok.load_state_dict(zero.state_dict())
    with torch.no_grad():
        tok.embed.weight[0].zero_()
        zero.embed.weight.copy_(tok.embed.weight)
    x = tokens(2, 11)
    torch.testing.assert_close(zero(x).logits, tok(x).logits, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("norm_axis", ["feature", "sequence"])
def test_padding_content_reaches_real_positions(norm_axis: str) -> None:
    """What is true of the network: every output depends on every input, padding included."""
    m = build(norm_axis=norm_axis, pad_id=0).eval()
    x = tokens(1, 11)
    a = F.pad(x, (0, 5), value=0)
    b = F.pad(x, (0, 5), value=5)
    assert not torch.allclose(m(a).logits[:, :11], m(b).logits[:, :11], atol=1e-6)


def test_sequence_norm_depends_on_length_feature_norm_is_per_pair() -> None:
    """Appending pairs changes a sequence-axis norm's statistics; a feature-axis norm ignores them."""
    z = torch.randn(1, 4, FF)
    longer = torch.cat([z, 3 * torch.randn(1, 4, FF)], dim=1)
    feat, seq = SwitchUnit(D, FF, "feature", 0.0), SwitchUnit(D, FF, "sequence", 0.0)
    torch.testing.assert_close(feat.norm(longer)[:, :4], feat.norm(z))
    assert not torch.allclose(seq.norm(longer)[:, :4], seq.norm(z), atol=1e-3)


# --- config checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad,key",
    [
        ({"n_blocks": 0}, "n_blocks"),
        ({"d_ff": 0}, "d_ff"),
        ({"d_model": 0}, "d_model"),
        ({"pad_id": V}, "pad_id"),
        ({"pad_id": -1}, "pad_id"),
        ({"norm_axis": "batch"}, "norm_axis"),
        ({"checkpoint": "layer"}, "checkpoint"),
        ({"sharing": "all"}, "sharing"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_impossible_settings_name_the_key(bad: dict, key: str) -> None:
    with pytest.raises(HarnessError, match=rf"shuffle_exchange: {key}: "):
        harness.build_model("shuffle_exchange", **{**TINY, **bad})


def test_defaults() -> None:
    m = harness.build_model("shuffle_exchange")
    c = m.config
    got = (c.n_blocks, c.norm_axis, c.checkpoint, c.sharing, c.pad_id)
    assert got == (2, "feature", "block", "halves", None)
    assert m.last.z.out_features == 4 * c.d_model  # Z: 2m -> 4m
    assert m.io == "masked"


# --- checkpointing, memory, FLOPs ----------------------------------------------------------------


Grads = dict[str, torch.Tensor]


def _grads(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, Grads]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(3)
    out = model(x).logits
    out.square().mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "extra", [{"dropout": 0.0}, {"dropout": 0.2, "norm_axis": "sequence", "n_blocks": 3}]
)
def test_checkpoint_does_not_change_outputs_or_gradients(extra: dict) -> None:
    x = tokens(2, 13)
    a = build(checkpoint="none", **extra).train()
    b = build(checkpoint="block", **extra).train()
    b.load_state_dict(a.state_dict())
    out_a, ga = _grads(a, x)
    out_b, gb = _grads(b, x)
    torch.testing.assert_close(out_a, out_b, atol=1e-6, rtol=1e-6)
    assert ga.keys() == gb.keys() and len(ga) == len(list(a.parameters()))
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], atol=1e-6, rtol=1e-5, msg=name)


def _act_bytes(n: int, **cfg: object) -> int:
    from harness.measure.costs import measure_act_bytes

    m = build(d_model=16, d_ff=32, **cfg)
    x = tokens(1, n)
    batch = Batch.of_tokens({"x": x}, x)
    return measure_act_bytes(m, batch, lambda mm, b: F.cross_entropy(mm(**b.inputs).logits[0], b.labels[0]))


def test_checkpoint_keeps_only_block_inputs_and_logits() -> None:
    n = 1024
    kept = _act_bytes(n, checkpoint="block", n_blocks=2)
    full = _act_bytes(n, checkpoint="none", n_blocks=2)
    state = n * 16 * 4  # one [n, d_model] fp32 tensor
    assert kept < 2 * state + 3 * n * V * 4 + 64 * 1024  # two block inputs, logits and loss buffers
    assert full > 2 * 9 * state  # 2 blocks x 18 switch layers, several tensors each
    assert kept * 10 < full


def test_flops_match_the_switch_layer_count() -> None:
    from harness.measure.flops import count_flops

    m = build(n_blocks=2)
    x = tokens(3, 11)  # padded to 16: k = 4, 6 layers a block, 13 in all
    flops, unsupported = count_flops(m, Batch.of_tokens({"x": x}, x))
    assert unsupported == []
    layers = 2 * 6 + 1
    per_layer = 2 * (8 * 2 * D * FF + 8 * FF * 2 * D)  # 8 pairs, Z and W
    assert flops == 3 * (layers * per_layer + 2 * 11 * D * V)


@pytest.mark.parametrize("norm_axis", ["feature", "sequence"])
def test_bf16_autocast_forward_and_backward(norm_axis: str) -> None:
    m = build(norm_axis=norm_axis)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(tokens(2, 11)).logits
    out.float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


# --- the training fast path (SwitchStack) ------------------------------------------------------


def _fast_and_autograd(m: torch.nn.Module, x: torch.Tensor, w: torch.Tensor) -> tuple:
    """(logits, grads) through the fast path, then through the autograd path, same weights."""
    runs = []
    for fast in (True, False):
        m.zero_grad(set_to_none=True)
        with pytest.MonkeyPatch.context() as mp:
            if not fast:
                mp.setattr(type(m), "fast_path_applies", lambda self: False)
            else:
                assert m.fast_path_applies()
            out = m(x).logits
        (out * w).sum().backward()
        runs.append((out.detach(), {n: p.grad for n, p in m.named_parameters()}))
    return runs


@pytest.mark.parametrize("t", [1, 2, 11, 16])
@pytest.mark.parametrize("checkpoint", ["none", "block"])
@pytest.mark.parametrize("norm_axis,sharing,n_blocks", [
    ("feature", "halves", 1), ("feature", "inner", 2), ("sequence", "halves", 2), ("sequence", "inner", 1),
])
def test_fast_path_equals_autograd(
    t: int, checkpoint: str, norm_axis: str, sharing: str, n_blocks: int
) -> None:
    """The hand-written backward gives autograd's outputs and gradients (float64, to rounding), and
    leaves units no layer ran (``inner`` on short inputs) without a gradient, as autograd does."""
    torch.manual_seed(5)
    m = build(checkpoint=checkpoint, norm_axis=norm_axis, sharing=sharing, n_blocks=n_blocks).double().train()
    with torch.no_grad():  # move every parameter off its initial value (norm bias 0, sigmoid(S) 0.9, ...)
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = tokens(3, t)
    w = torch.randn(3, t, V, dtype=torch.float64)
    (out_f, g_f), (out_a, g_a) = _fast_and_autograd(m, x, w)
    torch.testing.assert_close(out_f, out_a, atol=1e-12, rtol=1e-12)
    assert {n for n, g in g_f.items() if g is None} == {n for n, g in g_a.items() if g is None}
    # one pair: the sequence norm is ill-conditioned
    tol = 1e-7 if norm_axis == "sequence" and t <= 2 else 1e-10
    for n in g_a:
        if g_a[n] is not None:
            torch.testing.assert_close(g_f[n], g_a[n], atol=tol, rtol=tol, msg=n)


def test_fast_path_applies_only_where_it_computes_the_same_thing() -> None:
    m = build(dropout=0.2).train()
    assert not m.fast_path_applies()  # dropout masks are drawn by the module path
    m.eval()
    assert m.fast_path_applies()
    with torch.no_grad():
        assert not m.fast_path_applies()  # inference and FLOP tracing take the module path
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not m.fast_path_applies()


def test_fast_path_block_checkpoint_keeps_block_inputs_only() -> None:
    """act_bytes of the fast path: n_blocks [n, m] block inputs and the logits, not the layers'."""
    n = 2048
    kept = _act_bytes(n, checkpoint="block", n_blocks=3)
    assert kept < 3 * n * 16 * 4 + 3 * n * V * 4 + 64 * 1024
    assert kept > 3 * n * 16 * 4  # the three block inputs are really kept
