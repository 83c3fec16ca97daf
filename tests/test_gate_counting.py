"""Instructions per training step, counted under valgrind's callgrind (harness.cli.gate.counting): the
same step counted twice gives the same count, and a slowdown of about 3% planted in one model's forward
(tests/gate_planted.py) fails the gate, which names the model and the size of the change.

One valgrind process counts every subject (importing torch under valgrind takes a minute or more).
Without valgrind or pytest-codspeed these tests are skipped, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.cli.gate.command import DEFAULT_INSTRUCTIONS_TOLERANCE
from harness.cli.gate.compare import compare, findings_table
from harness.cli.gate.counting import count_instructions
from harness.measure.instructions import read_counts, unavailable

PLANTED = Path(__file__).with_name("gate_planted.py")
WHY = unavailable()
if WHY and os.environ.get("CI") == "true":
    raise RuntimeError(f"CI=true: the gate's counting tests need valgrind and pytest-codspeed: {WHY}")
needs_callgrind = pytest.mark.skipif(WHY is not None, reason=f"cannot count instructions here: {WHY}")


@pytest.fixture(scope="module")
def counted() -> dict:
    return count_instructions(f"{PLANTED}:subjects", ["post", "pre", "post-again", "post-slower"], jobs=2)


@pytest.mark.slow
@needs_callgrind
def test_the_same_step_counted_twice_gives_the_same_count(counted: dict) -> None:
    n = counted["instructions"]
    print(n)
    assert n["post"] > 1_000_000 and counted["jobs"] == 2
    assert abs(n["post-again"] - n["post"]) <= DEFAULT_INSTRUCTIONS_TOLERANCE * n["post"], n
    assert n["pre"] != n["post"]  # another model, another count


@pytest.mark.slow
@needs_callgrind
def test_a_planted_slowdown_of_three_percent_fails_naming_the_model(counted: dict) -> None:
    n = counted["instructions"]
    costs = {"model": "vanilla", "shape": "s", "params": 1, "params_applied": 1, "flops_fwd": 1,
             "act_bytes": 1, "mem_bytes": 1, "mem_kind": "cpu_estimate", "reference": "post"}
    base = {"post": {**costs, "instructions": n["post"]}, "pre": {**costs, "instructions": n["pre"]}}
    now = {"post": {**costs, "instructions": n["post-slower"]}, "pre": {**costs, "instructions": n["pre"]}}
    findings = compare(base, now, time_tolerance=0.35, reference="post",
                       instructions_tolerance=DEFAULT_INSTRUCTIONS_TOLERANCE)
    print(findings_table(findings))
    bad = [f for f in findings if f.regression]
    assert [(f.model, f.quantity) for f in bad] == [("post", "instructions")], findings_table(findings)
    size = (n["post-slower"] - n["post"]) / n["post"]
    assert 0.02 < size < 0.045, size  # about 3% of the step
    assert bad[0].change() == f"{size * 100:+.2f}%"


def test_dumps_are_read_by_name(tmp_path: Path) -> None:
    for i, (name, total) in enumerate([("(before) a", 99), ("a", 120), ("b c", 7)], start=1):
        (tmp_path / f"cg.out.{i}").write_text(f"desc: Trigger: Client Request: {name}\nsummary: 0\n"
                                              f"totals: {total}\n")
    (tmp_path / "cg.out").write_text("desc: Trigger: Program termination\ntotals: 5\n")
    assert read_counts(tmp_path / "cg.out") == {"a": 120, "b c": 7}
