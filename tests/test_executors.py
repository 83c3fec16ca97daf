"""Parallel executors: --jobs N worker processes and Ray give the serial path's rows; deaths are retried once.

Rows are compared on every field that does not measure time: on the CPU a job is deterministic at a
given thread count, and every path here runs jobs on one thread (conftest sets OMP_NUM_THREADS=1,
workers get one CPU each).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tiny_suites import write_tiny_suite

from harness.cli.main import main
from harness.results.store import read_rows
from harness.suite.load import Job, load_suite

# the tiny suite with one variant, 12 steps with dropout (the random stream must match across processes)
PAR = dict(
    name="par",
    train={"steps": 12, "batch_size": 8, "warmup_steps": 2, "eval_every": 6, "eval_batch_size": 16},
    model={"dropout": 0.1},
    variants=[{"name": "a", "model": "vanilla"}],
)
# what differs between two runs of the same job: wall-clock measurements, when it ran and where its suite
# file was (each run here writes its own copy)
VOLATILE = {"finished_at", "train_s", "step_ms", "tokens_per_s", "mfu", "git_commit", "device_name",
            "suite_file"}


def _stable(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["run_id"]: {k: v for k, v in r.items() if k not in VOLATILE} for r in rows}


def _assert_same_rows(serial: list[dict[str, Any]], parallel: list[dict[str, Any]]) -> None:
    a, b = _stable(serial), _stable(parallel)
    assert set(a) == set(b)
    for rid in a:
        assert a[rid]["status"] == "ok", a[rid]["error"]
        diff = sorted(k for k in set(a[rid]) | set(b[rid]) if a[rid].get(k) != b[rid].get(k))
        assert not diff, f"{a[rid]['job']} {a[rid]['seed']}: {diff}"
    # the metric fields are really there (not both missing)
    train = [r for r in a.values() if r["job"] == "train"]
    assert all(r["curve"] and r["value"] is not None and r["act_bytes"] > 0 for r in train)
    # profile jobs run alone, after every training job
    assert parallel[-1]["job"] == "profile" and all(r["job"] == "train" for r in parallel[:-1])


@pytest.fixture(scope="module")
def serial_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("serial")
    suite = write_tiny_suite(tmp, PAR)
    assert main(["run", str(suite), "--results-dir", str(tmp / "res"), "--no-report"]) == 0
    return list(read_rows(tmp / "res" / "par.jsonl"))


# --- flags ---------------------------------------------------------------------------------------


def test_ray_missing_exits_2_with_install_command(
    tmp_path: Path, tiny_suite: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    res = tmp_path / "res"
    code = main(["run", str(tiny_suite(PAR)), "--executor", "ray", "--results-dir", str(res),
                 "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "pip install -e '.[ray]'" in err[0]
    assert not res.exists()


@pytest.mark.parametrize("flags, words", [
    (["--ray-address", "auto"], "--ray-address needs --executor ray"),
    (["--jobs", "0"], "--jobs must be >= 1"),
    (["--executor", "ray", "--jobs", "2"], "--jobs is for --executor local"),
    (["--precision", "fp8"], "invalid choice"),
])
def test_bad_executor_flags_exit_2(
    flags: list[str], words: str, tmp_path: Path, tiny_suite: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    res = tmp_path / "res"
    try:
        code = main(["run", str(tiny_suite(PAR)), *flags, "--results-dir", str(res), "--no-report"])
    except SystemExit as e:  # argparse's own refusals exit from inside the parser
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert not res.exists()


def test_precision_flag_enters_run_id(tiny_suite: Callable[..., Path]) -> None:
    path = tiny_suite(PAR)
    plain = load_suite(path).jobs
    bf16 = load_suite(path, ["train.precision=bf16"]).jobs
    compiled = load_suite(path, ["train.compile=true"]).jobs
    for a, b, c in zip(plain, bf16, compiled):
        assert len({a.run_id, b.run_id, c.run_id}) == 3, a.kind


# --- local worker processes ----------------------------------------------------------------------


@pytest.mark.slow
def test_jobs_2_gives_serial_rows(
    tmp_path: Path, tiny_suite: Callable[..., Path], serial_rows: list[dict[str, Any]],
) -> None:
    from harness.run.executors import LocalPool
    from harness.run.orchestrate import run_suite

    suite = load_suite(tiny_suite(PAR))
    with LocalPool(2, threads=1) as pool:
        summary = run_suite(suite, tmp_path / "res", quiet=True, executor=pool)
    assert summary.ran == 3 and summary.statuses == {"ok": 3}
    _assert_same_rows(serial_rows, list(read_rows(summary.results_path)))


def _crashy(markers: str, job: Job) -> dict[str, Any]:
    """A stand-in job runner: seed 1 always kills its worker, seed 2 only on its first attempt."""
    if job.seed == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    marker = Path(markers) / f"seed{job.seed}"
    if job.seed == 2 and not marker.exists():
        marker.touch()
        os._exit(3)
    return {"run_id": job.run_id, "seed": job.seed, "status": "ok", "error": None, "pid": os.getpid()}


def _crash_jobs(tiny_suite: Callable[..., Path]) -> list[Job]:
    return load_suite(tiny_suite(PAR), ["seeds=[0,1,2]"]).train_jobs()


def _check_crash_rows(rows: dict[int, dict[str, Any]], expect: str) -> None:
    assert rows[0]["status"] == "ok"
    assert rows[2]["status"] == "ok"  # died once, retried, succeeded
    assert rows[1]["status"] == "error" and expect in rows[1]["error"], rows[1]["error"]
    for k in ("params", "value", "mem_bytes", "run_id", "config"):  # a full row, usable by the report
        assert k in rows[1]


def test_local_worker_death_is_retried_once_then_error(
    tmp_path: Path, tiny_suite: Callable[..., Path],
) -> None:
    from harness.run.executors import LocalPool

    jobs = _crash_jobs(tiny_suite)
    fn = functools.partial(_crashy, str(tmp_path))
    with LocalPool(2, threads=1, fn=fn, meta={}) as pool:
        rows = {job.seed: row for job, row in pool.map_unordered(jobs)}
    assert sorted(rows) == [0, 1, 2]
    _check_crash_rows(rows, "killed by SIGKILL")
    assert "given up" in rows[1]["error"]


# --- Ray -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local() -> Any:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # test-module functions travel to the workers by value (the workers cannot import this file)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_gives_serial_rows(
    tmp_path: Path, tiny_suite: Callable[..., Path], serial_rows: list[dict[str, Any]], ray_local: Any,
) -> None:
    res = tmp_path / "res"
    # the CLI path: it finds Ray initialised (2 CPUs) and uses that instance
    argv = ["run", str(tiny_suite(PAR)), "--executor", "ray", "--results-dir", str(res), "--no-report"]
    assert main(argv) == 0
    assert ray_local.is_initialized()
    _assert_same_rows(serial_rows, list(read_rows(res / "par.jsonl")))


def test_ray_worker_death_is_retried_once_then_error(
    tmp_path: Path, tiny_suite: Callable[..., Path], ray_local: Any,
) -> None:
    from harness.run.executors import RayExecutor

    jobs = _crash_jobs(tiny_suite)
    ex = RayExecutor(fn=functools.partial(_crashy, str(tmp_path)), meta={})
    rows = {job.seed: row for job, row in ex.map_unordered(jobs)}
    _check_crash_rows(rows, "after a retry")


def test_error_row_has_every_result_field(tiny_suite: Callable[..., Path]) -> None:
    from harness.results.rows import SCHEMA_VERSION, ResultRow
    from harness.run.executors import error_row

    job = load_suite(tiny_suite(PAR)).jobs[0]
    row = error_row(job, "worker process killed by SIGKILL")
    assert row["status"] == "error" and row["error"] == "worker process killed by SIGKILL"
    assert row["run_id"] == job.run_id and row["finished_at"] and row["schema_version"] == SCHEMA_VERSION
    assert set(ResultRow().to_dict()) <= set(row)
    assert row["value"] is None and row["params"] is None and row["device"] == job.device
