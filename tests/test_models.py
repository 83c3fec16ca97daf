"""Registry-wide model tests plus the vanilla Transformer's paper facts."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch

import harness
from harness.core.registry import MODELS, PRESETS, TASKS, static_names
from harness.models.base import ModelOutput
from harness.tasks.base import IGNORE

SMALL = {"d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 2, "dropout": 0.0}


def small_configs() -> list[tuple[str, dict]]:
    """Each registered model in every layout it offers, at a tiny size."""
    out = []
    for name in MODELS.names():
        cfg_cls = MODELS.get(name).config
        keys = {f.name for f in dataclasses.fields(cfg_cls)}
        base = {k: v for k, v in SMALL.items() if k in keys}
        if "arch" in keys:
            for arch in typing.get_args(typing.get_type_hints(cfg_cls)["arch"]):
                out.append((f"{name}-{arch}", {**base, "arch": arch}))
        else:
            out.append((name, base))
    return out


CONFIGS = small_configs()


# the task each model io is exercised on, at a tiny size
TEST_TASKS = {"image": ("digits", {"image_size": 8}), "sr": ("ref_sr", {"image_size": 16, "canvas": 20}),
              "gan": ("gan_digits", {"image_size": 8}), "lanes": ("lanes", {}),
              "detect": ("scenes", {"image_size": 16, "max_objects": 3, "eval_images": 8})}
MODEL_TASKS = {"image_transformer": ("pixels", {"image_size": 8})}  # autoregressive pixels, 8x8, 16 levels


def batch_for(model: torch.nn.Module, task: str | None = None):
    registered = next(n for n in MODELS.names() if MODELS.get(n).obj is type(model))
    name, keys = MODEL_TASKS.get(registered) or TEST_TASKS.get(model.io, ("copy", {"seq_len": 5, "vocab": 6}))
    name = task or name
    t = TASKS.get(name).obj(TASKS.get(name).config(**keys))
    return t, t.train_batch(3, model.io, torch.Generator().manual_seed(0))


def build_small(label: str, cfg: dict) -> torch.nn.Module:
    """A registered model at test size; token models get a 10-symbol vocabulary and 64 positions."""
    name = label.split("-")[0]
    keys = {f.name for f in dataclasses.fields(MODELS.get(name).config)}
    extra = {k: v for k, v in (("vocab_size", 10), ("max_len", 64)) if k in keys}
    return harness.build_model(name, **extra, **cfg)


@pytest.mark.parametrize("label,cfg", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_forward_backward_finite(label: str, cfg: dict) -> None:
    model = build_small(label, cfg)
    task, batch = batch_for(model)
    out = model(**batch.inputs)
    assert isinstance(out, ModelOutput)
    if model.io == "sr":  # an image out, the shape of the HR target
        assert out.logits.shape == batch.labels.shape
    elif model.io == "detect":  # (B, decoder layers, queries, class scores + 4 box numbers)
        assert out.logits.dim() == 4 and out.logits.shape[0] == batch.labels.shape[0]
    elif model.io == "lanes":  # a set of lanes, or per-pixel logits at the label rows (base.py)
        assert out.logits.shape[0] == batch.labels.shape[0] and out.logits.dim() in (3, 4)
    else:
        assert out.logits.shape[:-1] == batch.labels.shape
    if model.io not in ("image", "sr", "gan", "detect", "lanes"):
        assert out.logits.shape[-1] == 10
    loss = task.loss(out, batch)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("label,cfg", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_flops_have_no_unsupported_ops(label: str, cfg: dict) -> None:
    from harness.measure.flops import count_flops

    model = build_small(label, cfg)
    _, batch = batch_for(model)
    flops, unsupported = count_flops(model, batch)
    assert unsupported == []
    assert flops > 0 or label == "bicubic"  # resizing is free by the counting convention


@pytest.mark.parametrize("label,cfg", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_deterministic_build(label: str, cfg: dict) -> None:
    torch.manual_seed(5)
    a = build_small(label, cfg)
    torch.manual_seed(5)
    b = build_small(label, cfg)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_static_registry_matches_live() -> None:
    static = static_names()
    assert [n for n, _ in static["models"]] == MODELS.names()
    assert [n for n, _ in static["tasks"]] == TASKS.names()
    assert sorted(n for n, _ in static["presets"]) == sorted(PRESETS)


def test_unknown_model_suggests() -> None:
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError, match="Did you mean: transformer-base"):
        harness.build_model("transformer-bse")


@pytest.mark.parametrize(
    "preset,exact,paper", [("transformer-base", 63_082_496, 65e6), ("transformer-big", 214_245_376, 213e6)]
)
def test_paper_parameter_counts(preset: str, exact: int, paper: float) -> None:
    """Table 3 of Vaswani et al.: shared 37000-token vocabulary tied with the output projection.

    Hand count for base (d=512, d_ff=2048, N=6): embedding 37000*512 = 18,944,000; encoder layer
    4*(512^2+512) + (2*512*2048+2048+512) + 2*2*512 = 3,152,384; decoder layer adds a cross-attention
    (1,050,624) and a LayerNorm (1,024): 4,204,032. 18,944,000 + 6*3,152,384 + 6*4,204,032 = 63,082,496.
    """
    model = harness.build_model(preset)
    n = sum(p.numel() for p in model.parameters())
    assert n == exact
    assert abs(n - paper) / paper < 0.03


@pytest.mark.parametrize("arch", ["decoder", "encoder", "encdec"])
@pytest.mark.parametrize("norm", ["post", "pre"])
def test_sdpa_and_math_attention_agree(arch: str, norm: str) -> None:
    cfg = {
        "vocab_size": 12, "d_model": 32, "n_heads": 4, "d_ff": 64, "n_layers": 2, "dropout": 0.0,
        "arch": arch, "norm": norm,
    }
    torch.manual_seed(1)
    a = harness.build_model("vanilla", attention="sdpa", **cfg).eval()
    b = harness.build_model("vanilla", attention="math", **cfg).eval()
    b.load_state_dict(a.state_dict())
    _, batch = batch_for(a)
    torch.testing.assert_close(a(**batch.inputs).logits, b(**batch.inputs).logits, atol=1e-5, rtol=1e-5)


def test_decoder_is_causal_and_encoder_is_not() -> None:
    for arch, causal in (("decoder", True), ("encoder", False)):
        m = harness.build_model(
            "vanilla", vocab_size=12, d_model=16, n_heads=2, d_ff=32, dropout=0.0, arch=arch
        ).eval()
        x = torch.randint(4, 12, (1, 8))
        y = x.clone()
        y[0, -1] = 4 if int(x[0, -1]) != 4 else 5  # change only the last token
        same_prefix = torch.allclose(m(x=x).logits[0, :-1], m(x=y).logits[0, :-1], atol=1e-6)
        assert same_prefix == causal


def test_learned_positions_reject_long_input() -> None:
    m = harness.build_model(
        "vanilla", vocab_size=12, d_model=16, n_heads=2, d_ff=32, pos="learned", max_len=8
    )
    with pytest.raises(ValueError, match="max_len 8"):
        m(x=torch.zeros(1, 9, dtype=torch.long))


def test_bad_config_names_key() -> None:
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError, match="n_heads: must divide d_model"):
        harness.build_model("vanilla", d_model=30, n_heads=4)
    with pytest.raises(HarnessError, match="causal"):
        harness.build_model("vanilla", arch="encoder", causal=True)


def test_tied_head_shares_embedding() -> None:
    m = harness.build_model("vanilla", vocab_size=12, d_model=16, n_heads=2, d_ff=32)
    assert m.head.extra_applied_params()[0] is m.embed.tok.weight
    names = [n for n, _ in m.named_parameters()]
    assert not any(n.startswith("head.") for n in names)


def test_ignore_label_positions_do_not_affect_loss() -> None:
    m = harness.build_model("vanilla", vocab_size=10, d_model=16, n_heads=2, d_ff=32, dropout=0.0)
    task, batch = batch_for(m)
    out = m(**batch.inputs)
    assert (batch.labels == IGNORE).any()
    scored = batch.labels != IGNORE
    manual = torch.nn.functional.cross_entropy(out.logits[scored], batch.labels[scored])
    torch.testing.assert_close(task.loss(out, batch), manual)


@pytest.mark.parametrize("attention", ["sdpa", "math"])
@pytest.mark.parametrize("arch", ["decoder", "encdec"])
def test_vanilla_flops_match_analytic_and_torch_counter(attention: str, arch: str) -> None:
    """Forward FLOPs (2 per multiply-add) of matmuls and attention, counted three ways.

    Per layer on T tokens: projections 2*T*(4*d^2) and FFN 2*T*(2*d*d_ff); attention scores and the
    weighted sum 2*2*T*S*d. Decoder layers of encdec add cross-attention: q and output projections on
    T (2*T*2*d^2), k/v projections on S (2*S*2*d^2), and 2*2*T*S*d. The tied head adds 2*T*d*V.
    Causal masking is not discounted (as in torch.utils.flop_counter).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from harness.measure.flops import count_flops
    from harness.tasks.base import Batch

    d, ff, v, n, b, s, t = 32, 64, 20, 2, 3, 7, 5
    m = harness.build_model("vanilla", vocab_size=v, d_model=d, n_heads=4, d_ff=ff, n_layers=n,
                            arch=arch, attention=attention, dropout=0.0)
    x = torch.randint(0, v, (b, s))
    if arch == "decoder":
        batch = Batch.of_tokens({"x": x}, x)
        layer = 2 * s * (4 * d * d + 2 * d * ff) + 4 * s * s * d
        expected = b * (n * layer + 2 * s * d * v)
    else:
        y = torch.randint(0, v, (b, t))
        batch = Batch.of_tokens({"x": x, "y": y}, y)
        enc = 2 * s * (4 * d * d + 2 * d * ff) + 4 * s * s * d
        dec = (
            2 * t * (4 * d * d + 2 * d * ff) + 4 * t * t * d
            + 2 * t * 2 * d * d + 2 * s * 2 * d * d + 4 * t * s * d
        )
        expected = b * (n * enc + n * dec + 2 * t * d * v)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    ours, unsupported = count_flops(m, batch)
    counter = FlopCounterMode(display=False)
    # torch's counter has no formula for the CPU flash kernel; the math backend shows it the matmuls
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        m.eval()(**batch.inputs)
    assert unsupported == []
    assert ours == expected
    assert counter.get_total_flops() == expected


