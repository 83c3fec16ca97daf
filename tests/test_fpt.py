"""FPN and FPT: pyramid shapes, the transformers' maths, heads and refused configs."""

from __future__ import annotations

import math

import pytest
import torch

import harness
from harness.core.errors import HarnessError
from harness.models.fpt import GroundingTransformer, SelfTransformer, gt_similarity, window_mask

SMALL = {"d_model": 16, "widths": [8, 16, 16, 16], "in_channels": 3}


def model(name: str, **cfg: object) -> torch.nn.Module:
    return harness.build_model(name, **{**SMALL, **cfg}).eval()


@pytest.mark.parametrize("size,levels", [(32, [1, 2, 3]), (20, [1, 2, 3, 4]), (16, [1, 3]), (8, [3])])
def test_fpt_output_pyramid_has_the_input_pyramids_shapes(size: int, levels: list[int]) -> None:
    m = model("fpt", image_size=size, levels=levels)
    x = torch.randn(2, 3, size, size)
    laterals = m.laterals(m.backbone(x))
    out = m.fpt(laterals)
    sides = [math.ceil(size / 2**lv) for lv in levels]  # 20 px: 10, 5, 3, 2 (odd sides included)
    assert [tuple(p.shape) for p in laterals] == [(2, 16, s, s) for s in sides]
    assert [p.shape for p in out] == [p.shape for p in laterals]
    fpn = model("fpn", image_size=size, levels=levels)
    assert [p.shape for p in fpn.pyramid(x)] == [p.shape for p in laterals]


def test_gt_and_rt_connect_every_pair_of_levels() -> None:
    m = model("fpt", image_size=32, levels=[1, 2, 3, 4])
    n = 4
    assert sorted(m.fpt.gt) == sorted(f"{i}_{j}" for i in range(n) for j in range(i + 1, n))  # fine_coarse
    assert sorted(m.fpt.rt) == sorted(f"{j}_{i}" for j in range(n) for i in range(j))  # coarse_fine
    assert all(f[0].in_channels == (n + 1) * 16 for f in m.fpt.fuse)  # ST + GTs + RTs + the level itself
    # the finest output depends on the coarsest input (through GT) and the coarsest on the finest (RT)
    xs = [torch.randn(1, 16, s, s, requires_grad=True) for s in (16, 8, 4, 2)]
    out = m.fpt(xs)
    assert torch.autograd.grad(out[0].sum(), xs[3], retain_graph=True)[0].abs().sum() > 0
    assert torch.autograd.grad(out[3].sum(), xs[0])[0].abs().sum() > 0


def test_gt_similarity_is_negative_squared_distance() -> None:
    q, k = torch.randn(2, 7, 5), torch.randn(2, 3, 5)
    explicit = -((q[:, :, None, :] - k[:, None, :, :]) ** 2).sum(-1)
    torch.testing.assert_close(gt_similarity(q, k), explicit)
    gt = GroundingTransformer(8, 4, window=0)
    fine, coarse = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 2, 2)
    qf = gt.q(fine).flatten(2).transpose(1, 2)
    kc = gt.k(coarse).flatten(2).transpose(1, 2)
    expected = (-((qf[:, :, None] - kc[:, None]) ** 2).sum(-1)).softmax(-1)
    torch.testing.assert_close(gt.weights(fine, coarse), expected)


def test_locality_constrained_gt_sees_only_its_window() -> None:
    keep = window_mask((4, 4), (2, 2), 0, torch.device("cpu"))
    # fine cell (y, x) projects to coarse (y // 2, x // 2); window 0 keeps exactly that cell
    assert keep.sum(1).eq(1).all() and keep[0, 0] and keep[15, 3] and not keep[0, 3]
    gt = GroundingTransformer(8, 4, window=1)
    fine, coarse = torch.randn(1, 8, 8, 8), torch.randn(1, 8, 4, 4)
    w = gt.weights(fine, coarse)
    outside = ~window_mask((8, 8), (4, 4), 1, torch.device("cpu"))
    assert w[0][outside].abs().max() == 0
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 64))


