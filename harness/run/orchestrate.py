"""Runs a suite's jobs: skip what the results file already has, execute the rest, append each row.

A job never takes the suite down: out-of-memory becomes ``oom``, a non-finite loss ``diverged`` and
any other exception ``error`` with its one-line reason; the row is written and the next job starts.
"""

from __future__ import annotations

import io
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.results.store import ResultStore
from harness.run.execute import execute
from harness.run.lease import Claims
from harness.run.limits import LengthLimits
from harness.run.outcome import skipped_row
from harness.run.progress import ProgressPrinter
from harness.suite.jobs import Job, Suite


@dataclass
class RunSummary:
    total: int
    skipped: int
    ran: int
    statuses: dict[str, int]
    results_path: Path
    taken: int = 0  # jobs left to another process that held them (stored there, or --no-wait)
    reused: int = 0  # jobs found stored under another name (a renamed suite or variant), stored again


REUSABLE = ("ok", "diverged", "oom")  # a stored row of these is a result; error and skipped are retried


def pending_jobs(suite: Suite, results_dir: Path) -> list[Job]:
    """The suite's jobs that would run: neither its results file nor another file of the folder holds
    a result of the same run_id."""
    held = {r.get("run_id") for path in results_dir.glob("*.jsonl") for r in ResultStore(path).rows()
            if r.get("status") in REUSABLE}
    return [j for j in suite.jobs if j.run_id not in held]


def reuse_stored(suite: Suite, results_dir: Path, store: ResultStore) -> int:
    """Store again, under the suite's names, the rows of its jobs that the results folder holds under
    other names: a job's run_id does not hash names, so a renamed variant (a row of this file under
    another variant name) or a renamed suite (a row of another file of the folder) is the same job.
    The copy keeps every measured field and says where it came from (``reused_from``). Returns the
    number of rows stored."""
    mine = {r.get("run_id"): r for r in store.rows()}
    elsewhere: dict[str, dict[str, Any]] = {}
    for path in sorted(results_dir.glob("*.jsonl")):
        if path != store.path:
            for r in ResultStore(path).rows():
                if r.get("status") in REUSABLE and isinstance(r.get("run_id"), str):
                    elsewhere.setdefault(r["run_id"], r)
    n = 0
    for job in suite.jobs:
        row = mine.get(job.run_id)
        if row is not None and row.get("status") not in REUSABLE:
            continue
        names = {"suite": job.suite, "variant": job.variant, "task": job.task_name}
        if row is None:
            row = elsewhere.get(job.run_id)
        elif all(row.get(k) == v for k, v in names.items()):
            continue
        if row is None:
            continue
        old = {k: row.get(k) for k in names}
        store.append({**row, **names, "baseline": job.baseline, "suite_description": job.description,
                      "suite_file": job.suite_file, "reused_from": old})
        n += 1
    return n


def run_suite(
    suite: Suite,
    results_dir: Path,
    *,
    force: bool = False,
    quiet: bool = False,
    runner: Callable[[Job, Any], dict[str, Any]] | None = None,
    executor: Any = None,
    wait: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> RunSummary:
    """Run the suite's jobs not yet in its results file, appending each row as it arrives.

    Without ``executor``: one job after another in this process, in suite order (``runner`` replaces
    :func:`execute`, for tests). With an :class:`harness.run.executors.Executor` (``--jobs N``, Ray): the
    training jobs run in parallel and their rows are appended in completion order, then the profile
    jobs run one at a time, alone (see harness/executors.py). Either way this process alone writes
    the rows of its jobs, and cost sweeps stop at a variant's first out-of-memory or over-budget length.
    Each job runs under a lease (harness/lease.py): a job another live process holds is left to it,
    then waited for (``wait=False``: skipped). ``on_row`` sees each row once stored (``--log mlflow``).
    """
    store = ResultStore(results_dir / f"{suite.name}.jsonl")

    def stored_elsewhere(job: Job, row: dict[str, Any]) -> None:  # another process ran the job
        limits.record(job, row)
        printer.total -= 1

    # the leases' baseline is read before the jobs to do: a row stored in between is seen either way
    claims = Claims(results_dir, suite.name, store.rows, on_finished=stored_elsewhere)
    reused = 0 if force else reuse_stored(suite, results_dir, store)
    done = set() if force else store.done_ids()
    todo = [j for j in suite.jobs if j.run_id not in done]
    printer = ProgressPrinter(len(todo), io.StringIO() if quiet else sys.stderr)
    statuses: dict[str, int] = {}
    run = runner or (lambda job, p: execute(job, p))
    limits = LengthLimits(suite.jobs, [] if force else store.rows())

    def record(job: Job, row: dict[str, Any]) -> None:
        limits.record(job, row)
        store.append(row)
        claims.release(job)
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        printer.finish(row)
        if on_row is not None:
            on_row(row)

    def one(job: Job, go: Callable[[Job, Any], dict[str, Any]]) -> None:
        printer.start(job)
        reason = limits.skip_reason(job)
        record(job, skipped_row(job, reason) if reason else go(job, printer.step))

    with claims:
        if executor is None:
            for job in itertools.chain.from_iterable(claims.batches(todo, ("train", "profile"), wait)):
                one(job, run)
        else:
            for batch in claims.batches(todo, ("train",), wait, lazy=False):
                for job, row in executor.map_unordered(batch):
                    printer.start(job, show=False)
                    record(job, row)
            for job in itertools.chain.from_iterable(claims.batches(todo, ("profile",), wait)):
                one(job, executor.run_alone)
    printer.close()
    taken = claims.report(waited=wait)
    if taken:
        printer.stream.write(taken + "\n")
    ran = sum(statuses.values())
    return RunSummary(len(suite.jobs), len(suite.jobs) - len(todo), ran, statuses, store.path,
                      taken=len(todo) - ran, reused=reused)
