"""Runs a suite's jobs: skip what the results file already has, execute the rest, append each row.

A job never takes the suite down: out-of-memory becomes ``oom``, a non-finite loss ``diverged`` and
any other exception ``error`` with its one-line reason; the row is written and the next job starts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import io
import itertools
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import __version__
from harness.device import (  # re-exported: older code imports them from the runner
    device_name,
    free_memory,
    job_threads,
    physical_memory_bytes,
    resolve_device,
    torch_threads,
    use_deterministic,
    use_tf32,
)
from harness.lease import Claims
from harness.rows import ResultRow
from harness.store import ResultStore
from harness.suite import Job, Suite

if TYPE_CHECKING:  # pragma: no cover - torch is imported only when a job runs
    from harness.tasks.base import Batch, Task

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def git_commit() -> str | None:
    """Short commit of the harness checkout, with ``+dirty`` when tracked files differ from it."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=PACKAGE_ROOT, capture_output=True, text=True,
            timeout=5,
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "harness"],
            cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=5,
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()[:500]


def _is_oom(e: BaseException) -> bool:
    import torch

    text = str(e).lower()
    # CUDA says "out of memory"; the CPU allocator says "can't allocate memory"
    said = "out of memory" in text or "can't allocate memory" in text
    return isinstance(e, (torch.OutOfMemoryError, MemoryError)) or said


def build_job(job: Job) -> tuple[Any, Task]:
    """The job's model (seeded) and task objects."""
    import torch

    from harness.registry import MODELS, TASKS

    entry = MODELS.get(job.model)
    tentry = TASKS.get(job.task)
    task = tentry.obj(tentry.config(**job.task_cfg))
    torch.manual_seed(job.seed)
    model = entry.obj(entry.config(**job.model_cfg))
    return model, task


def eval_builders(job: Job) -> dict[str, Callable[[], Any]]:
    """Builders of the job's model under each eval mode that applies to it (see TrainConfig)."""
    from harness.registry import MODELS
    from harness.suite import eval_mode_configs

    entry = MODELS.get(job.model)
    modes = eval_mode_configs(entry.config, job.model_cfg, job.train.get("eval_modes") or {})
    return {m: (lambda c=c: entry.obj(entry.config(**c))) for m, c in modes.items()}


def job_batch(job: Job, model: Any, task: Task) -> Batch:
    """The batch profiled for the job: a training batch at the longest training length, or a
    batch of exactly ``seq_len`` tokens for a profile job."""
    import torch

    gen = torch.Generator().manual_seed(job.seed)
    if job.kind == "profile":
        return task.profile_batch(job.seq_len, job.batch_size, model.io, gen)
    return task.longest_batch(job.train["batch_size"], model.io, gen)


def new_row(job: Job) -> ResultRow:
    """A job's result row before it runs: the job's identity and provenance, nothing measured yet."""
    import torch

    return ResultRow(
        run_id=job.run_id, suite=job.suite, variant=job.variant, model=job.model, preset=job.preset,
        task=job.task_name, seed=job.seed, job=job.kind, status="error", seq_len=job.seq_len,
        batch_size=job.batch_size, baseline=job.baseline, suite_description=job.description,
        report_spec=job.report_spec, torch_version=torch.__version__, harness_version=__version__,
        git_commit=git_commit(), config=job.config(),
    )


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def _oom_message(n: Any, batch_size: Any, precision: str, error: str | None) -> str:
    """An out-of-memory error naming the size that failed."""
    return (f"out of memory at seq_len={n} batch_size={batch_size}"
            f"{' (' + precision + ')' if precision != 'fp32' else ''}: {error}")[:500]


def execute(job: Job, progress: Callable[[int, int, float, float], None] | None = None) -> dict[str, Any]:
    """Run one job and return its result row, in its dict form (rows travel from worker processes
    and Ray tasks as plain data); never raises for a failing job. The job runs at its ``train.threads``
    torch threads, wherever it runs (this process, a worker, a Ray task), and the row records them."""
    with torch_threads(job_threads(job.train)):
        return execute_here(job, progress)