def test_mixture_of_softmaxes_weights_sum_to_one() -> None:
    st = SelfTransformer(8, 4, parts=2)
    x = torch.randn(3, 8, 4, 4)
    pi, attn = st.weights(x)
    assert pi.shape == (3, 2) and attn.shape == (3, 16, 16)
    torch.testing.assert_close(pi.sum(-1), torch.ones(3))
    assert (pi > 0).all() and not torch.allclose(pi[0], pi[1])  # from each image's pooled query
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 16))
    # F_mos = sum_n pi_n softmax(q^n k^n / sqrt(d_inner)), q and k split into two channel halves
    q, k = st.q(x).flatten(2), st.k(x).flatten(2)  # (B, 4, T)
    torch.testing.assert_close(pi, torch.softmax(st.pi.weight @ q.mean(-1).T, dim=0).T)
    half = [slice(0, 2), slice(2, 4)]
    parts = [(q[:, h].transpose(1, 2) @ k[:, h] / math.sqrt(4)).softmax(-1) for h in half]  # 1/sqrt(d_inner)
    torch.testing.assert_close(attn, pi[:, 0, None, None] * parts[0] + pi[:, 1, None, None] * parts[1])
    single = SelfTransformer(8, 4, parts=1)
    assert single.pi is None
    torch.testing.assert_close(single.weights(x)[0], torch.ones(3, 1))


@pytest.mark.parametrize("name", ["fpn", "fpt"])
def test_heads_output_shapes(name: str) -> None:
    x = torch.randn(2, 3, 16, 16)
    seg = model(name, image_size=16, n_classes=5, head="segment")
    assert seg(images=x).logits.shape == (2, 16, 16, 5)
    cls = model(name, image_size=16, n_classes=7, head="classify")
    assert cls(images=x).logits.shape == (2, 7)


@pytest.mark.parametrize("name", ["fpn", "fpt"])
def test_defaults_run_on_eight_pixel_digits_shape(name: str) -> None:
    m = harness.build_model(name)  # as tests/test_models.py builds it, fed 1-channel 8x8 digits
    out = m(images=torch.randn(3, 1, 8, 8)).logits
    assert out.shape == (3, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


@pytest.mark.parametrize(
    "name,cfg,match",
    [
        ("fpn", {"levels": [5]}, "levels: level 5 does not exist"),
        ("fpt", {"levels": [1, 5]}, "levels: level 5 does not exist"),
        ("fpn", {"levels": [0]}, "levels: level 0 does not exist"),
        ("fpt", {"image_size": 8, "levels": [4]}, r"levels: level 4 \(stride 16\) would be smaller than 1x1"),
        ("fpn", {"levels": []}, "levels: must list"),
        ("fpn", {"levels": [2, 2]}, "levels: lists a level twice"),
        ("fpt", {"d_model": 16, "mos_parts": 3}, "mos_parts: must divide d_inner"),
        ("fpn", {"head": "detect"}, "head"),
    ],
)
def test_bad_config_names_key(name: str, cfg: dict, match: str) -> None:
    with pytest.raises(HarnessError, match=match):
        harness.build_model(name, **cfg)


def test_suite_with_a_missing_level_is_refused_at_load(refused_suite) -> None:
    line = refused_suite(
        "name: x\ntasks: [{task: shapes, image_size: 16}]\n"
        "variants:\n  - {name: a, model: fpt, levels: [1, 2, 3, 4, 5]}\n"
    )
    assert "variants[0].levels" in line and "level 5 does not exist" in line


def test_fpt_build_is_deterministic_and_counts_flops() -> None:
    from harness.measure.flops import count_flops
    from harness.tasks.base import Batch

    torch.manual_seed(1)
    a = model("fpt", image_size=16, head="segment", n_classes=5, gt_window=1)
    torch.manual_seed(1)
    b = model("fpt", image_size=16, head="segment", n_classes=5, gt_window=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(a(images=x).logits, b(images=x).logits)
    flops, unsupported = count_flops(
        a, Batch({"images": x}, torch.zeros(2, 16, 16, dtype=torch.long), n_tokens=256, seq_len=16))
    assert unsupported == [] and flops > 0
