"""The hooks a model or a task brings instead of being sniffed: a model config's ``at_length`` (how it
resizes for a cost sweep or ``harness profile``), the task ``harness profile`` picks for a model (a
task's ``profile_ios``, a model's ``profile_task``) and the size it profiles at (``profile_size``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import pytest
from torch import nn

from harness.core.errors import HarnessError, InputError
from harness.core.registry import MODELS, TASKS, Entry
from harness.models.base import IOFormat, ModelOutput, model_io, resizes
from harness.suite.jobs import profile_target, profiled_config
from harness.suite.load import load_suite

ROOT = Path(__file__).resolve().parent.parent
SWEPT_SUITES = [p for p in sorted((ROOT / "suites").glob("*.yaml")) if "\nprofile:" in p.read_text()]

# harness profile's task for each registered model when none is named
PROFILE_TASKS = {
    **dict.fromkeys(["albert", "reformer", "sandwich", "shuffle_exchange", "universal", "vanilla"], "copy"),
    **dict.fromkeys(["fpn", "fpt", "lambda", "resnet", "vit"], "digits"),
    "image_transformer": "pixels", "sagan": "gan_digits", "bicubic": "ref_sr", "ttsr": "ref_sr",
    **dict.fromkeys(["detr", "deformable_detr", "dense_detector"], "scenes"),
    **dict.fromkeys(["lstr", "lane_seg"], "lanes"),
}


# --- the resize hook -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_config_says_how_it_resizes(name: str) -> None:
    """at_length(n) names keys of the config only, and the sizes in them follow n."""
    cfg = MODELS.get(name).config()
    assert resizes(cfg)
    keys = {f.name for f in dataclasses.fields(cfg)}
    for n in (16, 4096):
        changed = cfg.at_length(n)
        assert changed and set(changed) <= keys, changed
        assert all(v == n or (k == "max_len" and v == max(cfg.max_len, n)) for k, v in changed.items())


@pytest.mark.parametrize("path", SWEPT_SUITES, ids=[p.stem for p in SWEPT_SUITES])
def test_cost_sweep_cells_change_only_the_keys_their_hook_names(path: Path) -> None:
    """Every committed cost sweep's model resizes, and a profile job's config is its variant's with
    the hook's keys (test_run_ids proves those are the configs the committed rows were made from)."""
    suite = load_suite(path)
    profile = [j for j in suite.jobs if j.kind == "profile"]
    assert profile
    for job in profile:
        cfg = MODELS.get(job.model).config(**job.model_cfg)
        hook = cfg.at_length(job.seq_len)
        assert resizes(cfg) and hook == {k: job.model_cfg[k] for k in cfg.at_length(1)}
        assert profiled_config(cfg, job.seq_len) == job.model_cfg


def test_cost_sweep_sizes_by_hand() -> None:
    """quick: reverse at seq_len 8 fixes max_len 17, which the sweep raises to each length; vision:
    lambda's image_size is the side; generation: image_transformer's height and width are."""
    def sizes(name: str, keys: tuple[str, ...]) -> set[tuple]:
        jobs = load_suite(ROOT / "suites" / f"{name}.yaml").jobs
        return {(j.model, j.seq_len, *(j.model_cfg[k] for k in keys)) for j in jobs if j.kind == "profile"}

    quick = sizes("quick", ("max_len",))
    assert ("vanilla", 64, 64) in quick and ("reformer", 256, 256) in quick
    assert {(n, m) for model, n, m in quick} == {(64, 64), (128, 128), (256, 256)}
    assert sizes("vision", ("image_size",)) == {("lambda", n, n) for n in (16, 32, 64, 128)}
    image_transformer = {("image_transformer", n, n, n) for n in (16, 32, 48, 64)}
    assert sizes("generation", ("height", "width")) == image_transformer


@dataclass
class FixedConfig:
    """A model config that does not say how it resizes (it has a max_len all the same)."""

    vocab_size: int = 32
    max_len: int = 16


