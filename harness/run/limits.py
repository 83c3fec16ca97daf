"""Where a cost sweep stops: a variant's first out-of-memory or over-budget length, and lengths whose
memory, projected from the two shorter ones, is over the budget."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from harness.core.device import physical_memory_bytes, resolve_device
from harness.suite.jobs import Job


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
        over_time = job.max_step_s is not None and (row.get("step_ms") or 0) > 1000 * job.max_step_s
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
