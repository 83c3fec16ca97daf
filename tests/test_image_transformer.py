"""Image Transformer (Parmar et al. 2018) and the pixels task: causality of the local attention masks,
local = full attention when the blocks cover the image, FLOPs by hand, refusals, bits per dimension."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_suites import write_suite

import harness
from harness.core.registry import TASKS

SMALL = {"d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 2, "dropout": 0.0, "levels": 16}
LAYOUTS = {
    "local1d": {"attention": "local1d", "block": 8, "memory": 8},
    "local1d-odd-memory": {"attention": "local1d", "block": 16, "memory": 5},
    "local2d": {"attention": "local2d", "block_h": 2, "block_w": 4, "flange_h": 2, "flange_w": 2},
    "full": {"attention": "full"},
}


def model(seed: int = 0, **keys: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return harness.build_model("image_transformer", **{**SMALL, **keys}).eval()


def pixels(**cfg: object):  # noqa: ANN201
    entry = TASKS.get("pixels")
    return entry.obj(entry.config(**cfg))


@pytest.mark.parametrize("impl", ["math", "sdpa"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_no_position_sees_a_later_one(layout: str, impl: str) -> None:
    """d out[i] / d in[j] is exactly zero for every j > i (and not zero at j = i: the test can fail)."""
    m = model(**LAYOUTS[layout], impl=impl)
    tokens = torch.randint(0, 16, (2, 64), generator=torch.Generator().manual_seed(1))
    x = m.embed_tokens(tokens).detach().requires_grad_(True)
    out = m.decode(x)  # (2, 64, 16)
    for i in range(64):
        (g,) = torch.autograd.grad(out[:, i].sum(), x, retain_graph=True)
        seen = g.abs().sum(dim=(0, 2))  # (64,)
        assert torch.all(seen[i + 1 :] == 0), (layout, i, torch.nonzero(seen[i + 1 :]).flatten() + i + 1)
        assert seen[i] > 0


def test_local2d_memory_window_is_the_block_and_its_flanges() -> None:
    """Query block (rows 2-3, cols 4-7) of an 8x8 image with flanges (2, 2): it sees rows 0-3, cols 2-7
    (col 8, 9 are outside), causally: here the first query pixel (2, 4) sees rows 0-1 cols 2-7, row 2
    cols 2-4."""
    m = model(**LAYOUTS["local2d"])
    tokens = torch.randint(0, 16, (1, 64), generator=torch.Generator().manual_seed(2))
    x = m.embed_tokens(tokens).detach().requires_grad_(True)
    out = m.layers[0].attn(x)  # one attention layer: its receptive field is exactly the window
    (g,) = torch.autograd.grad(out[0, 2 * 8 + 4].sum(), x)
    seen = {(j // 8, j % 8) for j in torch.nonzero(g.abs().sum(-1)[0]).flatten().tolist()}
    assert seen == {(r, c) for r in (0, 1) for c in range(2, 8)} | {(2, c) for c in (2, 3, 4)}


COVERING = {
    "local1d-one-block": {"attention": "local1d", "block": 64, "memory": 0},
    "local1d-long-memory": {"attention": "local1d", "block": 8, "memory": 64},
    "local2d-one-block": {"attention": "local2d", "block_h": 8, "block_w": 8, "flange_h": 0, "flange_w": 0},
    "local2d-wide-flanges": {"attention": "local2d", "block_h": 2, "block_w": 2, "flange_h": 8,
                             "flange_w": 8},
}


@pytest.mark.parametrize("impl", ["math", "sdpa"])
@pytest.mark.parametrize("layout", sorted(COVERING))
def test_local_equals_full_when_the_memory_covers_the_image(layout: str, impl: str) -> None:
    full = model(seed=3, attention="full", impl=impl)
    local = model(seed=3, **COVERING[layout], impl=impl)
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), local.state_dict().values()))
    images = pixels().train_batch(3, "image", torch.Generator().manual_seed(0)).inputs["images"]
    with torch.no_grad():
        a, b = full(images).logits, local(images).logits
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def test_local_differs_from_full_when_it_does_not_cover() -> None:
    images = pixels().train_batch(3, "image", torch.Generator().manual_seed(0)).inputs["images"]
    with torch.no_grad():
        a = model(seed=3, attention="full")(images).logits
        b = model(seed=3, **LAYOUTS["local1d"])(images).logits
    assert not torch.allclose(a, b, atol=1e-3)


def hand_flops(t: int, d: int, d_ff: int, layers: int, levels: int, keys: int, batch: int) -> int:
    """2 x MACs: per layer q/k/v (3 T D^2), output (T D^2), feed-forward (2 T D d_ff), scores and
    weighted sum (2 T keys D); the output layer (T D levels). Embeddings, norms, softmax are free."""
    per_layer = 3 * t * d * d + t * d * d + 2 * t * d * d_ff + 2 * t * keys * d
    return 2 * batch * (layers * per_layer + t * d * levels)


@pytest.mark.parametrize("impl", ["math", "sdpa"])
@pytest.mark.parametrize(("layout", "keys"), [("local1d", 16), ("local1d-odd-memory", 21),
                                               ("local2d", 4 * 8), ("full", 64)])
def test_flops_match_the_hand_formula(layout: str, keys: int, impl: str) -> None:
    from harness.measure.flops import count_flops

    m = model(**LAYOUTS[layout], impl=impl)
    batch = pixels().train_batch(2, "image", torch.Generator().manual_seed(0))
    flops, unsupported = count_flops(m, batch)
    assert unsupported == []
    assert flops == hand_flops(64, 16, 32, 2, 16, keys, 2)


def test_sampling_is_seeded_greedy_at_zero_and_in_range() -> None:
    m = model(**LAYOUTS["local2d"])
    a = m.sample(3, torch.Generator().manual_seed(4), 1.0)
    assert a.shape == (3, 8, 8) and a.dtype == torch.long and 0 <= int(a.min()) and int(a.max()) < 16
    assert torch.equal(a, m.sample(3, torch.Generator().manual_seed(4), 1.0))
    g = m.sample(2, torch.Generator().manual_seed(5), 0.0)
    assert torch.equal(g[0], g[1])  # greedy: no randomness at all
    # greedy = the argmax of the model's own logits at every position, given the pixels before it
    logits = m(g[:1, None].float()).logits[0]
    assert torch.equal(logits.argmax(-1), g[0])


# --- the pixels task ----------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [{}, {"image_size": 16}, {"source": "shapes", "image_size": 16, "levels": 8}])
def test_pixels_is_deterministic_by_seed(cfg: dict) -> None:
    task = pixels(**cfg)
    a = task.train_batch(4, "image", torch.Generator().manual_seed(3))
    b = task.train_batch(4, "image", torch.Generator().manual_seed(3))
    c = task.train_batch(4, "image", torch.Generator().manual_seed(4))
    assert torch.equal(a.inputs["images"], b.inputs["images"]) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)
    s = task.image_size
    assert a.inputs["images"].shape == (4, 1, s, s) and a.labels.shape == (4, s, s)
    assert torch.equal(a.inputs["images"][:, 0].long(), a.labels)  # the image is its own target
    levels = task.levels
    assert 0 <= int(a.labels.min()) and 0 < int(a.labels.max()) <= levels - 1  # quantised
    e1, e2 = task.eval_sets(2, 5, "image", seed=0)[""], task.eval_sets(2, 5, "image", seed=0)[""]
    assert all(torch.equal(x.labels, y.labels) for x, y in zip(e1, e2))


def test_digit_pixels_cover_the_whole_test_split_and_match_the_source() -> None:
    from sklearn.datasets import load_digits

    task = pixels(levels=17)  # 0..16 at 17 levels is lossless at 8x8
    sets = task.eval_sets(1, 100, "image", seed=0)[""]
    assert sum(b.batch_size for b in sets) == 359
    test = torch.cat([b.labels for b in sets])
    raw = torch.tensor(load_digits().images, dtype=torch.long)
    # every held-out image is one of the digits, exactly (17 levels keep the values 0..16)
    keys = {tuple(x.flatten().tolist()) for x in raw}
    assert all(tuple(x.flatten().tolist()) in keys for x in test)


@pytest.mark.parametrize("levels", [2, 16, 256])
def test_bpd_of_a_uniform_model_is_log2_levels(levels: int) -> None:
    task = pixels(levels=levels)
    totals = None
    for b in task.eval_sets(1, 64, "image", seed=0)[""]:
        counts = task.score(torch.zeros(*b.labels.shape, levels), b.labels)
        totals = counts if totals is None else tuple(x + y for x, y in zip(totals, counts))
    assert abs(task.metrics(totals, "")["bpd"] - math.log2(levels)) < 1e-12


def test_task_samples_have_the_shared_layout() -> None:
    from harness.run.train import task_samples

    m = model()
    panels = task_samples(m, pixels(), torch.device("cpu"), seed=0)
    assert set(panels) == {"generated", "held-out"}
    for images in panels.values():
        assert len(images) == 16 and all(len(im) == 8 and len(im[0]) == 8 for im in images)
        assert all(isinstance(v, int) and 0 <= v <= 255 for im in images for r in im for v in r)
    assert panels == task_samples(m, pixels(), torch.device("cpu"), seed=0)  # seeded
    assert pixels().samples(torch.nn.Linear(1, 1), torch.device("cpu"), 0) == {}  # no sample(): none


# --- refusals at load: file:line:key, exit 2, nothing written ------------------------------------

SUITE = """\
name: t
seeds: [0]
baseline: a
train: {steps: 2, batch_size: 2, eval_every: 1, eval_batches: 1, eval_batch_size: 2}
model: {d_model: 16, n_heads: 2, d_ff: 32, n_layers: 1}
tasks:
  - {name: px, task: pixels, image_size: 8}
