"""benchmarks/bench_side_by_side.py on the quick suite's sweep (a run of a few seconds, checked for its
bookkeeping: which cells it measures and what it divides by what, not for speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_side_by_side.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_side_by_side_measures_the_suites_cells_and_divides_by_the_references() -> None:
    out = _run("suites/quick.yaml", "--at", "64", "--variants", "vanilla-post", "rse", "reformer",
               "--rounds", "2", "--steps", "1", "--json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert list(res["variants"]) == ["vanilla-post", "reformer", "rse"]  # suite order
    refs = res["references"]
    assert refs == ["vanilla-post"]  # quick names no references: its vanilla variants among those measured
    ref = res["variants"]["vanilla-post"]
    for v in res["variants"].values():
        assert v["act_bytes"] > 0 and v["min_step_ms"] <= v["median_step_ms"]
        assert v["step_ratio"]["vanilla-post"] == v["median_step_ms"] / ref["median_step_ms"]
        assert v["act_ratio"]["vanilla-post"] == v["act_bytes"] / ref["act_bytes"]
    assert res["variants"]["rse"]["model"] == "shuffle_exchange"


def test_side_by_side_refuses_a_size_the_suite_does_not_profile() -> None:
    out = _run("suites/quick.yaml", "--at", "100", "--rounds", "1", "--steps", "1")
    assert out.returncode == 2
    assert "no profile job at 100" in out.stderr and "[64, 128, 256]" in out.stderr