class Fixed(nn.Module):
    io: IOFormat = "lm"

    def __init__(self, cfg: FixedConfig) -> None:
        super().__init__()
        self.head = nn.Embedding(cfg.vocab_size, cfg.vocab_size)

    def forward(self, x):  # noqa: ANN001, ANN201
        return ModelOutput(self.head(x))


@pytest.fixture
def fixed_model() -> Iterator[str]:
    MODELS.add(Entry("fixed_size_test", Fixed, FixedConfig, "one size only", __name__))
    yield "fixed_size_test"
    MODELS.entries.pop("fixed_size_test")


SWEEP = """
seeds: [0]
train: {steps: 1, batch_size: 2}
tasks:
  - {name: cp, task: copy, seq_len: 4, vocab: 4}
variants:
  - {name: ok, model: vanilla, d_model: 16, n_heads: 2}
  - {name: fixed, model: fixed_size_test%s}
profile: {seq_lens: [8], batch_size: 1}
"""


def test_a_model_that_cannot_resize_is_refused_in_a_cost_sweep(tmp_path: Path, fixed_model: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SWEEP % "")
    with pytest.raises(InputError) as e:
        load_suite(path)
    assert "variants[1].profile" in str(e.value) and "does not say how it resizes" in str(e.value)
    path.write_text(SWEEP % ", profile: false")  # out of the sweep it trains as configured
    assert {j.variant for j in load_suite(path).jobs if j.kind == "profile"} == {"ok"}
    with pytest.raises(HarnessError, match="cannot be profiled at a size"):
        profile_target(fixed_model, None, 8, {}, {})


# --- harness profile's task and size -------------------------------------------------------------


def test_every_io_has_one_default_profile_task() -> None:
    claims = {io: [n for n in TASKS.names() if io in TASKS.get(n).obj.profile_ios]
              for io in get_args(IOFormat)}
    assert {io: names for io, names in claims.items() if len(names) != 1} == {}
    assert all(io in TASKS.get(names[0]).obj.ios for io, names in claims.items())  # it lays out that io


@pytest.mark.parametrize("name", MODELS.names())
def test_profile_picks_the_declared_task(name: str) -> None:
    _, cfg, tentry, task = profile_target(name, None, 32, {}, {})
    assert tentry.name == PROFILE_TASKS[name]
    assert model_io(MODELS.get(name).obj, cfg) in task.ios  # the task lays batches out for it


def test_profile_size_is_the_tasks() -> None:
    """Without a size, harness profile runs at the task's profile_size: 128 tokens on copy (vanilla's
    max_len stays its default 512) and 128 px on digits, as before; 64 px on scenes."""
    _, cfg, tentry, task = profile_target("vanilla", None, None, {}, {})
    assert (tentry.name, task.profile_size, cfg.max_len, cfg.vocab_size) == ("copy", 128, 512, 14)
    _, cfg, tentry, task = profile_target("resnet", None, None, {}, {})
    assert (tentry.name, cfg.image_size, cfg.n_classes, cfg.in_channels) == ("digits", 128, 10, 1)
    _, cfg, tentry, task = profile_target("image_transformer", None, None, {}, {})
    assert (tentry.name, cfg.height, cfg.width, cfg.levels) == ("pixels", 128, 128, 16)
    _, cfg, tentry, _ = profile_target("detr", None, None, {}, {})
    assert (tentry.name, cfg.image_size, cfg.n_classes) == ("scenes", 64, 4)
    # a key valid only at the profiled size (6 divides 48, not the default 32)
    _, cfg, tentry, _ = profile_target("vit", None, 48, {"patch_size": 6}, {"patch_size": "x"})
    assert (tentry.name, cfg.image_size, cfg.patch_size) == ("digits", 48, 6)
    _, cfg, tentry, _ = profile_target("fpn", "shapes", 48, {}, {})
    assert (tentry.name, cfg.image_size, cfg.n_classes, cfg.head) == ("shapes", 48, 5, "segment")


def test_profile_task_a_model_names_wins_over_its_io(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MODELS.get("fpn").obj, "profile_task", "shapes", raising=False)
    assert profile_target("fpn", None, 32, {}, {})[2].name == "shapes"
