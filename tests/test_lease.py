"""Leases: two ``harness run`` on one results folder run each job once; a dead holder blocks nothing."""

from __future__ import annotations

import collections
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.results.store import ResultStore, read_rows
from harness.run.lease import Claims, acquire, holder_pid, lease_path
from harness.suite.jobs import Job
from harness.suite.load import load_suite

EXE = str(Path(sys.executable).parent / "harness")
ROOT = Path(__file__).resolve().parent.parent


LEASE = dict(name="lease", description="Two tiny variants for the lease tests. Nothing else.")  # as it is


def _fast(job: Job, progress: Any = None) -> dict[str, Any]:
    """A stand-in for execute: the job's row, ok, nothing measured."""
    from harness.run.outcome import new_row

    row = new_row(job)
    row.status = "ok"
    return row.to_dict()


def _counts(path: Path) -> collections.Counter[str]:
    return collections.Counter(r["run_id"] for r in read_rows(path))


# --- the lock itself -----------------------------------------------------------------------------


def test_a_lease_excludes_another_holder_until_released(tmp_path: Path) -> None:
    path = lease_path(tmp_path, "s", "abc")
    assert path == tmp_path / ".leases" / "s" / "abc.lock"
    first = acquire(path, block=False)
    assert first is not None and holder_pid(path) == os.getpid()
    assert acquire(path, block=False) is None  # flock excludes every other open file, this process's too
    first.release()
    assert not path.exists()  # unlinked by its holder
    second = acquire(path, block=False)
    assert second is not None
    second.release()
    second.release()  # idempotent


def test_claims_defer_a_held_job_and_skip_one_stored_meanwhile(
    tmp_path: Path, tiny_suite: Callable[..., Path],
) -> None:
    jobs = load_suite(tiny_suite(LEASE)).train_jobs()
    store = ResultStore(tmp_path / "res" / "lease.jsonl")
    mine = Claims(tmp_path / "res", "lease", store.rows)
    theirs = Claims(tmp_path / "res", "lease", store.rows)
    assert mine.try_claim(jobs[0]) and mine.try_claim(jobs[1])
    assert list(theirs.take(jobs)) == jobs[2:]  # the held ones are deferred, the others claimed
    assert theirs.deferred == jobs[:2] and theirs.holders == {os.getpid()}
    store.append(_fast(jobs[0]))  # jobs[0] is finished, jobs[1]'s holder gives up without a row
    mine.close()
    assert list(theirs.wait_deferred(["train"])) == [jobs[1]]  # now held by theirs, to be run there
    assert jobs[1].run_id in theirs.held and theirs.deferred == []
    assert theirs.report(waited=True) == (
        f"2 job(s) taken by another process (pid {os.getpid()}): waited, 1 stored there, "
        "1 run here after their holder ended without a row")
    theirs.close()


def test_a_row_stored_after_the_start_counts_even_with_force(
    tmp_path: Path, tiny_suite: Callable[..., Path],
) -> None:
    """The baseline is the rows at the start: a job with an older row is run again (--force), one
    whose row another process appended since is not."""
    job = load_suite(tiny_suite(LEASE)).train_jobs()[0]
    store = ResultStore(tmp_path / "lease.jsonl")
    store.append(_fast(job))
    seen: list[Job] = []
    claims = Claims(tmp_path, "lease", store.rows, on_finished=lambda j, r: seen.append(j))
    assert claims.stored_since_start(job.run_id) is None
    store.append(_fast(job))
    assert claims.stored_since_start(job.run_id)["run_id"] == job.run_id
    assert not claims.try_claim(job) and seen == [job] and not claims.held
    assert claims.report(waited=False) == (
        "1 job(s) taken by another process: skipped, 1 stored there")