variants:
  - {name: a, model: image_transformer, attention: full}
  - {name: b, model: image_transformer, attention: local1d, block: 16}
"""

REFUSED = {
    "block_larger_than_image": ("block: 16}", "block: 128}",
                                ["bad.yaml:10:", "variants[1].block", "<= the image"]),
    "block_not_tiling": ("block: 16}", "block: 24}", ["bad.yaml:10:", "variants[1].block", "whole blocks"]),
    "zero_block": ("block: 16}", "block: 0}", ["bad.yaml:10:", "variants[1].block", ">= 1"]),
    "negative_memory": ("block: 16}", "block: 16, memory: -1}", ["bad.yaml:10:", "variants[1].memory"]),
    "block_h_over_height": ("attention: local1d, block: 16}", "attention: local2d, block_h: 16}",
                            ["bad.yaml:10:", "variants[1].block_h", "<= the image height (8)"]),
    "block_w_not_tiling": ("attention: local1d, block: 16}", "attention: local2d, block_w: 3}",
                           ["bad.yaml:10:", "variants[1].block_w", "whole blocks"]),
    "levels_over_256": ("image_size: 8}", "image_size: 8, levels: 300}", ["bad.yaml:7:", "levels"]),
    "classifier_on_pixels": ("attention: full}", "attention: full}\n  - {name: c, model: resnet}",
                             ["bad.yaml:10:", "variants[1].model", "not an autoregressive pixel model"]),
    "shapes_too_small": ("image_size: 8}", "image_size: 8, source: shapes}", ["bad.yaml:7:", "image_size"]),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_settings_are_refused_at_load(case: str, refused_suite) -> None:  # noqa: ANN001
    old, new, fragments = REFUSED[case]
    assert old in SUITE
    line = refused_suite(SUITE.replace(old, new, 1))
    for frag in fragments:
        assert frag in line, (frag, line)


def test_the_image_size_is_filled_from_the_task(tmp_path) -> None:  # noqa: ANN001
    from harness.suite.load import load_suite

    path = write_suite(tmp_path / "ok.yaml", SUITE.replace("image_size: 8}", "image_size: 16, levels: 32}"))
    jobs = load_suite(path, []).jobs
    keys = {(j.model_cfg["height"], j.model_cfg["width"], j.model_cfg["levels"]) for j in jobs}
    assert keys == {(16, 16, 32)}


def test_the_cost_sweep_sizes_the_image_to_each_profiled_side(tmp_path) -> None:  # noqa: ANN001
    from harness.suite.load import load_suite

    sweep = "profile: {image_sizes: [16, 32], batch_size: 1, task: px}\n"
    path = write_suite(tmp_path / "ok.yaml", SUITE + sweep)
    prof = [j for j in load_suite(path, []).jobs if j.kind == "profile"]
    assert {(j.variant, j.seq_len, j.model_cfg["height"], j.model_cfg["width"]) for j in prof} == {
        (v, n, n, n) for v in ("a", "b") for n in (16, 32)}
