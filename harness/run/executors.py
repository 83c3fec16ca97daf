"""Where a suite's jobs run: worker processes on this machine (``--jobs N``) or a Ray cluster.

The serial path (``--executor local``, one job at a time in the ``harness`` process) lives in
:func:`harness.run.orchestrate.run_suite`; the executors here share its contract and add parallelism:

- The driver (the ``harness run`` process) alone writes the results file: workers return rows, the
  driver appends each one as it arrives (completion order).
- Training jobs run in parallel, each at its own recorded thread count (``train.threads``, default 1:
  :func:`harness.run.execute.execute` sets ``torch.set_num_threads``), so a row does not depend on how many
  jobs ran beside it; a Ray task reserves at least that many CPUs. On CUDA each training job has a GPU
  of its own.
- Profile jobs (speed and memory) run afterwards, one at a time and alone: in the driver for the
  local executor, as a Ray task reserving a whole node (all its CPUs, and a GPU on CUDA) for Ray.
  Their numbers are therefore never measured beside another job of the suite.
- A worker that dies (killed, segfault, lost node) is retried once; a second death records the job as
  ``error`` with the reason, and the suite goes on.

Training is deterministic on the CPU at a given thread count, so a suite gives the same result rows
(metrics, curves, parameters, FLOPs, memory) serially, with ``--jobs N`` or on Ray, when the thread
count per job is the same (1 under the tests); only timings differ.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.suite.jobs import Job

JobFn = Callable[[Job], dict[str, Any]]  # runs one job in a worker and returns its result row
READY = "ready"  # a local worker's first message
UNGUARDED = ("a --jobs worker process exited with code {code} before it started: multiprocessing starts "
             "each worker by re-importing the script that called harness, so a script without an "
             "`if __name__ == \"__main__\":` guard runs again in the worker; guard its code")
RAY_INSTALL = "pip install -e '.[ray]'"


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def _execute(job: Job) -> dict[str, Any]:
    from harness.run.execute import execute

    return execute(job)


def run_in_worker(fn: JobFn, job: Job, threads: int, meta: dict[str, Any]) -> dict[str, Any]:
    """A worker's side of one job: pin the thread count (the job's own ``train.threads``, which
    :func:`harness.run.execute.execute` sets again; ``threads``, the worker's share, when the job has
    none), run it, stamp the driver's provenance."""
    from harness.core.heap import pin_heap

    pin_heap()  # the same heap policy as the driver (a no-op after the first job of a reused worker)
    threads = max(1, int(job.train.get("threads") or threads))
    if "torch" in sys.modules:  # a reused worker: torch's pool is already sized, resize it
        sys.modules["torch"].set_num_threads(threads)
    else:  # torch reads these when it is first imported
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    row = fn(job)
    row.update(meta)
    return row


def error_row(job: Job, reason: str) -> dict[str, Any]:
    """The row (dict form) of a job whose worker died twice: status ``error``, nothing measured."""
    from harness.run.outcome import ended_row

    return ended_row(job, "error", reason)


def driver_meta() -> dict[str, Any]:
    """Fields the driver imposes on every row, so that rows do not depend on a worker's checkout."""
    from harness.results.provenance import git_commit

    return {"git_commit": git_commit()}