def execute_here(
    job: Job, progress: Callable[[int, int, float, float], None] | None = None,
) -> dict[str, Any]:
    """:func:`execute` at the thread count torch has now."""
    import torch

    from harness.profile import ExtrasProbe, profile_model
    from harness.train import task_samples, train

    started = time.perf_counter()
    row = new_row(job)
    precision = job.train.get("precision", "fp32")
    model = task = batch = None
    failed = False
    try:
        device = resolve_device(job.device)
        row.device, row.device_name = device.type, device_name(device.type)
        row.threads = torch.get_num_threads()
        use_deterministic()
        if device.type == "cuda":
            use_tf32()
            torch.cuda.reset_peak_memory_stats(device)
        model, task = build_job(job)
        model.to(device)
        batch = job_batch(job, model, task).to(device)
        if job.kind == "train":
            row.seq_len, row.batch_size = batch.seq_len, batch.batch_size
            row.metric, row.higher_is_better = task.metric, task.higher_is_better
        probe = ExtrasProbe(task.loss)
        row.update(profile_model(
            model, batch, probe, device=device,
            n_warmup=job.train["profile_warmup"], n_timed=job.train["profile_steps"], precision=precision,
        ))
        if job.kind == "profile":  # the model's extras (ponder_steps), as training rows carry them
            row.update(probe.extras(model, batch))
            row.status = "ok"
        else:
            out = train(model, task, job.train, job.seed, device, progress, eval_builders(job))
            row.update(out.extras)
            row.status, row.error = out.status, out.error
            row.metrics, row.curve, row.train_s = out.metrics, out.curve, round(out.train_s, 3)
            row.value = out.metrics.get(task.metric)
            if out.status == "ok":  # the task's sample images of the trained model, for the report
                row.samples = task_samples(model, task, device, job.seed)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # the suite goes on; the row says why this job failed
        failed = True
        row.status, row.error = ("oom" if _is_oom(e) else "error"), _one_line(e)
        if row.status == "oom":
            n = row.seq_len if row.seq_len is not None else job.task_cfg.get("seq_len")
            bs = row.batch_size if row.batch_size is not None else job.train["batch_size"]
            row.error = _oom_message(n, bs, precision, row.error)
    if failed:
        # the exception (and the frames holding the model, optimizer and activations) is gone by
        # now: drop our own references and hand the memory back before the next job
        model = task = batch = None
        free_memory()
    if row.train_s is None and job.kind == "train":
        row.train_s = round(time.perf_counter() - started, 3)
    row.finished_at = _now()
    return row.to_dict()


@dataclass
class RunSummary:
    total: int
    skipped: int
    ran: int
    statuses: dict[str, int]
    results_path: Path
    taken: int = 0  # jobs left to another process that held them (stored there, or --no-wait)


