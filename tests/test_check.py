"""``harness check``: the gate catches a model twice as memory-hungry, judges time ratios by its
tolerance and confirms a slowdown before failing (hand-made ratios: no test here depends on measured
wall-clock time), measures the same costs on reruns, and a tampered baseline makes the real CLI exit 1.

The checks on real timings (a 1.5x slower model is caught; five reruns of unchanged code raise no false
alarm) are in benchmarks/test_check_gate.py, run by ``make bench``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tiny_suites import section_only
from torch import nn

from harness.cli.gate.baseline import does_not_apply, load_baseline, machine_kind
from harness.cli.gate.command import DEFAULT_INSTRUCTIONS_TOLERANCE, DEFAULT_TIME_TOLERANCE, compare_confirmed
from harness.cli.gate.compare import compare, findings_table
from harness.cli.gate.subjects import Subject, suite_subjects
from harness.cli.gate.wallclock import measure, median_interval
from harness.cli.main import main
from harness.suite.load import load_suite
from harness.tasks.base import Batch

ROOT = Path(__file__).resolve().parent.parent
EXE = str(Path(sys.executable).parent / "harness")
WIDTH, ROWS, DEPTH = 256, 512, 4


class Stack(nn.Module):
    """DEPTH tanh layers of width WIDTH, applied in the order ``passes`` (a layer may be applied twice)."""

    def __init__(self, passes: tuple[int, ...] = tuple(range(DEPTH))) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(DEPTH))
        self.passes = passes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in self.passes:
            x = torch.tanh(self.layers[i](x))
        return x


class Hungry(nn.Module):
    """The same model keeping a second copy of every tensor autograd saves for backward: the same
    parameters, FLOPs and speed (near enough), twice the activation memory."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autograd.graph.saved_tensors_hooks(lambda t: (t, t.clone()), lambda packed: packed[0]):
            return self.inner(x)


def _subject(name: str, build: type | object) -> Subject:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(ROWS, WIDTH, generator=gen)
    batch = Batch({"x": x}, torch.zeros(ROWS), n_tokens=WIDTH, seq_len=WIDTH)
    return Subject(name, build, batch, SquareLoss(), {}, f"rows={ROWS}", "stack")


