"""``harness verify`` and the recorded thread count.

A tiny suite is trained by the harness itself (a few steps); its rows then verify bit for bit, and a
planted change to one committed row (a metric, a parameter count) is reported with exit 1, naming the
row and the field. Jobs run at their ``train.threads`` setting, which each row records and which stays
out of the run_id at its default.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from tiny_suites import write_tiny_suite

from harness.cli.main import main
from harness.cli.verify import ABS_TOL, draw_sample, job_cost
from harness.results.rows import ResultRow, migrate
from harness.results.store import read_rows
from harness.run.executors import run_in_worker
from harness.suite.load import load_suite

# the tiny suite trained for 12 steps with dropout, so that a verified row has a curve and a random stream
VTINY = dict(
    name="vtiny",
    train={"steps": 12, "batch_size": 8, "warmup_steps": 2, "eval_every": 6, "eval_batch_size": 16},
    model={"dropout": 0.1},
)
N_JOBS = 6  # 2 variants x 2 seeds, and 2 profile cells


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_suite(tmp_path_factory.mktemp("suite"), VTINY)


@pytest.fixture(scope="module")
def committed(suite_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(suite file, results folder) of a tiny suite the harness trained: the 'committed' rows."""
    res = tmp_path_factory.mktemp("committed") / "res"
    assert main(["run", str(suite_file), "--results-dir", str(res), "--no-report"]) == 0
    return suite_file, res


def _copy(committed: tuple[Path, Path], tmp_path: Path) -> Path:
    res = tmp_path / "res"
    shutil.copytree(committed[1], res)
    return res


def _rewrite(path: Path, change: Any) -> dict[str, Any]:
    """Apply ``change`` to the first training row of a results file; return that row as changed."""
    rows = list(read_rows(path))
    target = next(r for r in rows if r["job"] == "train")
    change(target)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return target