class ProgressPrinter:
    """Jobs done/total with ETA, and the current job's step, loss and speed, on stderr."""

    def __init__(self, total: int, stream: Any = sys.stderr) -> None:
        self.total, self.stream = total, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.done, self.t0, self.label = 0, time.perf_counter(), ""
        self.last_line = 0.0

    def _eta(self) -> str:
        if self.done == 0:
            return "ETA ?"
        left = (time.perf_counter() - self.t0) / self.done * (self.total - self.done)
        return f"ETA {int(left // 60)}m{int(left % 60):02d}s"

    def start(self, job: Job, show: bool = True) -> None:
        """Name the job whose steps and end come next; ``show=False`` for a row that has already
        arrived from a parallel worker (its line is printed by :meth:`finish`)."""
        what = f"seed={job.seed}" if job.kind == "train" else f"profile n={job.seq_len}"
        self.label = f"[{self.done + 1}/{self.total} {self._eta()}] {job.variant} {job.task_name} {what}"
        if show:
            self._emit(self.label, final=False)

    def step(self, step: int, total: int, loss: float, tok_s: float) -> None:
        now = time.perf_counter()
        if not self.tty and step != total and now - self.last_line < 10:
            return  # in logs, one line per 10 s is enough
        self.last_line = now
        self._emit(f"{self.label}: step {step}/{total} loss {loss:.4f} {tok_s:,.0f} tok/s", final=False)

    def finish(self, row: dict[str, Any]) -> None:
        self.done += 1
        value = row.get("value")
        tail = f"{row['metric']}={value:.4f}" if isinstance(value, float) else ""
        err = f" ({row['error']})" if row.get("error") else ""
        self._emit(f"{self.label}: {row['status']} {tail}{err}".rstrip(), final=True)

    def _emit(self, text: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        elif final or text:
            self.stream.write(text + "\n")
        self.stream.flush()


def mem_budget_bytes(job: Job) -> float | None:
    """The sweep's memory budget for a profile job: ``max_mem_gib``, else a quarter of the RAM on CPU."""
    if job.max_mem_gib is not None:
        return job.max_mem_gib * 2**30
    if job.device == "cuda" or resolve_device(job.device).type != "cpu":
        return None
    ram = physical_memory_bytes()
    return ram / 4 if ram else None


class LengthLimits:
    """Cost sweeps stop growing a variant's length once it ran out of memory or past the time budget,
    and skip a length whose memory, projected from the two previous lengths, is over the budget.

    Keyed by (variant, task): the smallest length that hit a limit and why, and the measured
    (length, mem_bytes) points. Rows already stored (from an earlier, interrupted run) count too, so a
    resumed sweep skips the same cells.
    """

    def __init__(self, jobs: list[Job], stored: Iterable[dict[str, Any]]) -> None:
        self.hit: dict[tuple[str, str], tuple[int, str]] = {}
        self.mem: dict[tuple[str, str], dict[int, int]] = {}
        ids = {j.run_id: j for j in jobs if j.kind == "profile"}
        for row in stored:
            job = ids.get(row.get("run_id", ""))
            if job is not None:
                self.record(job, row)

    def record(self, job: Job, row: dict[str, Any]) -> None:
        if job.kind != "profile" or job.seq_len is None:
            return
        if row.get("status") == "ok" and row.get("mem_bytes"):
            self.mem.setdefault((job.variant, job.task_name), {})[job.seq_len] = int(row["mem_bytes"])
        why = None
        over_time = bool(job.max_step_s) and (row.get("step_ms") or 0) > 1000 * job.max_step_s
        if row.get("status") == "oom":
            why = f"ran out of memory at n={job.seq_len}"
        elif row.get("status") == "ok" and over_time:
            why = (f"a training step took {row['step_ms'] / 1000:.1f} s at n={job.seq_len}, over the "
                   f"{job.max_step_s:g} s budget")
        key = (job.variant, job.task_name)
        if why and (key not in self.hit or job.seq_len < self.hit[key][0]):
            self.hit[key] = (job.seq_len, why)

    def skip_reason(self, job: Job) -> str | None:
        if job.kind != "profile" or job.seq_len is None:
            return None
        hit = self.hit.get((job.variant, job.task_name))
        if hit and job.seq_len > hit[0]:
            return f"skipped: {hit[1]}"
        return self._projected_over_budget(job)

    def _projected_over_budget(self, job: Job) -> str | None:
        assert job.seq_len is not None
        measured = self.mem.get((job.variant, job.task_name), {})
        points = sorted((n, b) for n, b in measured.items() if n < job.seq_len)
        if len(points) < 2:
            return None
        (n1, b1), (n2, b2) = points[-2:]
        slope = max(0.0, math.log(b2 / b1) / math.log(n2 / n1))
        projected = b2 * (job.seq_len / n2) ** slope
        budget = mem_budget_bytes(job)
        if budget is None or projected <= budget:
            return None
        return (f"skipped: mem_bytes projected to {projected / 2**30:.1f} GiB at n={job.seq_len} "
                f"(n^{slope:.2f} through n={n1} and n={n2}), over the {budget / 2**30:.1f} GiB budget")


def ended_row(job: Job, status: str, reason: str) -> dict[str, Any]:
    """The result row (dict form) of a job that measured nothing: its status and the one-line reason."""
    row = new_row(job)
    row.status, row.error, row.device, row.finished_at = status, reason, job.device, _now()
    return row.to_dict()


def skipped_row(job: Job, reason: str) -> dict[str, Any]:
    """The row of a cell not run because a shorter length already hit a limit."""
    return ended_row(job, "skipped", reason)


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
    :func:`execute`, for tests). With an :class:`harness.executors.Executor` (``--jobs N``, Ray): the
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


