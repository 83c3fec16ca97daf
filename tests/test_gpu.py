"""The GPU path: precision (autocast, fp16 loss scaling), TF32, torch.compile, CUDA memory and OOM.

The CPU tests check the same code paths where the CPU can run them (autocast to bf16/fp16 works on
the CPU; an out-of-memory error is simulated). Tests marked ``cuda`` need a CUDA device and are
skipped without one; ``scripts/gpu-check`` runs them on a GPU machine.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.results.store import read_rows
from harness.suite.load import load_suite

# the tiny suite with one wider variant, one seed and no cost sweep
GPU = dict(
    name="gpu",
    seeds=[0],
    train={"batch_size": 8, "eval_batch_size": 16, "profile_steps": 2, "profile_warmup": 1},
    model={"d_model": 32, "d_ff": 64, "dropout": 0.0},
    tasks=[{"task": "copy", "seq_len": 6, "vocab": 6}],
    variants=[{"name": "a", "model": "vanilla"}],
    profile=None,
)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _job(tiny_suite: Callable[..., Path], *overrides: str, device: str | None = None) -> Any:
    return load_suite(tiny_suite(GPU), list(overrides), device=device).jobs[0]


# --- CPU-side logic ------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_precision_trains_on_cpu(tiny_suite: Callable[..., Path], precision: str) -> None:
    from harness.run.execute import execute

    fp32 = execute(_job(tiny_suite))
    row = execute(_job(tiny_suite, f"train.precision={precision}"))
    assert row["status"] == "ok", row["error"]
    assert row["config"]["train"]["precision"] == precision
    assert len(row["curve"]) == 2 and all(c["loss"] == c["loss"] for c in row["curve"])
    # lower precision really ran: the losses differ from fp32's, but not by much
    assert row["curve"][-1]["loss"] != fp32["curve"][-1]["loss"]
    assert row["curve"][-1]["loss"] == pytest.approx(fp32["curve"][-1]["loss"], rel=0.05)
    assert row["params"] == fp32["params"] and row["flops_fwd"] == fp32["flops_fwd"]


@pytest.mark.parametrize("precision, scaled", [("fp32", False), ("bf16", False), ("fp16", True)])
def test_loss_scaling_only_for_fp16(precision: str, scaled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness
    from harness.core.registry import TASKS
    from harness.run.train import train
    from harness.suite.load import TrainConfig

    made: list[Any] = []

    class Recording(torch.amp.GradScaler):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.steps = 0
            made.append(self)

        def step(self, optimizer: Any, *args: Any, **kw: Any) -> Any:
            self.steps += 1
            return super().step(optimizer, *args, **kw)

    monkeypatch.setattr(torch.amp, "GradScaler", Recording)
    task = TASKS.get("copy").obj(TASKS.get("copy").config(seq_len=3, vocab=4))
    model = harness.build_model("vanilla", vocab_size=task.vocab_size, d_model=16, n_heads=2, d_ff=32,
                                n_layers=1, max_len=16)
    cfg = vars(TrainConfig(steps=4, batch_size=2, eval_every=4, precision=precision)) | {"betas": [0.9, 0.98]}
    out = train(model, task, cfg, seed=0, device=torch.device("cpu"))
    assert out.status == "ok" and out.curve
    assert len(made) == 1 and made[0].is_enabled() == scaled and made[0].steps == 4


def test_compile_flag_trains_through_torch_compile(
    tiny_suite: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wiring only: compiling for real on the CPU takes minutes (the cuda test compiles for real)."""
    from harness.run.execute import execute

    compiled: list[torch.nn.Module] = []

    def fake_compile(model: torch.nn.Module, **kw: Any) -> torch.nn.Module:
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    eager = execute(_job(tiny_suite))
    row = execute(_job(tiny_suite, "train.compile=true"))
    # twice: the copy whose activation bytes are counted under the step's compile, and the model trained
    assert row["status"] == "ok" and len(compiled) == 2 and compiled[0] is not compiled[1]
    assert row["curve"] == eager["curve"]  # an identity "compiler" changes nothing
    assert row["run_id"] != eager["run_id"]


