"""Results file: whole lines only, torn tails repaired, SIGKILL loses at most the job in flight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.results.store import ResultStore, load_results, read_rows


def test_append_and_read_back(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "s.jsonl")
    store.append({"run_id": "a", "value": 0.5, "nan": float("nan")})
    store.append({"run_id": "b", "value": 1})
    rows = list(store.rows())
    assert [r["run_id"] for r in rows] == ["a", "b"]
    assert rows[0]["nan"] is None  # strict JSON: NaN written as null
    assert store.done_ids() == {"a", "b"}


def test_torn_tail_is_skipped_then_repaired(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    store = ResultStore(path)
    store.append({"run_id": "a"})
    with path.open("ab") as f:
        f.write(b'{"run_id": "torn", "val')  # a writer died mid-line (e.g. disk full)
    assert [r["run_id"] for r in read_rows(path)] == ["a"]
    store.append({"run_id": "b"})
    lines = path.read_bytes().splitlines()
    assert [json.loads(x)["run_id"] for x in lines] == ["a", "b"]


def test_load_results_keeps_last_row_per_run_id(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "s.jsonl")
    store.append({"run_id": "a", "value": 1})
    store.append({"run_id": "a", "value": 2})
    df = load_results(tmp_path)
    assert len(df) == 1 and df.iloc[0]["value"] == 2


# the tiny suite with four seeds and 60 steps a job (long enough for the kill to land mid-suite)
KILLME = dict(
    name="killme",
    seeds=[0, 1, 2, 3],
    baseline=None,
    train={"steps": 60, "batch_size": 8, "lr": None, "warmup_steps": None, "eval_every": 30},
    profile=None,
)


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_bytes().splitlines()]  # every line must parse


@pytest.mark.slow
def test_sigkill_then_rerun_finds_every_job_once(tmp_path: Path, tiny_suite: Callable[..., Path]) -> None:
    suite = tiny_suite(KILLME)
    results = tmp_path / "results"
    exe = str(Path(sys.executable).parent / "harness")
    cmd = [exe, "run", str(suite), "--results-dir", str(results), "--report-dir", str(tmp_path / "rep"),
           "--no-report"]
    path = results / "killme.jsonl"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(_lines(path)) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _lines(path)
    assert 2 <= len(before) < 8, "the kill should land mid-suite"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    after = _lines(path)
    ids = [r["run_id"] for r in after]
    assert len(ids) == 8 and len(set(ids)) == 8
    assert ids[: len(before)] == [r["run_id"] for r in before]  # finished rows were kept, not redone
    assert all(r["status"] == "ok" for r in after)
    # a third run trains nothing
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and len(_lines(path)) == 8
    assert "0 job(s) run, 8 already" in again.stderr