PROFILE_SHAPE = {"seq_len": 128, "batch_size": 8, "seed": 0}  # harness profile's defaults


def profile_overrides(overrides: list[str]) -> tuple[dict[str, int], dict[str, Any], dict[str, str]]:
    """``harness profile``'s KEY=VALUE arguments: the input's shape (``seq_len``, ``image_size`` as its
    image name, ``batch_size``, ``seed``), and model keys with the argument each came from."""
    from harness.errors import HarnessError
    from harness.yamlio import parse_scalar

    shape = dict(PROFILE_SHAPE)
    keys: dict[str, Any] = {}
    where: dict[str, str] = {}
    for text in overrides:
        if "=" not in text:
            raise HarnessError(f"override '{text}': expected KEY=VALUE")
        k, raw = text.split("=", 1)
        value = parse_scalar(raw, f"override '{text}'", k)
        if k == "image_size":  # image models: the input's side plays the part of seq_len
            k = "seq_len"
        if k in shape:
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if k == "seed" else 1):
                raise HarnessError(f"override '{text}': {k}: expected a positive integer, got {value!r}")
            shape[k] = value
        else:
            keys[k], where[k] = value, f"override '{text}'"
    return shape, keys, where


def profile_one(
    model_name: str, task_name: str | None, overrides: list[str], device: str, n_warmup: int = 2,
    n_timed: int = 5, precision: str = "fp32",
) -> dict[str, Any]:
    """``harness profile``: build one model or preset with KEY=VALUE keys and profile it on a random
    batch of ``batch_size`` x ``seq_len`` tokens (image models: ``image_size`` x ``image_size`` images, on
    the digits task unless ``task_name`` says otherwise), without training. The fields are a result row's
    cost fields, plus the model's extras (e.g. ``ponder_steps``) from one forward pass in eval mode, as
    training rows carry them from evaluation. Raises HarnessError on bad input."""
    import torch

    from harness.jobs import profile_target
    from harness.profile import ExtrasProbe, profile_model

    shape, keys, where = profile_overrides(overrides)
    entry, cfg, tentry, task = profile_target(model_name, task_name, shape["seq_len"], keys, where)
    dev = resolve_device(device)
    use_deterministic()  # the settings a suite's jobs run under
    if dev.type == "cuda":
        use_tf32()
    torch.manual_seed(shape["seed"])
    model = entry.obj(cfg).to(dev)
    gen = torch.Generator().manual_seed(shape["seed"])
    batch = task.profile_batch(shape["seq_len"], shape["batch_size"], model.io, gen).to(dev)
    fields: dict[str, Any] = {"model": model_name, "task": tentry.name, **shape, "precision": precision,
                              "status": "ok", "error": None}
    try:
        probe = ExtrasProbe(task.loss)
        fields.update(profile_model(
            model, batch, probe, device=dev, n_warmup=n_warmup, n_timed=n_timed, precision=precision,
        ))
        fields.update(probe.extras(model, batch))
    except Exception as e:  # report it like a job would
        fields["status"], fields["error"] = ("oom" if _is_oom(e) else "error"), _one_line(e)
        if fields["status"] == "oom":
            fields["error"] = _oom_message(shape["seq_len"], shape["batch_size"], precision, fields["error"])
    if fields["status"] != "ok":
        free_memory()
    fields.update({"device": dev.type, "device_name": device_name(dev.type),
                   "torch_version": torch.__version__, "harness_version": __version__,
                   "config": dataclasses.asdict(cfg)})
    return fields
