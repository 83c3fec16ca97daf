"""Sandwich Transformer (Press et al., ACL 2020): orderings, their validation, and equal cost across them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from tiny_suites import write_suite

import harness
from harness.cli.main import main
from harness.core.errors import HarnessError
from harness.measure.flops import count_flops
from harness.models.sandwich import Sandwich, SandwichConfig, parse_order, random_order, sandwich_order
from harness.models.stack import execution_plan
from harness.tasks.base import Batch

SIZES = {"vocab_size": 13, "d_model": 16, "n_heads": 2, "d_ff": 32, "dropout": 0.0}


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _tokens(b: int = 2, t: int = 7) -> torch.Tensor:
    return torch.randint(0, SIZES["vocab_size"], (b, t), generator=torch.Generator().manual_seed(3))


# --- ordering generator and parser ----------------------------------------------------------------


@pytest.mark.parametrize(
    "n,k,expected",
    [
        (1, 0, "sf"),
        (1, 1, "sf"),  # s^1 (sf)^0 f^1
        (3, 0, "sfsfsf"),
        (3, 1, "s" + "sfsf" + "f"),
        (4, 2, "ss" + "sfsf" + "ff"),
        (3, 3, "sssfff"),
        (6, 5, "sssss" + "sf" + "fffff"),
    ],
)
def test_sandwich_order_by_hand(n: int, k: int, expected: str) -> None:
    assert sandwich_order(n, k) == expected


def test_sandwich_order_ends_and_counts() -> None:
    for n in range(1, 9):
        assert sandwich_order(n, 0) == "sf" * n  # k = 0 is the interleaved model
        assert sandwich_order(n, n) == "s" * n + "f" * n
        for k in range(n + 1):
            order = sandwich_order(n, k)
            assert order.count("s") == order.count("f") == n
    assert sandwich_order(4, 2) == "sssfsfff"


@pytest.mark.parametrize("n,k", [(3, 4), (3, -1), (0, 0)])
def test_sandwich_order_rejects_out_of_range(n: int, k: int) -> None:
    with pytest.raises(ValueError):
        sandwich_order(n, k)


def test_parse_order_accepts_and_returns() -> None:
    for text in ("sf", "fs", "ssssffff", "sfsffs", "ssf"):
        assert parse_order(text) == text


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("sfxf", "'x' at index 2"),
        ("sFsf", "'F' at index 1"),
        ("s f", "' ' at index 1"),
        ("s.s.f", "'.' at index 1"),
        ("ssss", "no 'f'"),
        ("ff", "no 's'"),
        ("", "empty"),
    ],
)
def test_parse_order_errors_name_character_and_position(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_order(text)


# --- random orderings ----------------------------------------------------------------------------


def test_random_order_counts_determinism_and_spread() -> None:
    for n in (1, 3, 8):
        for seed in range(5):
            order = random_order(n, seed)
            assert len(order) == 2 * n and order.count("s") == n and order.count("f") == n
            assert random_order(n, seed) == order
    assert len({random_order(4, s) for s in range(10)}) > 3  # C(8, 4) = 70 possible orders


def test_random_order_does_not_touch_torch_rng() -> None:
    torch.manual_seed(11)
    a = torch.rand(3)
    torch.manual_seed(11)
    random_order(6, 123)
    assert torch.equal(torch.rand(3), a)


def test_for_seed_records_the_drawn_order() -> None:
    c = SandwichConfig(n_layers=4, order="random")
    a, b = c.for_seed(0), c.for_seed(1)
    assert a.order == random_order(4, 0) and a.order_seed == 0
    assert b.order == random_order(4, 1) and b.order_seed == 1
    assert c.order == "random"  # a copy, not a mutation
    fixed = SandwichConfig(n_layers=4, order="random", order_seed=7)
    assert fixed.for_seed(0).order == fixed.for_seed(1).order == random_order(4, 7)
    plain = SandwichConfig(n_layers=4, k=2)
    assert plain.for_seed(3) == plain


def test_model_accepts_random_order_directly() -> None:
    m0 = harness.build_model("sandwich", **SIZES, n_layers=4, order="random")
    m7 = harness.build_model("sandwich", **SIZES, n_layers=4, order="random", order_seed=7)
    assert m0.order == random_order(4, 0)
    assert m7.order == random_order(4, 7)


def test_suite_resolves_random_order_per_seed(tmp_path: Path) -> None:
    from harness.suite.load import load_suite

    p = write_suite(
        tmp_path / "s.yaml",
        GOOD.replace("seeds: [0]", "seeds: [0, 1, 2]")
        .replace("k: 1}", "order: random}")
        .replace("n_layers: 2", "n_layers: 4")
        + "  - {name: c, model: sandwich, order: random, order_seed: 5}\n"
    )
    s = load_suite(p)
    by = {(j.variant, j.seed): j.model_cfg for j in s.jobs if j.kind != "profile"}
    for seed in (0, 1, 2):
        assert by[("b", seed)]["order"] == random_order(4, seed)
        assert by[("b", seed)]["order_seed"] == seed
        assert by[("c", seed)]["order"] == random_order(4, 5)
        assert by[("a", seed)]["order"] is None  # interleaved stays as written
    assert len({j.run_id for j in s.jobs}) == len(s.jobs)


# --- structure and cost --------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_interleaved_has_the_vanilla_decoder_parameter_count(norm: str) -> None:
    """(sf)^n with its per-sublayer norms is exactly vanilla's decoder (pre-LN: both add a final LN).

    Hand count (V 13, D 16, d_ff 32, n 3): embedding 208; per layer attention 4*16^2 + 4*16 = 1088,
    FFN 2*16*32 + 32 + 16 = 1072, two LayerNorms 64: 2224. Post: 208 + 3*2224 = 6880; pre adds 32.
    """
    s = harness.build_model("sandwich", **SIZES, order="sf" * 3, norm=norm)
    v = harness.build_model("vanilla", **SIZES, n_layers=3, arch="decoder", norm=norm)
    assert _params(s) == _params(v) == 6880 + (32 if norm == "pre" else 0)


def _vanilla_key_to_sandwich(key: str) -> str:
    key = re.sub(r"^layers\.(\d+)\.attn\.", r"attn.\1.attn.", key)
    key = re.sub(r"^layers\.(\d+)\.res_attn\.", r"attn.\1.res.", key)
    key = re.sub(r"^layers\.(\d+)\.ff\.", r"ff.\1.ff.", key)
    key = re.sub(r"^layers\.(\d+)\.res_ff\.", r"ff.\1.res.", key)
    return key.replace("enc_norm.", "final_norm.")


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_interleaved_computes_what_vanilla_decoder_computes(norm: str) -> None:
    v = harness.build_model("vanilla", **SIZES, n_layers=3, arch="decoder", norm=norm).eval()
    s = harness.build_model("sandwich", **SIZES, n_layers=3, k=0, norm=norm).eval()
    s.load_state_dict({_vanilla_key_to_sandwich(k): t for k, t in v.state_dict().items()})
    x = _tokens()
    torch.testing.assert_close(s(x).logits, v(x).logits, atol=1e-6, rtol=1e-6)


ORDERINGS_N4 = (
    [sandwich_order(4, k) for k in range(5)]
    + [random_order(4, seed) for seed in range(3)]
    + ["ssssffff", "ffffssss", "fsfsfsfs", "sffssffs"]
)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_every_ordering_costs_the_same(norm: str) -> None:
    """Same counts of s and f -> the same parameters (names and shapes) and the same forward FLOPs."""
    x = _tokens(2, 9)
    batch = Batch.of_tokens({"x": x}, x)
    ref = harness.build_model("sandwich", **SIZES, n_layers=4, norm=norm)
    assert ref.order == "sfsfsfsf"
    ref_shapes = {k: t.shape for k, t in ref.state_dict().items()}
    ref_flops, unsupported = count_flops(ref, batch)
    assert unsupported == [] and ref_flops > 0
    for order in ORDERINGS_N4:
        m = harness.build_model("sandwich", **SIZES, order=order, norm=norm)
        assert m.order == order
        assert _params(m) == _params(ref), order
        assert {k: t.shape for k, t in m.state_dict().items()} == ref_shapes, order
        assert count_flops(m, batch) == (ref_flops, []), order
    for k in range(5):
        m = harness.build_model("sandwich", **SIZES, n_layers=4, k=k, norm=norm)
        assert _params(m) == _params(ref) and count_flops(m, batch)[0] == ref_flops
    m = harness.build_model("sandwich", **SIZES, n_layers=4, order="random", order_seed=9, norm=norm)
    assert _params(m) == _params(ref) and count_flops(m, batch)[0] == ref_flops


def test_interleaved_flops_match_the_analytic_count() -> None:
    """Per (sf) pair on T tokens: 2*T*(4*D^2 + 2*D*d_ff) + 4*T^2*D; tied head 2*T*D*V (as for vanilla)."""
    d, ff, v, n, b, t = SIZES["d_model"], SIZES["d_ff"], SIZES["vocab_size"], 3, 2, 9
    x = _tokens(b, t)
    m = harness.build_model("sandwich", **SIZES, order="sssfff")
    pair = 2 * t * (4 * d * d + 2 * d * ff) + 4 * t * t * d
    assert count_flops(m, Batch.of_tokens({"x": x}, x)) == (b * (n * pair + 2 * t * d * v), [])


@pytest.mark.parametrize("order", ["sfsf", "ssff", "ffss", "ssf", "fsffs", "sfffsssf", "sf"])
def test_dispatch_follows_the_string(order: str) -> None:
    m = harness.build_model("sandwich", **SIZES, order=order, n_layers=7)  # n_layers is ignored
    assert len(m.attn) == order.count("s") and len(m.ff) == order.count("f")
    calls: list[tuple[str, int]] = []
    for kind, mods in (("s", m.attn), ("f", m.ff)):
        for i, mod in enumerate(mods):
            mod.register_forward_hook(lambda *_a, _k=kind, _i=i: calls.append((_k, _i)))
    # the attention and FFN modules inside the sublayers, too: the right block really runs
    inner: list[str] = []
    for sub in m.attn:
        sub.attn.register_forward_hook(lambda *_a: inner.append("s"))
    for sub in m.ff:
        sub.ff.register_forward_hook(lambda *_a: inner.append("f"))
    m(_tokens())
    assert "".join(k for k, _ in calls) == order
    assert "".join(inner) == order
    # the i-th s runs attn[i], the i-th f runs ff[i]: each module exactly once, in order
    for kind in "sf":
        assert [i for k, i in calls if k == kind] == list(range(order.count(kind)))


def test_orderings_give_different_functions_with_the_same_weights() -> None:
    torch.manual_seed(0)
    a = harness.build_model("sandwich", **SIZES, order="sfsfsf").eval()
    b = harness.build_model("sandwich", **SIZES, order="sssfff").eval()
    b.load_state_dict(a.state_dict())  # same names: the order is the only difference
    x = _tokens()
    assert not torch.allclose(a(x).logits, b(x).logits)


def test_causal_lm_and_bidirectional_masked() -> None:
    x = _tokens(1, 8)
    y = x.clone()
    y[0, -1] = (int(x[0, -1]) + 1) % SIZES["vocab_size"]  # change only the last token
    for causal, io in ((True, "lm"), (False, "masked")):
        m = harness.build_model("sandwich", **SIZES, n_layers=2, k=1, causal=causal).eval()
        assert m.io == io
        same_prefix = torch.allclose(m(x).logits[0, :-1], m(y).logits[0, :-1], atol=1e-6)
        assert same_prefix == causal


def test_sdpa_and_math_agree_on_a_sandwich() -> None:
    a = harness.build_model("sandwich", **SIZES, n_layers=3, k=2, attention="sdpa").eval()
    b = harness.build_model("sandwich", **SIZES, n_layers=3, k=2, attention="math").eval()
    b.load_state_dict(a.state_dict())
    x = _tokens()
    torch.testing.assert_close(a(x).logits, b(x).logits, atol=1e-5, rtol=1e-5)


def test_defaults_are_pre_ln_interleaved() -> None:
    c = SandwichConfig()
    assert c.norm == "pre" and c.order is None and c.k is None
    m = harness.build_model("sandwich", **SIZES)
    assert m.order == "sf" * c.n_layers and m.final_norm is not None
    assert harness.build_model("sandwich", **SIZES, norm="post").final_norm is None


@pytest.mark.parametrize(
    "keys,fragment",
    [
        ({"order": "sfqf"}, "order: invalid character 'q' at index 2"),
        ({"order": "sss"}, "order: 'sss' has no 'f'"),
        ({"order": "randon"}, "did you mean 'random'?"),
        ({"n_layers": 2, "k": 3}, "k: must be <= n_layers (2)"),
        ({"order": "sf", "k": 0}, "k: cannot be combined with order"),
        ({"k": -1}, "k: must be >= 0"),
        ({"order": "random", "order_seed": -2}, "order_seed: must be >= 0"),
    ],
)
def test_build_model_names_the_bad_key(keys: dict, fragment: str) -> None:
    with pytest.raises(HarnessError, match=re.escape(fragment)):
        harness.build_model("sandwich", **SIZES, **keys)


# --- suite load and CLI --------------------------------------------------------------------------

GOOD = """\
name: t
seeds: [0]
baseline: a
train: {steps: 2, batch_size: 2, eval_every: 1, eval_batches: 1, eval_batch_size: 2}
model: {d_model: 16, n_heads: 2, d_ff: 32, n_layers: 2}
tasks:
  - {name: copy, task: copy, seq_len: 4, vocab: 4}
