"""``harness prune`` and the task config's headline ``metric`` (issue 12, part 5).

Prune drops the rows of jobs a suite no longer expands to (after a task or variant changed), so the
report does not mix old and new settings; the file is rewritten atomically under the store's lock.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.core.errors import InputError
from harness.core.registry import TASKS
from harness.results.store import ResultStore, prune_rows, read_rows
from harness.suite.load import load_suite

# the tiny suite with one variant trained for two steps on copy (no cost sweep), its task's keys apart
COPY = {"name": "copy", "task": "copy", "seq_len": 4, "min_len": 2, "test_len": 6, "vocab": 4}
PRUNE = dict(
    baseline=None,
    train={"steps": 2, "lr": 1.0e-3, "warmup_steps": 0, "eval_every": 2, "eval_batch_size": 4,
           "profile_steps": None, "profile_warmup": None},
    model={"dropout": 0.0},
    tasks=[COPY],
    variants=[{"name": "vanilla", "model": "vanilla"}],
    profile=None,
)


def _with_task_keys(**keys: object) -> dict[str, object]:
    """PRUNE with ``keys`` added to its task (a ``None`` is written: ``metric: null``)."""
    return PRUNE | {"tasks": [COPY | keys]}


def test_prune_rows_keeps_listed_ids_and_rows_without_one(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    store = ResultStore(path)
    for rid in ("a", "old", "b", "a"):
        store.append({"run_id": rid, "variant": rid})
    store.append({"note": "no run_id"})
    with path.open("ab") as f:
        f.write(b"{torn\n")
    before = path.read_bytes()
    dropped = prune_rows(path, {"a", "b"}, dry_run=True)
    assert [r.get("run_id") for r in dropped] == ["old", None]  # the stale row, then the unreadable line
    assert path.read_bytes() == before  # a dry run changes nothing
    dropped = prune_rows(path, {"a", "b"})
    assert [r.get("run_id") for r in dropped] == ["old", None]
    assert [r.get("run_id") for r in read_rows(path)] == ["a", "b", "a", None]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.jsonl"]  # no temporary file left behind
    assert prune_rows(path, {"a", "b"}) == []  # idempotent
    store.append({"run_id": "c"})  # the store appends to the replaced file
    assert [r.get("run_id") for r in read_rows(path)][-1] == "c"
    assert prune_rows(tmp_path / "missing.jsonl", {"a"}) == []


def test_prune_command_drops_what_the_suite_no_longer_expands_to(
    tmp_path: Path, tiny_suite: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    suite = load_suite(tiny_suite(PRUNE))
    res = tmp_path / "res"
    store = ResultStore(res / "tiny.jsonl")
    for job in suite.jobs:
        store.append({"run_id": job.run_id, "variant": job.variant, "task": job.task_name, "seed": job.seed})
    store.append({"run_id": "stale0000000000", "variant": "gone", "task": "copy", "seed": 0,
                  "status": "ok"})
    assert main(["prune", str(tmp_path / "tiny.yaml"), "--results-dir", str(res), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "stale0000000000" in out and "gone" in out and "would drop 1 row" in err
    assert len(list(read_rows(res / "tiny.jsonl"))) == 3
    assert main(["prune", str(tmp_path / "tiny.yaml"), "--results-dir", str(res)]) == 0
    assert "dropped 1 row" in capsys.readouterr().err
    assert {r["run_id"] for r in read_rows(res / "tiny.jsonl")} == {j.run_id for j in suite.jobs}
    assert main(["prune", str(tmp_path / "nope.yaml")]) == 2


def test_task_metric_chooses_the_headline_and_leaves_old_run_ids(tiny_suite: Callable[..., Path]) -> None:
    entry = TASKS.get("copy")
    assert entry.obj(entry.config(seq_len=4)).metric == "seq_acc"
    assert entry.obj(entry.config(seq_len=4, metric="tok_acc")).metric == "tok_acc"
    assert TASKS.get("binary_addition").config(seq_len=5, metric="tok_acc").check() == []
    with pytest.raises(InputError, match="metric"):
        load_suite(tiny_suite(_with_task_keys(metric="loss")))
    plain = load_suite(tiny_suite(PRUNE)).jobs
    explicit = load_suite(tiny_suite(_with_task_keys(metric=None))).jobs
    tok = load_suite(tiny_suite(_with_task_keys(metric="tok_acc"))).jobs
    # identity version 2 hashes every task key; an unset metric is null either way
    assert [j.run_id for j in plain] == [j.run_id for j in explicit]
    assert {j.run_id for j in plain}.isdisjoint(j.run_id for j in tok)


@pytest.mark.slow
def test_task_metric_is_the_rows_headline(tmp_path: Path, tiny_suite: Callable[..., Path]) -> None:
    path = tiny_suite(_with_task_keys(metric="tok_acc"))
    res = tmp_path / "res"
    assert main(["run", str(path), "seeds=[0]", "--results-dir", str(res), "--no-report"]) == 0
    (row,) = read_rows(res / "tiny.jsonl")
    assert row["metric"] == "tok_acc" and row["value"] == row["metrics"]["tok_acc"]


def test_prune_keeps_rows_of_another_device_or_precision(
    tmp_path: Path, tiny_suite: Callable[..., Path],
) -> None:
    """A results file may hold a suite's CPU rows and its CUDA or bf16 rows (other run_ids): pruning with
    the default device judges only the CPU fp32 rows; `--device cuda` judges the CUDA ones."""
    path = tiny_suite(PRUNE)
    res = tmp_path / "res"
    store = ResultStore(res / "tiny.jsonl")
    for device, extra in (("cpu", []), ("cuda", []), ("cpu", ["train.precision=bf16"])):
        for job in load_suite(path, extra, device=device).jobs:
            store.append({"run_id": job.run_id, "variant": job.variant, "config": job.config()})
    store.append({"run_id": "stale-cuda", "variant": "gone", "config": {"device": "cuda", "train": {}}})
    assert main(["prune", str(path), "--results-dir", str(res)]) == 0
    assert len(list(read_rows(res / "tiny.jsonl"))) == 7  # nothing of this expansion is stale
    assert main(["prune", str(path), "--device", "cuda", "--results-dir", str(res)]) == 0
    ids = [r["run_id"] for r in read_rows(res / "tiny.jsonl")]
    assert len(ids) == 6 and "stale-cuda" not in ids