class SquareLoss:
    """A task stand-in for the gate's step: the mean square of the output."""

    @staticmethod
    def loss(out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return (out**2).mean()


NORMAL = [_subject("ref", Stack), _subject("m", Stack)]
TOLERANCES = {"time_rel": DEFAULT_TIME_TOLERANCE, "instructions": DEFAULT_INSTRUCTIONS_TOLERANCE}


def _verdict(findings: list, model: str, quantity: str) -> str:
    return next(f.verdict for f in findings if f.model == model and f.quantity == quantity)


@pytest.fixture(scope="module")
def normal() -> dict:
    return measure(NORMAL, "ref", rounds=1)  # costs are compared, not times


def test_twice_the_memory_is_caught(normal: dict) -> None:
    now = measure([NORMAL[0], _subject("m", lambda: Hungry(Stack()))], "ref", rounds=1)
    assert now["m"]["act_bytes"] >= 2 * normal["m"]["act_bytes"]
    findings = compare(normal, now, time_tolerance=DEFAULT_TIME_TOLERANCE, reference="ref")
    print(findings_table(findings))
    assert _verdict(findings, "m", "act_bytes") == "REGRESSION"
    assert _verdict(findings, "m", "mem_bytes") == "REGRESSION"
    assert _verdict(findings, "m", "params") == "same" and _verdict(findings, "m", "flops_fwd") == "same"
    assert not any(f.regression for f in findings if f.model == "ref")


def _timed(**ratios: float) -> dict[str, dict]:
    """Hand-made measurements: equal costs, the given step-time ratios against "ref"."""
    costs = {"model": "stack", "shape": "rows=512", "params": 10, "params_applied": 10, "flops_fwd": 100,
             "act_bytes": 1000, "mem_bytes": 2000, "mem_kind": "cpu_estimate", "reference": "ref"}
    return {"ref": {**costs, "time_rel": 1.0}, **{m: {**costs, "time_rel": r} for m, r in ratios.items()}}


def test_time_ratio_verdicts_from_hand_made_numbers() -> None:
    """Beyond the tolerance a ratio is a regression (slower) or an improvement (faster); within, ok."""
    base = _timed(m=1.2)
    tol = DEFAULT_TIME_TOLERANCE
    cases = {1.2 * 1.5: "REGRESSION", 1.2 * (1 + tol) * 1.01: "REGRESSION", 1.2 * (1 + tol) * 0.99: "ok",
             1.2: "ok", 1.2 * (1 - tol) * 1.01: "ok", 1.2 * (1 - tol) * 0.99: "improved"}
    for ratio, verdict in cases.items():
        findings = compare(base, _timed(m=ratio), time_tolerance=tol, reference="ref")
        assert _verdict(findings, "m", "time_rel") == verdict, (ratio, findings_table(findings))
        assert _verdict(findings, "m", "params") == "same" and _verdict(findings, "m", "act_bytes") == "same"
        assert not [f for f in findings if f.model == "ref" and f.quantity == "time_rel"]  # the reference


def test_a_slowdown_must_show_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A time regression is timed again and the lower of the two ratios counts."""
    import harness.cli.gate.command

    base = _timed(m=1.0, k=1.0)
    second = {"m": {"time_rel": 1.1, "time_rel_low": 1.05, "time_rel_high": 1.2},
              "k": {"time_rel": 1.8, "time_rel_low": 1.75, "time_rel_high": 1.9},
              "ref": {"time_rel": 1.0, "time_rel_low": 1.0, "time_rel_high": 1.0}}
    timed_again: list[list[str]] = []

    def again(subjects: list[Subject], *_args: object) -> dict:
        timed_again.append(sorted(s.name for s in subjects))
        return second

    monkeypatch.setattr(harness.cli.gate.command, "measure_relative_time", again)
    subjects = [_subject(n, Stack) for n in ("ref", "m", "k", "fine")]
    for s in subjects:
        s.reference = "ref"
    now = _timed(m=1.6, k=1.7, fine=1.0)
    findings = compare_confirmed(base, now, subjects, "ref", TOLERANCES, 3, "cpu", counts_apply=True,
                                 confirm=True, out=sys.stdout)
    assert timed_again == [["k", "m", "ref"]]  # the suspects and their reference, nothing else
    assert _verdict(findings, "m", "time_rel") == "ok" and now["m"]["time_rel"] == 1.1  # noise, once
    assert _verdict(findings, "k", "time_rel") == "REGRESSION" and now["k"]["time_rel"] == 1.7  # twice
    assert now["k"]["time_rel_first"] == 1.7 and "time_rel_first" not in now["fine"]
    unconfirmed = compare_confirmed(base, _timed(m=1.6), subjects, "ref", TOLERANCES, 3, "cpu",
                                    counts_apply=True, confirm=False, out=sys.stdout)  # --update: not again
    assert _verdict(unconfirmed, "m", "time_rel") == "REGRESSION" and len(timed_again) == 1


# the tiny suite as a check gate: post-norm (the reference), pre-norm and a universal transformer,
# two layers wide enough to time, profiled at two lengths
GATE = dict(
    name="gate",
    seeds=[0],
    baseline="post",
    train=section_only("train", steps=1, batch_size=8),
    model={"d_model": 32, "d_ff": 64, "n_layers": 2, "dropout": 0.0},
    tasks=[{"task": "copy", "seq_len": 8, "vocab": 8}],
    variants=[{"name": "post", "model": "vanilla", "norm": "post"},
              {"name": "pre", "model": "vanilla", "norm": "pre"},
              {"name": "ut", "model": "universal"}],
    profile={"seq_lens": [16, 32], "batch_size": 8},
)


def test_reruns_measure_the_same_costs(tiny_suite: Callable[..., Path]) -> None:
    """Parameters, FLOPs and memory are deterministic: a rerun of unchanged code moves none of them.
    (That the time ratios raise no false alarm over five reruns is benchmarks/test_check_gate.py's.)"""
    subjects, reference = suite_subjects(load_suite(tiny_suite(GATE)))
    assert reference == "post" and [s.name for s in subjects] == ["post", "pre", "ut"]
    assert all("seq_len=16 batch_size=8" in s.shape for s in subjects)  # the sweep's smallest cell
    base = measure(subjects, reference, rounds=1)
    for _ in range(2):
        now = measure(subjects, reference, rounds=1)
        findings = compare(base, now, time_tolerance=DEFAULT_TIME_TOLERANCE, reference=reference)
        # the deterministic quantities did not move at all
        fixed = [f for f in findings if f.quantity != "time_rel"]
        assert all(f.verdict == "same" for f in fixed), findings_table(findings)


def test_without_profile_section_the_training_batch_is_profiled(tiny_suite: Callable[..., Path]) -> None:
    suite = load_suite(tiny_suite(GATE, profile=None))
    subjects, _ = suite_subjects(suite)
    assert all("(training batch)" in s.shape and "batch_size=8" in s.shape for s in subjects)


@pytest.mark.slow
def test_tampered_baseline_fails_the_real_cli(
    tmp_path: Path, tiny_suite: Callable[..., Path], capsys: pytest.CaptureFixture[str],
) -> None:
    suite, baseline = tiny_suite(GATE), tmp_path / "baseline.json"
    assert main(["check", str(suite), "--baseline", str(baseline), "--update", "--reason", "a test",
                 "--allow-dirty", "--no-count", "--repeats", "3"]) == 0
    assert "baseline written" in capsys.readouterr().out
    data = load_baseline(baseline)
    assert set(data["models"]) == {"post", "pre", "ut"}
    assert data["tolerance"]["time_rel"] == DEFAULT_TIME_TOLERANCE
    true_mem = data["models"]["pre"]["mem_bytes"]
    data["models"]["pre"]["mem_bytes"] = true_mem // 2
    baseline.write_text(json.dumps(data))
    proc = subprocess.run([EXE, "check", str(suite), "--baseline", str(baseline), "--repeats", "3",
                           "--no-count"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if "REGRESSION" in ln)
    assert "pre mem_bytes" in line and f"{true_mem // 2:,} -> {true_mem:,}" in line, line
    assert "+100.0%" in line and "more memory" in line, line
    assert "pre" in proc.stdout and "mem_bytes" in proc.stdout  # the table names it too


def test_bad_baseline_is_bad_input(
    tmp_path: Path, tiny_suite: Callable[..., Path], capsys: pytest.CaptureFixture[str],
) -> None:
    suite = tiny_suite(GATE)
    assert main(["check", str(suite), "--baseline", str(tmp_path / "none.json")]) == 2
    assert "harness check --update" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("{}")
    assert main(["check", str(suite), "--baseline", str(tmp_path / "junk.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a harness check baseline" in err[0]


def test_committed_baseline_covers_quick_suite() -> None:
    """Made on purpose: from a commit, with a reason, every variant of quick.yaml counted."""
    data = load_baseline(ROOT / "results" / "baseline.json")
    quick = load_suite(ROOT / "suites" / "quick.yaml")
    assert data["suite"] == quick.name and data["device"] == "cpu"
    assert data["commit"] and not data["dirty"] and data["reason"]
    assert set(data["models"]) == set(quick.variants)
    assert 0 < data["tolerance"]["time_rel"] < 1 and 0 <= data["tolerance"]["instructions"] < 0.03
    assert set(data["machine"]) >= {"cpu", "cpu_capability", "counted_capability", "valgrind", "libraries"}
    for name, m in data["models"].items():
        for k in ("params", "params_applied", "flops_fwd", "act_bytes", "mem_bytes", "time_rel", "shape",
                  "instructions", "time_rel_low", "time_rel_high"):
            assert m.get(k) is not None, (name, k)
        assert m["reference"] in data["models"]
        if m["reference"] == name:
            assert m["time_rel"] == 1.0


def test_median_interval_is_a_pair_of_order_statistics() -> None:
    xs = [float(i) for i in range(1, 16)]  # 15 rounds: 2 P(B <= 3) = 3.5% outside [x_(4), x_(12)]
    assert median_interval(xs[::-1]) == (8.0, 4.0, 12.0)
    assert median_interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (3.0, 1.0, 5.0)  # too few: the whole range
    assert median_interval([2.0]) == (2.0, 2.0, 2.0)


def test_time_ratio_gates_only_beyond_its_interval() -> None:
    """A median far above the baseline passes while the interval reaches back within the tolerance."""
    base = _timed(m=1.0)
    tol = DEFAULT_TIME_TOLERANCE
    for (mid, low, high), verdict in {(1.6, 1.3, 1.9): "ok", (1.6, 1.36, 1.9): "REGRESSION",
                                      (1.0, 0.8, 1.2): "ok", (0.5, 0.4, 0.64): "improved",
                                      (0.5, 0.4, 0.66): "ok"}.items():
        now = _timed(m=mid)
        now["m"].update(time_rel_low=low, time_rel_high=high)
        findings = compare(base, now, time_tolerance=tol, reference="ref")
        assert _verdict(findings, "m", "time_rel") == verdict, (mid, low, high, findings_table(findings))


def test_instruction_counts_are_judged_by_their_tolerance() -> None:
    base = _timed(m=1.0)
    base["m"]["instructions"] = 1_000_000
    tol = DEFAULT_INSTRUCTIONS_TOLERANCE
    for n, verdict in {1_000_000: "same", int(1e6 * (1 + tol * 0.9)): "ok", 1_030_000: "REGRESSION",
                       int(1e6 * (1 - tol * 1.1)): "improved"}.items():
        now = _timed(m=1.0)
        now["m"]["instructions"] = n
        findings = compare(base, now, time_tolerance=0.35, reference="ref", instructions_tolerance=tol)
        assert _verdict(findings, "m", "instructions") == verdict, n
    now["m"]["instructions"] = 1_030_000
    bad = next(f for f in compare(base, now, time_tolerance=0.35, reference="ref", instructions_tolerance=tol)
               if f.quantity == "instructions")
    assert bad.regression and bad.change() == "+3.00%"
    # where the baseline's counts do not apply, no instruction finding at all: the wall clock decides
    unapplied = compare(base, now, time_tolerance=0.35, reference="ref")
    assert not [f for f in unapplied if f.quantity == "instructions"]


def test_another_machine_or_build_does_not_apply() -> None:
    here = machine_kind("AVX2")
    assert does_not_apply(here, dict(here)) is None
    assert does_not_apply(None, here) == "the baseline has no instruction counts"
    other = {**here, "cpu": "Some Other CPU", "libraries": {**here["libraries"], "torch": "9.9.9"}}
    why = does_not_apply(other, here)
    assert "cpu Some Other CPU -> " in why and "torch 9.9.9 -> " in why, why


def test_update_needs_a_reason_and_a_clean_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str],
                                                tiny_suite: Callable[..., Path]) -> None:
    import harness.results.provenance

    suite, baseline = tiny_suite(GATE), tmp_path / "baseline.json"
    assert main(["check", str(suite), "--baseline", str(baseline), "--update"]) == 2
    assert "--update needs --reason TEXT" in capsys.readouterr().err
    dirty = ("0123abcd", ["harness/models/x.py"])
    monkeypatch.setattr(harness.results.provenance, "git_state", lambda: dirty)
    assert main(["check", str(suite), "--baseline", str(baseline), "--update", "--reason", "why"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refuses a dirty tree" in err[0] and "harness/models/x.py" in err[0], err
    assert not baseline.exists()