variants:
  - {name: a, model: sandwich}
  - {name: b, model: sandwich, k: 1}
"""

SUITE_CASES = {
    "bad_character": ("k: 1}", "order: sfxsf}", ["variants[1].order", "'x' at index 2"]),
    "no_f": ("k: 1}", "order: ssss}", ["variants[1].order", "no 'f'"]),
    "no_s": ("k: 1}", "order: ff}", ["variants[1].order", "no 's'"]),
    "k_over_n_layers": ("k: 1}", "k: 3}", ["variants[1].k", "must be <= n_layers (2)"]),
    "k_with_order": ("k: 1}", "k: 1, order: sfsf}", ["variants[1].k", "cannot be combined with order"]),
    "order_not_a_string": ("k: 1}", "order: [s, f]}", ["variants[1].order", "expected str"]),
}


@pytest.mark.parametrize("case", sorted(SUITE_CASES))
def test_malformed_ordering_exits_2_with_one_line(case: str, refused_suite) -> None:
    old, new, fragments = SUITE_CASES[case]
    line = refused_suite(GOOD.replace(old, new))
    assert "bad.yaml:10:" in line, line
    for frag in fragments:
        assert frag in line, (frag, line)


def test_profile_sandwich_json(capsys: pytest.CaptureFixture[str]) -> None:
    common = ["d_model=32", "n_heads=2", "d_ff=64", "seq_len=16", "batch_size=2", "--json"]
    assert main(["profile", "sandwich", "order=ssssffff", *common]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["status"] == "ok" and row["config"]["order"] == "ssssffff"
    assert row["params"] > 0 and row["flops_fwd"] > 0 and row["flops_unsupported"] == []
    assert main(["profile", "sandwich", "n_layers=4", "k=0", *common]) == 0
    base = json.loads(capsys.readouterr().out)
    assert (row["params"], row["flops_fwd"]) == (base["params"], base["flops_fwd"])


def test_profile_bad_order_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "sandwich", "order=sfz", "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "order" in err[0] and "'z' at index 2" in err[0]


def test_a_sharing_variant_is_a_small_subclass() -> None:
    """Worked example: a variant that only reorders or shares sublayers overrides the plan. Here every
    's' of a sandwich runs one attention sublayer and every 'f' one FFN (ALBERT's all-shared mode)."""
    class SharedSandwich(Sandwich):
        def plan(self):
            return execution_plan(self.order, shared="sf")

    c = SandwichConfig(**SIZES, n_layers=3, k=1)
    shared, plain = SharedSandwich(c).eval(), Sandwich(c).eval()
    assert len(shared.attn) == len(shared.ff) == 1 and shared.order == plain.order == "ssfsff"
    assert [id(m) for m in shared.sublayers()].count(id(shared.attn[0])) == 3
    x = _tokens()
    batch = Batch.of_tokens({"x": x}, x)
    assert _params(shared) == _params(plain) - 2 * (_params(plain.attn[0]) + _params(plain.ff[0]))
    assert count_flops(shared, batch) == count_flops(plain, batch)
    assert shared(x).logits.shape == plain(x).logits.shape
