"""The ``harness check`` gate on real timings, with pytest-benchmark (``make bench`` runs this file).

Moved here from tests/test_check.py, because they depend on the machine's wall-clock timings, which a
test must not (a loaded machine would fail it): a model doing 1.5x the work of the baseline's is caught
as a time regression, and five reruns of unchanged code raise no false alarm. The benchmark fixture
times one gate measurement; the assertions are the gate's verdicts.

    pytest benchmarks/test_check_gate.py --benchmark-only
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.cli.gate.command import DEFAULT_TIME_TOLERANCE
from harness.cli.gate.compare import compare, findings_table
from harness.cli.gate.subjects import Subject, suite_subjects
from harness.cli.gate.wallclock import measure
from harness.suite.load import load_suite
from harness.tasks.base import Batch

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


def _subject(name: str, build: Any) -> Subject:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(ROWS, WIDTH, generator=gen)
    batch = Batch({"x": x}, torch.zeros(ROWS), n_tokens=WIDTH, seq_len=WIDTH)
    return Subject(name, build, batch, SquareLoss(), {}, f"rows={ROWS}", "stack")


class SquareLoss:
    """A task stand-in for the gate's step: the mean square of the output."""

    @staticmethod
    def loss(out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return (out**2).mean()


def _verdict(findings: list, model: str, quantity: str) -> str:
    return next(f.verdict for f in findings if f.model == model and f.quantity == quantity)


def test_one_and_a_half_times_slower_is_caught(benchmark: Any) -> None:
    ref = _subject("ref", Stack)
    normal = measure([ref, _subject("m", Stack)], "ref", rounds=9)
    slow = (*range(DEPTH), 2, 3)  # layers 2 and 3 applied twice: 1.5x the forward and backward work
    now = benchmark.pedantic(measure, args=([ref, _subject("m", lambda: Stack(slow))], "ref"),
                             kwargs={"rounds": 9}, rounds=1, iterations=1)
    findings = compare(normal, now, time_tolerance=DEFAULT_TIME_TOLERANCE, reference="ref")
    print(findings_table(findings))
    ratios = (normal["m"]["time_rel"], now["m"]["time_rel"])
    assert _verdict(findings, "m", "time_rel") == "REGRESSION", ratios
    assert _verdict(findings, "m", "params") == "same"


TINY = """\
name: gate
seeds: [0]
baseline: post
train: {steps: 1, batch_size: 8}
model: {d_model: 32, n_heads: 2, d_ff: 64, n_layers: 2, dropout: 0.0}
tasks:
  - {task: copy, seq_len: 8, vocab: 8}
variants:
  - {name: post, model: vanilla, norm: post}
  - {name: pre, model: vanilla, norm: pre}
  - {name: ut, model: universal}
profile: {seq_lens: [16, 32], batch_size: 8}
"""


def test_five_reruns_raise_no_false_alarm(tmp_path: Path, benchmark: Any) -> None:
    suite = tmp_path / "gate.yaml"
    suite.write_text(TINY)
    subjects, reference = suite_subjects(load_suite(suite))
    base = benchmark.pedantic(measure, args=(subjects, reference), rounds=1, iterations=1)
    for _ in range(5):
        now = measure(subjects, reference)
        findings = compare(base, now, time_tolerance=DEFAULT_TIME_TOLERANCE, reference=reference)
        assert not [f for f in findings if f.regression], findings_table(findings)