def _act_bytes(n: int, **cfg: object) -> int:
    from harness.core.registry import TASKS
    from harness.measure.costs import measure_act_bytes

    task = TASKS.get("copy").obj(TASKS.get("copy").config())
    m = harness.build_model(
        "vanilla", vocab_size=task.vocab_size, d_model=64, n_heads=2, d_ff=128, n_layers=1, max_len=n, **cfg
    )
    batch = task.profile_batch(n, 1, m.io, torch.Generator().manual_seed(0))
    return measure_act_bytes(m, batch, lambda mm, b: task.loss(mm(**b.inputs), b))


def test_fused_attention_memory_is_linear_and_math_is_quadratic() -> None:
    """Bytes kept for backward are deterministic: fused SDPA keeps O(n), the materialised path O(n^2)."""
    sdpa = {n: _act_bytes(n, dropout=0.0) for n in (512, 1024)}
    math_ = {n: _act_bytes(n, dropout=0.0, attention="math") for n in (512, 1024)}
    assert sdpa[1024] / sdpa[512] < 2.1
    assert math_[1024] / math_[512] > 3.0
    assert math_[1024] > 2 * 1024 * 1024 * 4  # at least one (heads, n, n) fp32 matrix is kept
    assert sdpa[1024] < 2 * 1024 * 1024 * 4 / 2
    # attention dropout sends CPU SDPA to a materialising kernel; attn_dropout=0 keeps it fused
    with_attn_dropout = _act_bytes(1024, dropout=0.1)
    assert with_attn_dropout > 2 * 1024 * 1024 * 4
    assert _act_bytes(1024, dropout=0.1, attn_dropout=0.0) < with_attn_dropout / 5