class _OomModel(torch.nn.Module):
    """Allocates a large buffer, then fails like CUDA does when it runs out of memory."""

    io = "lm"

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.blob = torch.nn.Parameter(torch.zeros(1 << 20))

    def forward(self, x: torch.Tensor) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_oom_row_names_the_size_and_frees_the_model(
    tmp_path: Path, tiny_suite: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.run import execute as runner
    from harness.run.orchestrate import run_suite

    built: list[weakref.ref] = []
    real_build = runner.build_job

    def build(job: Any) -> Any:
        model, task = real_build(job)
        if job.variant == "big":
            model = _OomModel()
            built.append(weakref.ref(model))
        return model, task

    monkeypatch.setattr(runner, "build_job", build)
    suite_path = tiny_suite(GPU, variants=[{"name": "big", "model": "vanilla", "n_layers": 2},
                                           {"name": "a", "model": "vanilla"}])
    summary = run_suite(load_suite(suite_path), tmp_path / "res", quiet=True)
    rows = {r["variant"]: r for r in read_rows(summary.results_path)}
    assert rows["big"]["status"] == "oom"
    assert rows["big"]["error"].startswith("out of memory at seq_len=12 batch_size=8"), rows["big"]["error"]
    assert "Tried to allocate 20.00 GiB" in rows["big"]["error"]
    assert rows["a"]["status"] == "ok"  # the suite went on
    gc.collect()
    assert built and built[0]() is None  # nothing kept the failed model alive


# --- CUDA ----------------------------------------------------------------------------------------


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_job_rows(tiny_suite: Callable[..., Path], precision: str) -> None:
    from harness.run.execute import execute

    row = execute(_job(tiny_suite, f"train.precision={precision}", device="cuda"))
    assert row["status"] == "ok", row["error"]
    assert row["device"] == "cuda" and row["mem_kind"] == "cuda_allocated"
    assert row["mem_bytes"] > row["params"] * 4 and row["act_bytes"] > 0
    assert row["step_ms"] > 0 and 0 < row["mfu"] < 1
    assert torch.backends.cuda.matmul.allow_tf32  # fp32 matmuls on tensor cores


@cuda
@pytest.mark.cuda
def test_cuda_auto_device_picks_cuda(tiny_suite: Callable[..., Path]) -> None:
    from harness.run.execute import execute

    row = execute(load_suite(tiny_suite(GPU, device="auto")).jobs[0])
    assert row["config"]["device"] == "auto"
    assert row["status"] == "ok" and row["device"] == "cuda"


@cuda
@pytest.mark.cuda
def test_cuda_compile(tiny_suite: Callable[..., Path]) -> None:
    from harness.run.execute import execute

    row = execute(_job(tiny_suite, "train.compile=true", "train.precision=bf16", device="cuda"))
    assert row["status"] == "ok", row["error"]
    assert row["curve"] and row["value"] is not None


@cuda
@pytest.mark.cuda
def test_cuda_peak_memory_is_reproducible() -> None:
    import harness
    from harness.core.registry import TASKS
    from harness.measure.costs import profile_model

    task = TASKS.get("copy").obj(TASKS.get("copy").config(seq_len=32, vocab=8))
    model = harness.build_model("vanilla", vocab_size=task.vocab_size, d_model=64, n_heads=4, d_ff=128,
                                n_layers=2, max_len=128).cuda()
    batch = task.profile_batch(64, 8, model.io, torch.Generator().manual_seed(0)).to("cuda")

    def loss(m: torch.nn.Module, b: Any) -> torch.Tensor:
        return task.loss(m(**b.inputs), b)

    a = profile_model(model, batch, loss, device="cuda", n_warmup=1, n_timed=2)
    b = profile_model(model, batch, loss, device="cuda", n_warmup=1, n_timed=2)
    assert a["mem_kind"] == "cuda_allocated" and a["mem_bytes"] == b["mem_bytes"]


@cuda
@pytest.mark.cuda
def test_cuda_oom_is_recorded_memory_freed_suite_goes_on(
    tmp_path: Path, tiny_suite: Callable[..., Path],
) -> None:
    from harness.run.execute import execute
    from harness.run.orchestrate import run_suite

    # one profile cell whose 64 x 2 x 131072^2 attention matrix cannot exist on any GPU
    p = tiny_suite(GPU, baseline="huge", variants=[{"name": "huge", "model": "vanilla", "attention": "math"}],
                   profile={"seq_lens": [131072], "batch_size": 64})
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    summary = run_suite(load_suite(p, device="cuda"), tmp_path / "res", quiet=True)
    rows = {r["job"]: r for r in read_rows(summary.results_path)}
    assert rows["train"]["status"] == "ok", rows["train"]["error"]
    assert rows["profile"]["status"] == "oom", rows["profile"]["error"]
    assert rows["profile"]["error"].startswith("out of memory at seq_len=131072 batch_size=64")
    gc.collect()
    assert torch.cuda.memory_allocated() - before < 64 << 20  # the failed job's tensors are gone
    after = execute(_job(tiny_suite, device="cuda"))  # and the device is usable again
    assert after["status"] == "ok" and after["device"] == "cuda"