class Executor:
    """Runs training jobs in parallel and profile jobs alone; see the module docstring."""

    name = "executor"

    def map_unordered(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, dict[str, Any]]]:
        """Run training jobs in parallel, yielding (job, row) as each ends; ``jobs`` is read lazily."""
        raise NotImplementedError

    def run_alone(self, job: Job, progress: Callable[..., None] | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- local worker processes ---------------------------------------------------------------------


def _death_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "worker process vanished"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (the kernel's out-of-memory killer sends this)" if name == "SIGKILL" else ""
        return f"worker process killed by {name}{hint}"
    return f"worker process exited with code {exitcode}"


def _worker_main(conn: mpc.Connection, fn: JobFn, threads: int, meta: dict[str, Any]) -> None:
    """Loop of one local worker: receive (index, job), send (index, row); None ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    conn.send(READY)  # started: the driver tells a failed start from a death mid-job by this
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        index, job = msg
        conn.send((index, run_in_worker(fn, job, threads, meta)))


def _receive(w: _Worker, index: int) -> dict[str, Any] | None:
    """The row of job ``index`` if the worker has sent it (READY first marks the worker started)."""
    while w.conn.poll():
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            return None
        if msg == READY:
            w.ready = True
            continue
        got, row = msg
        return row if got == index else None
    return None


@dataclass
class _Worker:
    process: Any
    conn: mpc.Connection
    busy: int | None = None  # index of the job it is running
    ready: bool = False  # it sent READY: its start (the re-import of the main module) went through


class LocalPool(Executor):
    """``--jobs N``: N spawned worker processes on this machine; each job runs at its ``train.threads``
    (a worker starts with cores // N threads).

    Hand-rolled rather than ``concurrent.futures.ProcessPoolExecutor`` so that a worker's death is
    pinned on the one job it was running (a broken ProcessPoolExecutor fails every pending job).
    Workers live for the whole suite (torch is imported once per worker, not once per job). On CUDA,
    worker i sees GPU i only (``CUDA_VISIBLE_DEVICES``), so N may not exceed the GPU count.
    """

    name = "local"

    def __init__(
        self, n_jobs: int, *, threads: int | None = None, gpus: list[int] | None = None,
        fn: JobFn | None = None, meta: dict[str, Any] | None = None, retries: int = 1,
    ) -> None:
        if n_jobs < 1:
            raise HarnessError(f"--jobs must be >= 1, got {n_jobs}")
        if gpus is not None and n_jobs > len(gpus):
            raise HarnessError(f"--jobs {n_jobs}: a CUDA suite runs one training job per GPU and "
                               f"{len(gpus)} GPU(s) are visible")
        self.n_jobs, self.gpus, self.retries = n_jobs, gpus, retries
        self.threads = threads or max(1, available_cpus() // n_jobs)
        self.fn = fn or _execute
        self.meta = driver_meta() if meta is None else meta
        self._ctx = mp.get_context("spawn")  # fork after torch's thread pools start is unsafe
        self._workers: list[_Worker] = []

    def _start(self, slot: int) -> _Worker:
        parent, child = self._ctx.Pipe()
        env = {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        if self.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.gpus[slot % len(self.gpus)])
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # a spawned child copies the environment at start()
        try:
            proc = self._ctx.Process(target=_worker_main, args=(child, self.fn, self.threads, self.meta),
                                     daemon=True, name=f"harness-worker-{slot}")
            proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        return _Worker(proc, parent)

    def map_unordered(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, dict[str, Any]]]:
        """Rows in completion order. ``jobs`` is read lazily, one job each time a worker is free (the
        runner claims a job's lease when it hands the job over)."""
        source, seen = iter(jobs), []  # seen: every job read from source, by index
        pending: collections.deque[int] = collections.deque()  # retries of jobs whose worker died
        deaths: dict[int, int] = {}
        more = True

        def next_index() -> int | None:
            nonlocal more
            if pending:
                return pending.popleft()
            job = next(source, None) if more else None
            if job is None:
                more = False
                return None
            seen.append(job)
            return len(seen) - 1

        try:
            while True:
                for slot in range(self.n_jobs):  # hand out work, (re)starting workers as needed
                    if slot < len(self._workers) and self._workers[slot].busy is not None:
                        continue
                    index = next_index()
                    if index is None:
                        break
                    if slot >= len(self._workers):
                        self._workers.append(self._start(slot))
                    w = self._workers[slot]
                    if not w.process.is_alive():
                        w.conn.close()
                        w = self._workers[slot] = self._start(slot)
                    w.busy = index
                    w.conn.send((index, seen[index]))
                if not any(w.busy is not None for w in self._workers):
                    break
                busy = [w for w in self._workers if w.busy is not None]
                mpc.wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for slot, w in enumerate(self._workers):
                    if w.busy is None:
                        continue
                    index = w.busy
                    row = _receive(w, index)
                    if row is not None:
                        w.busy = None
                        yield seen[index], row
                        continue
                    if w.process.is_alive():
                        continue  # still working
                    w.process.join()
                    if not w.ready:  # it never started: every retry would fail the same way
                        raise HarnessError(UNGUARDED.format(code=w.process.exitcode))
                    reason = _death_reason(w.process.exitcode)
                    w.busy = None  # a fresh worker takes this slot when there is work for it
                    deaths[index] = deaths.get(index, 0) + 1
                    if deaths[index] <= self.retries:
                        pending.appendleft(index)
                    else:
                        yield seen[index], error_row(
                            seen[index], f"{reason}; it died again when retried, the job was given up")
        finally:
            self._stop_workers()

    def run_alone(self, job: Job, progress: Callable[..., None] | None = None) -> dict[str, Any]:
        """A profile job, after the workers have stopped: in this process, with every core."""
        self._stop_workers()
        if self.fn is _execute:  # in-process: the progress display can follow its steps
            from harness.run.execute import execute

            row = execute(job, progress)
        else:
            row = self.fn(job)
        row.update(self.meta)
        return row

    def _stop_workers(self) -> None:
        for w in self._workers:
            try:
                if w.process.is_alive() and w.busy is None:
                    w.conn.send(None)
            except (OSError, ValueError):
                pass
        for w in self._workers:
            if w.busy is not None:  # interrupted mid-job: its row would be thrown away anyway
                w.process.terminate()
            w.process.join(timeout=10)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(timeout=5)
            w.conn.close()
        self._workers = []

    def close(self) -> None:
        self._stop_workers()


# --- Ray ----------------------------------------------------------------------------------------


def import_ray() -> Any:
    """``ray``, or HarnessError with the install command (the CLI turns it into exit 2)."""
    try:
        import ray
    except ImportError:
        raise HarnessError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def _ray_entry(fn: JobFn, job: Job, threads: int, meta: dict[str, Any]) -> dict[str, Any]:
    return run_in_worker(fn, job, threads, meta)


class RayExecutor(Executor):
    """``--executor ray``: each job is a Ray task.

    With no address it starts a Ray instance on this machine sized to it (``init`` keywords such as
    ``num_cpus`` may narrow it); with ``auto`` or ``HOST:PORT`` it joins a running cluster and ships
    this checkout's ``harness`` package to the workers (``runtime_env.py_modules``), so every node runs
    the driver's code; torch and the other dependencies must be installed on the nodes. If Ray is
    already initialised in this process (a notebook, a test), that instance is used and left running.

    Training tasks ask for ``cpus_per_job`` CPUs (threads = that many) and, on CUDA, one GPU. Profile
    tasks run one at a time after them and ask for all the CPUs of the largest node (and a GPU), so Ray
    schedules nothing beside them on that node. Ray retries a task whose worker died once
    (``max_retries=1``); a second failure becomes an ``error`` row.
    """

    name = "ray"

    def __init__(
        self, address: str | None = None, *, device: str = "cpu", cpus_per_job: int = 1,
        fn: JobFn | None = None, meta: dict[str, Any] | None = None, retries: int = 1, **init: Any,
    ) -> None:
        ray = import_ray()
        self.ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, **init}
            if address:
                kwargs["address"] = address
                kwargs.setdefault("runtime_env", {"py_modules": [str(Path(__file__).resolve().parents[1])]})
            try:
                ray.init(**kwargs)
            except Exception as e:  # a bad address, a cluster that is not there
                first = (str(e).strip().splitlines() or [""])[0]
                where = f" at {address}" if address else ""
                raise HarnessError(f"--executor ray: could not start or join Ray{where}: "
                                   f"{type(e).__name__}: {first}") from None
        self.fn = fn or _execute
        self.meta = driver_meta() if meta is None else meta
        self.cpus_per_job, self.retries = cpus_per_job, retries
        total = ray.cluster_resources()
        self.gpu = device == "cuda" or (device == "auto" and total.get("GPU", 0) > 0)
        if self.gpu and total.get("GPU", 0) < 1:
            self.close()
            raise HarnessError("--device cuda: the Ray cluster has no GPU")
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        eligible = [r for r in nodes if r.get("CPU", 0) >= 1 and (not self.gpu or r.get("GPU", 0) >= 1)]
        self.node_cpus = int(max((r["CPU"] for r in eligible), default=1))
        if cpus_per_job > self.node_cpus:
            self.close()
            raise HarnessError(f"cpus per job ({cpus_per_job}) exceeds the largest node's "
                               f"{self.node_cpus} CPUs")
        self._remote = ray.remote(_ray_entry)

    def _submit(self, job: Job, cpus: int) -> Any:
        cpus = min(max(cpus, int(job.train.get("threads") or 1)), self.node_cpus)  # what its threads use
        return self._remote.options(
            num_cpus=cpus, num_gpus=1 if self.gpu else 0, max_retries=self.retries, retry_exceptions=False,
            name=f"harness:{job.variant}:{job.task_name}:{job.seed if job.kind == 'train' else job.seq_len}",
        ).remote(self.fn, job, cpus, self.meta)

    def _result(self, job: Job, ref: Any) -> dict[str, Any]:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as e:
            lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
            detail = f"{type(e).__name__}: {lines[0] if lines else ''}"[:400]
            if isinstance(e, self.ray.exceptions.RayTaskError):  # raised in the worker, not retried
                return error_row(job, f"Ray task raised: {detail}")
            tries = "after a retry" if self.retries else "with no retry"
            return error_row(job, f"Ray task failed {tries}: {detail}")

    def map_unordered(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, dict[str, Any]]]:
        """Rows in completion order; ``jobs`` is read lazily, keeping as many tasks in flight as the
        cluster's CPUs hold (so the runner claims a job's lease about when it starts)."""
        source = iter(jobs)
        cpus = self.ray.cluster_resources().get("CPU", 1)
        room = max(1, int(cpus // self.cpus_per_job))
        refs: dict[Any, Job] = {}
        try:
            while True:
                while len(refs) < room and (job := next(source, None)) is not None:
                    refs[self._submit(job, self.cpus_per_job)] = job
                if not refs:
                    break
                ready, _ = self.ray.wait(list(refs), num_returns=1)
                job = refs.pop(ready[0])
                yield job, self._result(job, ready[0])
        finally:
            for ref in refs:  # interrupted: do not leave the cluster working for nobody
                self.ray.cancel(ref, force=True)

    def run_alone(self, job: Job, progress: Callable[..., None] | None = None) -> dict[str, Any]:
        return self._result(job, self._submit(job, self.node_cpus))

    def close(self) -> None:
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()


def make_executor(
    kind: str, *, jobs: int = 1, ray_address: str | None = None, device: str = "cpu", **ray_init: Any
) -> Executor | None:
    """The executor the CLI flags ask for; None means the serial path in this process.

    Raises HarnessError (exit 2) for bad flags or a missing Ray, before any job runs.
    """
    if kind == "ray":
        if jobs != 1:
            raise HarnessError("--jobs is for --executor local; "
                               "Ray runs as many jobs as its CPUs (or GPUs) allow")
        return RayExecutor(ray_address, device=device, **ray_init)
    if kind != "local":
        raise HarnessError(f"--executor must be local or ray, got {kind!r}")
    if ray_address:
        raise HarnessError("--ray-address needs --executor ray")
    if jobs < 1:
        raise HarnessError(f"--jobs must be >= 1, got {jobs}")
    if jobs == 1:
        return None
    gpus = None
    if device in ("cuda", "auto"):
        import torch

        if torch.cuda.is_available():
            gpus = list(range(torch.cuda.device_count()))
    return LocalPool(jobs, gpus=gpus)
