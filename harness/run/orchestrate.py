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
    taken = claims.report(waited=wait)
    if taken:
        printer.stream.write(taken + "\n")
    ran = sum(statuses.values())
    return RunSummary(len(suite.jobs), len(suite.jobs) - len(todo), ran, statuses, store.path,
                      taken=len(todo) - ran)
