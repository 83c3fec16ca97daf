"""Training loop: deterministic on the CPU, schedules, divergence, end-to-end rows."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.measure.step import lr_at
from harness.models.base import ModelOutput
from harness.run.train import train
from harness.suite.load import TrainConfig, load_suite

# the tiny suite with one variant: 30 steps, evaluated every 10, on copy with longer test sequences
ONE_VARIANT = dict(
    seeds=[0],
    train={"steps": 30, "batch_size": 8, "warmup_steps": 5, "eval_every": 10, "eval_batch_size": 16,
           "profile_steps": 2, "profile_warmup": 1},
    model={"dropout": 0.1},
    tasks=[{"task": "copy", "seq_len": 4, "test_len": 6, "vocab": 4}],
    variants=[{"name": "a", "model": "vanilla"}],
    profile=None,
)


def test_lr_schedule() -> None:
    kw = dict(lr=1.0, steps=110, warmup=10, min_ratio=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)
    assert lr_at(110, **kw) == pytest.approx(0.1)


def _job(tiny_suite: Callable[..., Path]):  # noqa: ANN202
    return load_suite(tiny_suite(ONE_VARIANT)).jobs[0]


def test_same_seed_same_numbers(tiny_suite: Callable[..., Path]) -> None:
    from harness.run.execute import execute

    job = _job(tiny_suite)
    a, b = execute(job), execute(job)
    assert a["status"] == "ok", a["error"]
    assert a["curve"] == b["curve"] and a["metrics"] == b["metrics"]
    assert [c["step"] for c in a["curve"]] == [10, 20, 30]
    assert set(a["metrics"]) == {"tok_acc", "seq_acc", "tok_acc_train_len", "seq_acc_train_len"}
    assert a["value"] == a["metrics"]["seq_acc"] and a["metric"] == "seq_acc"


def test_row_has_every_design_field(tiny_suite: Callable[..., Path]) -> None:
    from harness.run.execute import execute

    row = execute(_job(tiny_suite))
    required = (
        "run_id suite variant model task seed status error params params_applied flops_fwd flops_unsupported "
        "mem_bytes mem_kind act_bytes step_ms tokens_per_s mfu metric value higher_is_better curve train_s "
        "device device_name torch_version harness_version git_commit config finished_at"
    ).split()
    missing = [k for k in required if k not in row]
    assert not missing
    for k in ("params", "params_applied", "flops_fwd", "mem_bytes", "act_bytes"):
        assert isinstance(row[k], int) and row[k] > 0, k
    assert row["flops_unsupported"] == [] and row["mem_kind"] == "cpu_estimate"
    assert row["step_ms"] > 0 and row["tokens_per_s"] > 0 and row["mfu"] > 0


class _Exploding(torch.nn.Module):
    io = "lm"

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        logits = torch.zeros(*x.shape, 8) * self.w
        return ModelOutput(logits + (float("nan") if self.w.grad is not None else 0.0))


def test_nan_loss_is_diverged_with_step() -> None:
    from harness.core.registry import TASKS

    task = TASKS.get("copy").obj(TASKS.get("copy").config(seq_len=3, vocab=4))
    cfg = vars(TrainConfig(steps=5, batch_size=2, eval_every=5)) | {"betas": [0.9, 0.98]}
    out = train(_Exploding(), task, cfg, seed=0, device=torch.device("cpu"))
    assert out.status == "diverged"
    assert out.error == "loss became nan at step 1"
    assert not math.isnan(out.train_s)


CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
           "you tried to allocate 13194139533312 bytes. Error code 12 (Cannot allocate memory)")
CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"
AT = "out of memory at seq_len=4 batch_size=8: "  # the job's training length and batch size
FAILURES = {  # what building the model raised -> the row's status and error
    "cpu_allocator": (RuntimeError(CPU_OOM), "oom", f"{AT}RuntimeError: {CPU_OOM}"),
    "cuda": (torch.OutOfMemoryError(CUDA_OOM), "oom", f"{AT}OutOfMemoryError: {CUDA_OOM}"),
    "python": (MemoryError("no room for activations"), "oom", f"{AT}MemoryError: no room for activations"),
    "other": (ValueError("no kernel for this shape\nsecond line of detail"), "error",
              "ValueError: no kernel for this shape"),
}


def _failing_build(monkeypatch: pytest.MonkeyPatch, failures: dict[str, BaseException]) -> None:
    """Building the model of variant ``v`` raises ``failures[v]`` (the other variants build as usual):
    the same failure on every machine, whatever its memory, and nothing allocated."""
    from harness.run import execute

    real_build = execute.build_job

    def build(job: Any) -> Any:
        if job.variant in failures:
            raise failures[job.variant]
        return real_build(job)

    monkeypatch.setattr(execute, "build_job", build)


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_a_failing_job_is_a_row_that_says_why(
    case: str, tiny_suite: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Out of memory (CUDA's, the CPU allocator's, Python's) is ``oom`` naming the size that failed;
    any other exception is ``error`` with its first line. Either way the job returns its row."""
    from harness.run.execute import execute

    exc, status, error = FAILURES[case]
    _failing_build(monkeypatch, {"big": exc})
    big = [{"name": "big", "model": "vanilla"}]
    job = load_suite(tiny_suite(ONE_VARIANT, baseline="big", variants=big)).jobs[0]
    row = execute(job)
    assert (row["status"], row["error"]) == (status, error)
    assert row["run_id"] == job.run_id and row["variant"] == "big"


def test_failing_jobs_are_recorded_and_suite_goes_on(
    tiny_suite: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.results.store import read_rows
    from harness.run.orchestrate import run_suite

    exc, _, oom_error = FAILURES["cpu_allocator"]
    _failing_build(monkeypatch, {"big": exc, "broken": FAILURES["other"][0]})
    # the failures first: the job after them still runs (three different jobs, one key apart)
    variants = [{"name": "big", "model": "vanilla", "n_layers": 2}, {"name": "broken", "model": "vanilla",
                "norm": "pre"}, {"name": "a", "model": "vanilla"}]
    path = tiny_suite(ONE_VARIANT, variants=variants)
    suite = load_suite(path, ["train.steps=2", "train.warmup_steps=0", "train.eval_every=1"])
    summary = run_suite(suite, path.parent / "res", quiet=True)
    assert summary.ran == 3 and summary.statuses == {"oom": 1, "error": 1, "ok": 1}
    rows = {r["variant"]: r for r in read_rows(summary.results_path)}
    assert (rows["big"]["status"], rows["big"]["error"]) == ("oom", oom_error)
    assert (rows["broken"]["status"], rows["broken"]["error"]) == ("error", FAILURES["other"][2])
    assert rows["a"]["status"] == "ok" and rows["a"]["error"] is None