@pytest.mark.slow
def test_unchanged_rows_verify_bit_for_bit(committed: tuple[Path, Path], capsys: Any) -> None:
    suite, res = committed
    before = (res / "vtiny.jsonl").read_bytes()
    listing = sorted(str(p.relative_to(res)) for p in res.rglob("*"))  # the run's file and its .leases/
    code = main(["verify", str(suite), "--results-dir", str(res), "--sample", str(N_JOBS), "--table"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"all {N_JOBS} sampled row(s) reproduced" in out.splitlines()[-1]
    assert "metrics compared bit for bit at 1 thread(s)" in out
    assert "DIFFERS" not in out and "metrics.tok_acc" in out and "curve" in out and "flops_fwd" in out
    assert (res / "vtiny.jsonl").read_bytes() == before  # the committed file is only read
    assert sorted(str(p.relative_to(res)) for p in res.rglob("*")) == listing  # verify wrote nothing here


@pytest.mark.slow
@pytest.mark.parametrize("field", ["metrics.tok_acc", "params"])
def test_a_planted_change_exits_1_naming_row_and_field(
    committed: tuple[Path, Path], tmp_path: Path, capsys: Any, field: str,
) -> None:
    res = _copy(committed, tmp_path)

    def change(row: dict[str, Any]) -> None:
        if field == "params":
            row["params"] += 1
        else:
            row["metrics"]["tok_acc"] = row["metrics"]["tok_acc"] + 2.0**-40  # the last bits only

    planted = _rewrite(res / "vtiny.jsonl", change)
    code = main(["verify", str(committed[0]), "--results-dir", str(res), "--sample", str(N_JOBS)])
    out = capsys.readouterr().out
    assert code == 1, out
    verdict = out.splitlines()[-1]
    assert "MISMATCH in 1 of 6" in verdict
    for name in (planted["run_id"], planted["variant"], planted["task"], f"seed={planted['seed']}", field):
        assert name in verdict, verdict
    jobs = [line for line in out.splitlines() if line.startswith("  ")]  # one line a sampled job
    assert len(jobs) == N_JOBS
    bad = [line for line in jobs if "MISMATCH" in line]
    assert len(bad) == 1 and "MISMATCH in 1 of" in bad[0] and field in bad[0]


def test_the_sample_is_seeded_and_prefers_cheap_jobs(suite_file: Path) -> None:
    suite = load_suite(suite_file, ["seeds=[0,1,2,3,4,5,6,7,8,9]"])
    rows = [ResultRow(run_id=j.run_id, job=j.kind, status="ok", train_s=float(i), step_ms=1.0 + i,
                      config={"train": j.train}) for i, j in enumerate(suite.jobs)]
    rows[1].status = "error"  # never sampled
    first = draw_sample(suite, rows, 4, seed=3)
    assert [s.job.run_id for s in first] == [s.job.run_id for s in draw_sample(suite, rows, 4, seed=3)]
    assert len(first) == 4 and sum(s.job.kind == "profile" for s in first) == 1
    train_costs = sorted(job_cost(r) for r in rows if r.job == "train" and r.status == "ok")
    cheap_half = train_costs[: len(train_costs) // 2]
    assert all(job_cost(s.row) <= cheap_half[-1] for s in first if s.job.kind == "train")
    assert rows[1].run_id not in {s.job.run_id for s in first}
    draws = {tuple(s.job.run_id for s in draw_sample(suite, rows, 4, seed=k)) for k in range(6)}
    assert len(draws) > 1  # the seed changes the draw


@pytest.mark.slow
def test_threads_are_recorded_and_hashed(committed: tuple[Path, Path]) -> None:
    rows = list(read_rows(committed[1] / "vtiny.jsonl"))
    assert {r["threads"] for r in rows} == {1}
    assert all(r["config"]["train"]["threads"] == 1 for r in rows)
    assert all(r["device_name"].endswith("(1 thread)") for r in rows)
    one = load_suite(committed[0])
    two = load_suite(committed[0], ["train.threads=2"])
    assert [j.run_id for j in one.jobs] != [j.run_id for j in two.jobs]  # profile cells too
    assert all((j.identity().get("train") or j.identity()["step"])["threads"] == 1 for j in one.jobs)


@pytest.mark.slow
def test_threads_are_honoured_by_the_runner_and_workers(committed: tuple[Path, Path], tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    res = tmp_path / "res"
    code = main(["run", str(committed[0]), "--threads", "2", "seeds=[0]", "--results-dir", str(res),
                 "--no-report"])
    assert code == 0
    rows = list(read_rows(res / "vtiny.jsonl"))
    assert rows and {r["threads"] for r in rows} == {2}
    assert all(r["device_name"].endswith("(2 threads)") for r in rows)
    assert torch.get_num_threads() == before  # restored after each job
    job = load_suite(committed[0], ["train.threads=3"]).jobs[0]
    seen = run_in_worker(lambda j: {"threads": torch.get_num_threads()}, job, 1, {})
    torch.set_num_threads(before)
    assert seen["threads"] == 3  # a worker runs the job at the job's count, not at its share


@pytest.mark.slow
def test_rerun_at_other_threads_compares_within_tolerance(committed: tuple[Path, Path], capsys: Any) -> None:
    suite, res = committed
    code = main(["verify", str(suite), "--results-dir", str(res), "--sample", "1", "--threads", "2"])
    out = capsys.readouterr().out
    assert f"metrics compared within {ABS_TOL:g}" in out and "bit for bit" not in out
    assert code in (0, 1) and ("reproduced" in out.splitlines()[-1]) == (code == 0)


def test_older_rows_take_threads_from_the_device_name() -> None:
    assert migrate({"device_name": "AMD EPYC (2 threads)"}).threads == 2
    assert migrate({"device_name": "AMD EPYC (1 threads)", "threads": 1}).threads == 1
    assert migrate({"device_name": "NVIDIA H100 80GB HBM3"}).threads is None


def test_verify_refuses_a_suite_without_results(suite_file: Path, tmp_path: Path, capsys: Any) -> None:
    assert main(["verify", str(suite_file), "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no committed results for suite vtiny" in err[0]
    assert main(["verify", str(suite_file), "--sample", "0"]) == 2
