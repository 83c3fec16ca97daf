"""Leases: one job, one live process, when several ``harness run`` share a results folder.

A lease is an exclusive ``flock`` on ``<results-dir>/.leases/<suite>/<run_id>.lock``, taken by the
process that will store the job's row (the driver: with ``--jobs N`` or Ray its workers only compute)
and held from before the job starts until its row is appended. The kernel drops an ``flock`` when its
holder dies, however it dies (SIGKILL included), so a crash never blocks a rerun; there is no stale
lease to clean up. The holder writes its pid into the file, so a waiting process can name it.

After taking a lease the results file is read again: a row for the job that appeared since this
process started (another process finished it meanwhile) means the job is not run again. A lease held
by another process defers the job: the suite goes on with the others, then, with no job of its own
in progress, waits for the deferred ones in suite order (the same order in every process, so no two
waiting processes wait for each other), or with ``wait=False`` leaves them to their holders; either
way it says so on the console.

A lock file is unlinked by its holder before the lock is released; a process that locked a file that
has been unlinked meanwhile opens the path again (the inode check of :func:`acquire`).
"""

from __future__ import annotations

import collections
import errno
import fcntl
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.suite.jobs import Job

LEASE_DIR = ".leases"
RowsReader = Callable[[], Iterable[dict[str, Any]]]


def lease_path(results_dir: str | Path, suite: str, run_id: str) -> Path:
    """Where the lease of one job lives."""
    return Path(results_dir) / LEASE_DIR / suite / f"{run_id}.lock"


class Lease:
    """A held lease: an open descriptor with its exclusive flock."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    def release(self) -> None:
        """Unlink the lock file and drop the lock (idempotent)."""
        if self.fd < 0:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = -1


def acquire(path: Path, *, block: bool) -> Lease | None:
    """Lock ``path`` (created if needed) and write this process's pid into it; None when another
    process holds it and ``block`` is false."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return Lease(path, fd)
        fcntl.flock(fd, fcntl.LOCK_UN)  # the holder unlinked it before releasing: take the new file
        os.close(fd)


def holder_pid(path: Path) -> int | None:
    """The pid written in a lease file (None when it is gone or not written yet)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class Claims:
    """The leases of one ``run_suite`` call.

    ``rows`` reads the results file; the rows there when the Claims is made are the baseline, and a
    job counts as finished meanwhile when a row for its run_id appears beyond it. ``on_finished`` gets
    ``(job, row)`` for such a job (the runner feeds the cost sweep's limits with it).
    """

    def __init__(self, results_dir: str | Path, suite: str, rows: RowsReader,
                 on_finished: Callable[[Job, dict[str, Any]], None] | None = None) -> None:
        self.results_dir, self.suite, self.rows = Path(results_dir), suite, rows
        self.on_finished = on_finished
        self.base = collections.Counter(r.get("run_id") for r in rows())
        self.held: dict[str, Lease] = {}
        self.deferred: list[Job] = []
        self.holders: set[int] = set()
        self.taken: set[str] = set()  # run_ids another process held or stored while this one ran
        self.finished: set[str] = set()  # of those, the ones whose row the other process stored

    def try_claim(self, job: Job, *, block: bool = False) -> bool:
        """Take the job's lease; False when another process holds it (the job is deferred) or has
        stored the job's row since this process started (nothing to do)."""
        if job.run_id in self.held:
            return True
        path = lease_path(self.results_dir, self.suite, job.run_id)
        lease = acquire(path, block=block)
        if lease is None:
            pid = holder_pid(path)
            if pid is not None:
                self.holders.add(pid)
            self.deferred.append(job)
            self.taken.add(job.run_id)
            return False
        row = self.stored_since_start(job.run_id)
        if row is not None:
            lease.release()
            self.finished.add(job.run_id)
            self.taken.add(job.run_id)
            if self.on_finished is not None:
                self.on_finished(job, row)
            return False
        self.held[job.run_id] = lease
        return True

    def stored_since_start(self, run_id: str) -> dict[str, Any] | None:
        """The newest row of ``run_id`` when the results file has more of them than at the start."""
        count, last = 0, None
        for row in self.rows():
            if row.get("run_id") == run_id:
                count, last = count + 1, row
        return last if count > self.base[run_id] else None

    def take(self, jobs: Iterable[Job]) -> Iterator[Job]:
        """The jobs whose lease this process got, each claimed only when the consumer asks for it."""
        for job in jobs:
            if self.try_claim(job):
                yield job

    def wait_deferred(self, kinds: Iterable[str]) -> Iterator[Job]:
        """Block on each deferred job of these kinds in turn, in the order deferred (suite order, the
        same in every process: no two waiters wait for each other); yield the ones whose holder ended
        without storing a row, now held by this process. Whoever consumes it lazily must hold no other
        lease while asking for the next job (the serial runner); a pool with jobs in flight takes the
        whole list first."""
        kinds = set(kinds)
        waiting = [j for j in self.deferred if j.kind in kinds]
        self.deferred = [j for j in self.deferred if j.kind not in kinds]
        for job in waiting:
            if self.try_claim(job, block=True):
                yield job

    def batches(self, jobs: list[Job], kinds: tuple[str, ...], wait: bool,
                lazy: bool = True) -> Iterator[Iterable[Job]]:
        """The jobs of these kinds this process runs, in two batches: those it can claim now (each
        claimed as the consumer asks for it), then, with ``wait``, the deferred ones whose holder ended
        without a row (``lazy=False``: as a list, for a consumer with jobs in flight)."""
        yield self.take(j for j in jobs if j.kind in kinds)
        if wait:
            yield self.wait_deferred(kinds) if lazy else list(self.wait_deferred(kinds))

    def release(self, job: Job) -> None:
        lease = self.held.pop(job.run_id, None)
        if lease is not None:
            lease.release()

    def close(self) -> None:
        for lease in self.held.values():
            lease.release()
        self.held.clear()

    def __enter__(self) -> Claims:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


    def report(self, waited: bool) -> str | None:
        """The console line for the jobs another process had taken (None when there were none), e.g.
        ``3 job(s) taken by another process (pid 4242): waited, 3 stored there``."""
        if not self.taken:
            return None
        pids = ", ".join(str(p) for p in sorted(self.holders))
        there = len(self.finished & self.taken)
        if waited:
            here = len(self.taken) - there
            what = f"waited, {there} stored there" + (
                f", {here} run here after their holder ended without a row" if here else "")
        else:
            left = len(self.taken) - there
            what = f"skipped, {there} stored there" + (f", {left} not stored yet" if left else "")
        who = f" (pid {pids})" if pids else ""
        return f"{len(self.taken)} job(s) taken by another process{who}: {what}"