# --- io on the class or the config; the shared token-model config; the sublayer stack --------------


@pytest.mark.parametrize("label,cfg", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_io_is_declared_on_the_class_or_the_config(label: str, cfg: dict) -> None:
    from harness.models.base import ConfigIO, IOFormat, model_io

    entry = MODELS.get(label.split("-")[0])
    model = build_small(label, cfg)
    assert "io" not in vars(model)  # never set per instance
    declared = getattr(entry.obj, "io", None)
    if isinstance(declared, str):
        assert not issubclass(entry.obj, ConfigIO)
    else:
        assert issubclass(entry.obj, ConfigIO) and model.io == model.config.io
    assert model.io in typing.get_args(IOFormat)
    assert model_io(entry.obj, model.config) == model.io


@pytest.mark.parametrize("name", ["vanilla", "sandwich", "albert", "universal", "reformer"])
def test_attention_token_models_share_the_base_config(name: str) -> None:
    from harness.core.errors import HarnessError
    from harness.models.base import TransformerConfig

    assert issubclass(MODELS.get(name).config, TransformerConfig)
    with pytest.raises(HarnessError, match=r"n_heads: must divide d_model \(30\), got 4"):
        harness.build_model(name, d_model=30, n_heads=4)


def test_execution_plan_orders_and_shares() -> None:
    from harness.models.stack import bank_sizes, execution_plan

    assert execution_plan("sfsf") == (("s", 0), ("f", 0), ("s", 1), ("f", 1))
    assert execution_plan("ssff", shared="s") == (("s", 0), ("s", 0), ("f", 0), ("f", 1))
    assert execution_plan("lll", shared="l") == (("l", 0),) * 3
    assert bank_sizes(execution_plan("ssfsf", shared="f")) == {"s": 3, "f": 1}


def test_sublayer_stack_runs_the_plan() -> None:
    from harness.models.stack import SublayerStack

    calls: list[tuple[str, float]] = []

    class Tag(torch.nn.Module):
        def __init__(self, name: str, add: float) -> None:
            super().__init__()
            self.name, self.add = name, add

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            calls.append((self.name, float(h)))
            return h + self.add

    banks = {"a": [Tag("a0", 1.0), Tag("a1", 10.0)], "b": [Tag("b0", 100.0)]}
    stack = SublayerStack((("a", 1), ("b", 0), ("a", 0), ("b", 0)), banks)
    assert [m.name for m in stack.steps()] == ["a1", "b0", "a0", "b0"]
    out = stack(torch.tensor(0.0), signal=lambda t: torch.tensor(0.5 * t))
    assert calls == [("a1", 0.5), ("b0", 11.5), ("a0", 113.0), ("b0", 116.0)]
    assert float(out) == 216.0
    with pytest.raises(ValueError, match="plan runs 2 'a' modules"):
        SublayerStack((("a", 1),), {"a": [Tag("x", 0.0)]})


def test_vanilla_parameter_order_is_pinned() -> None:
    """Gradient clipping sums the gradient norm in ``model.parameters()`` order, so the order (not only the
    names) decides the last bits of every vanilla run: it must stay the one the committed rows ran with."""
    from harness.models import build_model

    m = build_model("vanilla", arch="encdec", vocab_size=11, d_model=16, n_heads=2, d_ff=32, n_layers=1,
                    max_len=16)
    mods = [n.rsplit(".", 1)[0] for n, _ in m.named_parameters()]
    order = list(dict.fromkeys(mods))
    assert order == [
        "embed.tok", "layers.0.attn.qkv_proj", "layers.0.attn.out_proj", "layers.0.ff.fc1", "layers.0.ff.fc2",
        "layers.0.res_attn.ln", "layers.0.res_ff.ln", "dec_layers.0.self_attn.qkv_proj",
        "dec_layers.0.self_attn.out_proj", "dec_layers.0.cross_attn.q_proj",
        "dec_layers.0.cross_attn.kv_proj", "dec_layers.0.cross_attn.out_proj", "dec_layers.0.ff.fc1",
        "dec_layers.0.ff.fc2",
        "dec_layers.0.res_self.ln", "dec_layers.0.res_cross.ln", "dec_layers.0.res_ff.ln",
    ]