def test_run_suite_skips_held_jobs_without_wait_and_waits_otherwise(
    tmp_path: Path, tiny_suite: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.run.orchestrate import run_suite

    suite = load_suite(tiny_suite(LEASE))
    held = suite.train_jobs()[1]
    lease = acquire(lease_path(tmp_path, "lease", held.run_id), block=False)
    summary = run_suite(suite, tmp_path, runner=_fast, wait=False)
    assert summary.ran == len(suite.jobs) - 1 and summary.taken == 1
    assert held.run_id not in _counts(summary.results_path)
    err = capsys.readouterr().err
    assert (f"1 job(s) taken by another process (pid {os.getpid()}): skipped, 0 stored there, "
            "1 not stored yet") in err
    lease.release()
    again = run_suite(suite, tmp_path, runner=_fast)  # the holder let go: the job runs here
    assert again.ran == 1 and again.taken == 0
    assert _counts(summary.results_path) == {j.run_id: 1 for j in suite.jobs}


HOLD = """\
import sys, time
from pathlib import Path
from harness.run.lease import acquire
lease = acquire(Path(sys.argv[1]), block=False)
print("held" if lease else "busy", flush=True)
time.sleep(600)
"""


def test_a_sigkilled_holder_blocks_no_rerun(tmp_path: Path, tiny_suite: Callable[..., Path]) -> None:
    from harness.run.orchestrate import run_suite

    suite = load_suite(tiny_suite(LEASE))
    job = suite.train_jobs()[0]
    path = lease_path(tmp_path, "lease", job.run_id)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert acquire(path, block=False) is None and holder_pid(path) == holder.pid
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert path.exists()  # a killed holder leaves its file behind: the kernel dropped the lock
    summary = run_suite(suite, tmp_path, runner=_fast, quiet=True)
    assert summary.ran == len(suite.jobs) and summary.taken == 0
    assert _counts(summary.results_path)[job.run_id] == 1
    assert not path.exists()


def _fast_in_worker(job: Job) -> dict[str, Any]:
    return _fast(job)


@pytest.mark.slow
def test_jobs_2_leaves_held_jobs_to_their_holder(tmp_path: Path, tiny_suite: Callable[..., Path]) -> None:
    from harness.run.executors import LocalPool
    from harness.run.orchestrate import run_suite

    suite = load_suite(tiny_suite(LEASE))
    held = suite.train_jobs()[2]
    lease = acquire(lease_path(tmp_path, "lease", held.run_id), block=False)
    try:
        with LocalPool(2, threads=1, fn=functools.partial(_fast_in_worker), meta={}) as pool:
            summary = run_suite(suite, tmp_path, executor=pool, wait=False, quiet=True)
    finally:
        lease.release()
    assert summary.taken == 1 and summary.ran == len(suite.jobs) - 1
    assert set(_counts(summary.results_path)) == {j.run_id for j in suite.jobs} - {held.run_id}


@pytest.mark.slow
def test_the_local_pool_reads_its_jobs_lazily(tmp_path: Path, tiny_suite: Callable[..., Path]) -> None:
    """A job is taken from the runner (and so its lease claimed) only when a worker is free for it."""
    from harness.run.executors import LocalPool

    jobs = load_suite(tiny_suite(LEASE)).train_jobs()
    handed: list[int] = []

    def source() -> Any:
        for i, job in enumerate(jobs):
            handed.append(i)
            yield job

    seen = []
    with LocalPool(1, threads=1, fn=functools.partial(_fast_in_worker), meta={}) as pool:
        for job, row in pool.map_unordered(source()):
            seen.append(job)
            assert len(handed) == len(seen)  # one worker: the next job is read after this one's row
    assert seen == jobs


# --- two real processes --------------------------------------------------------------------------


def _blocked_on(path: Path) -> set[int]:
    """Pids waiting for the flock on ``path`` (Linux's /proc/locks lists waiters with '->')."""
    ino = os.stat(path).st_ino
    pids = set()
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if "->" in parts and parts[parts.index("->") + 1] == "FLOCK":
            rest = parts[parts.index("->") + 1:]
            if int(rest[4].split(":")[-1]) == ino:
                pids.add(int(rest[3]))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks")
def test_two_harness_runs_on_one_folder_leave_one_row_per_job(
    tmp_path: Path, tiny_suite: Callable[..., Path],
) -> None:
    """Two real ``harness run`` on one suite and folder. This test holds one job's lease until every
    other job is stored and both processes wait for it, then lets go without a row: exactly one of
    them runs it, and each says the job was taken by another process (this one)."""
    suite_path = tiny_suite(LEASE)
    suite = load_suite(suite_path)
    held = suite.train_jobs()[0]
    path = lease_path(tmp_path / "res", "lease", held.run_id)
    lease = acquire(path, block=False)
    assert lease is not None
    argv = [EXE, "run", str(suite_path), "--results-dir", str(tmp_path / "res"), "--no-report"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for _ in range(2)]
    results = tmp_path / "res" / "lease.jsonl"
    try:
        deadline = time.monotonic() + 240
        others = {j.run_id for j in suite.jobs} - {held.run_id}
        while not (others <= set(_counts(results)) and _blocked_on(path) == {p.pid for p in procs}):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.2)
        lease.release()
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        lease.release()
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    assert _counts(results) == {j.run_id: 1 for j in suite.jobs}  # every job once, none twice
    for _, err in outs:
        line = next(ln for ln in err.splitlines() if "taken by another process (pid " in ln)
        pids = line.split("(pid ")[1].split(")")[0].split(", ")
        assert str(os.getpid()) in pids, line
    ran = [int(err.split(" job(s) run")[0].split()[-1]) for _, err in outs]
    assert sum(ran) == len(suite.jobs)
