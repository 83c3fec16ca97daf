"""A job's row before it runs, and the rows of jobs that end without measuring: failures (``error``,
``oom``, with a one-line reason) and cost-sweep cells ``skipped`` past a limit."""

from __future__ import annotations

import datetime as dt
from typing import Any

from harness.core.version import __version__
from harness.results.provenance import code_state, git_commit, library_versions
from harness.results.rows import ResultRow
from harness.suite.jobs import Job


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()[:500]


def is_oom(e: BaseException) -> bool:
    import torch

    text = str(e).lower()
    # CUDA says "out of memory"; the CPU allocator says "can't allocate memory"
    said = "out of memory" in text or "can't allocate memory" in text
    return isinstance(e, (torch.OutOfMemoryError, MemoryError)) or said


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def oom_message(n: Any, batch_size: Any, precision: str, error: str | None) -> str:
    """An out-of-memory error naming the size that failed."""
    return (f"out of memory at seq_len={n} batch_size={batch_size}"
            f"{' (' + precision + ')' if precision != 'fp32' else ''}: {error}")[:500]


def job_modules(job: Job) -> list[str]:
    """The modules that define the job's model and task (their closure is the row's ``code.files``)."""
    from harness.core.registry import MODELS, TASKS

    return [MODELS.get(job.model).module, TASKS.get(job.task).module]


def new_row(job: Job) -> ResultRow:
    """A job's result row before it runs: the job's identity and provenance (the code, the numeric
    libraries' versions, the heap policy), nothing measured yet."""
    import torch

    return ResultRow(
        run_id=job.run_id, suite=job.suite, variant=job.variant, model=job.model, preset=job.preset,
        task=job.task_name, seed=job.seed, job=job.kind, status="error", seq_len=job.seq_len,
        batch_size=job.batch_size, baseline=job.baseline, suite_description=job.description,
        torch_version=torch.__version__, harness_version=__version__,
        git_commit=git_commit(), config=job.config(), code=code_state(job_modules(job)),
        libraries=library_versions(), heap=job.heap, suite_file=job.suite_file,
    )


def ended_row(job: Job, status: str, reason: str) -> dict[str, Any]:
    """The result row (dict form) of a job that measured nothing: its status and the one-line reason."""
    row = new_row(job)
    row.status, row.error, row.device, row.finished_at = status, reason, job.device, utc_now()
    return row.to_dict()


def skipped_row(job: Job, reason: str) -> dict[str, Any]:
    """The row of a cell not run because a shorter length already hit a limit."""
    return ended_row(job, "skipped", reason)
