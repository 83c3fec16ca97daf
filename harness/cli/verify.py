"""``harness verify``: retrain a sample of a suite's committed jobs and compare them with their rows.

The sample is drawn from the suite's jobs whose committed row ended ``ok``, deterministically (a
seeded draw) and among the cheapest: training jobs from the cheaper half by their committed
``train_s``, and a quarter of the sample (when the suite has a cost sweep) from its profile cells, by
their committed step time. Each sampled job runs through the runner
(:func:`harness.run.orchestrate.run_suite`,
the code path of ``harness run``) into a scratch results folder that is deleted afterwards, at the
thread count its committed row records (``--threads`` overrides it). The committed results file is
only read.

Each rerun row is compared with its committed row:

- ``exact``: counts that do not depend on the run (``status``, ``params``, ``params_applied``,
  ``flops_fwd``, ``act_bytes``, ``mem_bytes`` where it is the CPU estimate, ``seq_len``,
  ``batch_size``) must be equal, on any machine.
- metrics and the curve: bit for bit when the rerun has the committed row's thread count and device
  (``device_name`` without its thread count: the same CPU model or GPU) and, on the CPU, the same
  instruction set (``machine.cpu_capability``: AVX2 and AVX512 kernels round differently; rows that
  do not record it are compared within tolerance), since training is deterministic there; otherwise each
  value within ``ABS_TOL`` or ``REL_TOL`` of the committed one
  (other threads or another CPU reorder floating-point sums, and training amplifies the last bits).
- timings (``step_ms``, ``tokens_per_s``, ``train_s``, ``mfu``): the ratio now / committed, reported
  and never a verdict: a slower or busier machine is not a failed reproduction.
"""

from __future__ import annotations

import dataclasses
import math
import random
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.device import job_threads
from harness.core.errors import HarnessError
from harness.results.rows import ResultRow, migrate
from harness.results.store import latest_rows, read_rows
from harness.suite.jobs import Job, Suite

EXACT_FIELDS = ("status", "params", "params_applied", "flops_fwd", "act_bytes", "mem_bytes", "seq_len",
                "batch_size")
TIMING_FIELDS = ("step_ms", "tokens_per_s", "train_s", "mfu")
ABS_TOL = 0.02  # metrics at another thread count or device: |now - committed| <= max(ABS_TOL,
REL_TOL = 0.05  # REL_TOL * |committed|)
PROFILE_SHARE = 4  # one sampled job in this many is a profile cell, when the suite has a cost sweep


@dataclass
class Check:
    """One compared field of one sampled job."""

    job: str  # the job's label: variant, task, seed (or profiled length)
    field: str
    committed: Any
    now: Any
    verdict: str  # same | differs | close | ratio x.xx | ...
    failed: bool = False


@dataclass
class Sampled:
    """A committed row, the suite's job that wrote it, and the job as rerun (at the row's threads)."""

    row: ResultRow
    job: Job
    rerun: Job

    @property
    def label(self) -> str:
        where = f"seed={self.job.seed}" if self.job.kind == "train" else f"n={self.job.seq_len}"
        return f"{self.job.variant} {self.job.task_name} {where}"

    @property
    def names(self) -> str:
        """The row named in a mismatch: run_id, variant, task, seed (or length)."""
        return f"run_id {self.row.run_id} ({self.label})"


@dataclass
class Outcome:
    suite: str
    sampled: list[Sampled]
    checks: list[Check]
    notes: list[str]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.failed]


# --- the sample -----------------------------------------------------------------------------------


def runnable_here(device: str) -> bool:
    if device != "cuda":
        return True
    import torch

    return torch.cuda.is_available()


def job_cost(row: ResultRow) -> float:
    """Seconds the job took when committed (a profile cell: its timed and warm-up steps)."""
    if row.is_profile:
        train = row.config.get("train") or {}
        steps = train.get("profile_warmup", 2) + train.get("profile_steps", 5) + 1  # and the extras pass
        return (row.step_ms or math.inf) * steps / 1000
    return row.train_s if row.train_s is not None else math.inf


def cheap_draw(pairs: list[tuple[ResultRow, Job]], n: int, rng: random.Random) -> list[tuple[ResultRow, Job]]:
    """``n`` pairs drawn from the cheaper half (at least ``n`` of the cheapest)."""
    if n <= 0 or not pairs:
        return []
    ranked = sorted(pairs, key=lambda p: (job_cost(p[0]), p[0].run_id or ""))
    pool = ranked[: max(n, math.ceil(len(ranked) / 2))]
    return rng.sample(pool, min(n, len(pool)))


def draw_sample(
    suite: Suite, rows: Iterable[ResultRow], n: int, seed: int, threads: int | None = None,
) -> list[Sampled]:
    """The jobs to rerun, in the suite's order; see the module docstring."""
    by_id = {j.run_id: j for j in suite.jobs if runnable_here(j.device)}
    pairs = [(r, by_id[r.run_id]) for r in rows if r.run_id in by_id and r.status == "ok"]
    train = [p for p in pairs if p[1].kind == "train"]
    profile = [p for p in pairs if p[1].kind == "profile"]
    n_profile = min(len(profile), n // PROFILE_SHARE if train else n)
    rng = random.Random(seed)
    chosen = cheap_draw(train, n - n_profile, rng) + cheap_draw(profile, n_profile, rng)
    if len(chosen) < n:  # too few of one kind: fill from the other
        rest = [p for p in train + profile if p not in chosen]
        chosen += cheap_draw(rest, n - len(chosen), rng)
    order = {j.run_id: i for i, j in enumerate(suite.jobs)}
    out = []
    for row, job in sorted(chosen, key=lambda p: order[p[1].run_id]):
        count = threads or row.threads or job_threads(job.train)
        out.append(Sampled(row, job, dataclasses.replace(job, train={**job.train, "threads": count})))
    return out


# --- comparing ------------------------------------------------------------------------------------


def machine(device_name: Any) -> str:
    """A row's device without its thread count: the CPU model or the GPU."""
    return str(device_name).rsplit(" (", 1)[0] if device_name is not None else ""


def show(value: Any) -> str:
    """A value as stored (floats to the last bit: the shortest text that reads back the same)."""
    return repr(value) if isinstance(value, float) else str(value)


def close(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)):
        return a == b
    if not isinstance(b, (int, float)) or math.isnan(a) or math.isnan(b):
        return bool(a == b) or (a != a and b != b)
    return abs(b - a) <= max(ABS_TOL, REL_TOL * abs(a))


SEPARATE_STEP = ("act_bytes", "mem_bytes")  # what the former separate profiling step measured otherwise


def compare_exact(s: Sampled, now: ResultRow) -> list[Check]:
    out = []
    separate = (s.row.cost_basis or {}).get("steps") == "separate"
    for name in EXACT_FIELDS:
        old, new = getattr(s.row, name), getattr(now, name)
        if old is None or (name == "mem_bytes" and s.row.mem_kind != "cpu_estimate"):
            continue  # not recorded, or CUDA's peak (the allocator's, not a count)
        same = old == new
        if separate and name in SEPARATE_STEP and not same:  # measured on another step then: information
            out.append(Check(s.label, name, old, new, "differs (committed by the former separate step)"))
            continue
        out.append(Check(s.label, name, old, new, "same" if same else "differs", not same))
    return out


def compare_metrics(s: Sampled, now: ResultRow, bitwise: bool) -> list[Check]:
    out = []
    for key in sorted(set(s.row.metrics) | set(now.metrics)):
        old, new = s.row.metrics.get(key), now.metrics.get(key)
        if bitwise:
            ok = old == new or (old != old and new != new)  # NaN reproduces as NaN
            verdict = "same" if ok else "differs"
        else:
            ok = close(old, new)
            verdict = "close" if ok else f"differs beyond {ABS_TOL:g} / {REL_TOL:.0%}"
        out.append(Check(s.label, f"metrics.{key}", old, new, verdict, not ok))
    out.append(compare_curve(s, now, bitwise))
    return out


def compare_curve(s: Sampled, now: ResultRow, bitwise: bool) -> Check:
    old, new = s.row.curve, now.curve
    summary_old, summary_new = f"{len(old)} points", f"{len(new)} points"
    if len(old) != len(new):
        return Check(s.label, "curve", summary_old, summary_new, "differs in length", True)
    for a, b in zip(old, new):
        for key in sorted(set(a) | set(b)):
            ok = (a.get(key) == b.get(key)) if bitwise else close(a.get(key), b.get(key))
            if not ok:
                return Check(s.label, f"curve[step {a.get('step')}].{key}", a.get(key), b.get(key),
                             "differs" if bitwise else "differs beyond tolerance", True)
    return Check(s.label, "curve", summary_old, summary_new, "same" if bitwise else "close")


def compare_timings(s: Sampled, now: ResultRow) -> list[Check]:
    out = []
    for name in TIMING_FIELDS:
        old, new = getattr(s.row, name), getattr(now, name)
        if isinstance(old, (int, float)) and isinstance(new, (int, float)) and old > 0:
            out.append(Check(s.label, name, old, new, f"ratio {new / old:.2f} (informative)"))
    return out


def same_arithmetic(old: ResultRow, now: ResultRow) -> bool:
    """Whether a rerun computes with the committed row's arithmetic: the same thread count and device
    model and, on the CPU, the same instruction set torch's kernels dispatch to (AVX2 and AVX512 round
    differently), which the committed row must record."""
    if now.threads != old.threads or machine(now.device_name) != machine(old.device_name):
        return False
    if now.device == "cpu":
        cap = (old.machine or {}).get("cpu_capability")
        return cap is not None and cap == (now.machine or {}).get("cpu_capability")
    return True


def compare(s: Sampled, now: ResultRow) -> tuple[list[Check], bool]:
    """Every check of one sampled job, and whether its metrics were held to the last bit."""
    bitwise = same_arithmetic(s.row, now)
    checks = compare_exact(s, now)
    if s.job.kind == "train":
        checks += compare_metrics(s, now, bitwise)
    return checks + compare_timings(s, now), bitwise


# --- running ----------------------------------------------------------------------------------------


def verify_suite(
    suite: Suite, results_dir: Path, *, sample: int, seed: int = 0, threads: int | None = None,
    quiet: bool = False,
) -> Outcome:
    """Rerun ``sample`` committed jobs of ``suite`` (rows in ``results_dir``) in a scratch folder and
    compare them; raises HarnessError when there is nothing to verify."""
    from harness.run.orchestrate import run_suite

    path = results_dir / f"{suite.name}.jsonl"
    if not path.is_file():
        raise HarnessError(f"{path}: no committed results for suite {suite.name}")
    rows = [migrate(r) for r in latest_rows(path).rows]
    sampled = draw_sample(suite, rows, sample, seed, threads)
    if not sampled:
        raise HarnessError(f"{path}: no ok row of suite {suite.name}'s jobs to verify on this machine")
    with tempfile.TemporaryDirectory(prefix="harness-verify-") as scratch:
        run_suite(dataclasses.replace(suite, jobs=[s.rerun for s in sampled]), Path(scratch), quiet=quiet)
        fresh = {r["run_id"]: migrate(r) for r in read_rows(Path(scratch) / f"{suite.name}.jsonl")}
    checks: list[Check] = []
    modes = set()
    for s in sampled:
        now = fresh.get(s.rerun.run_id)
        if now is None:
            checks.append(Check(s.label, "row", "stored", "missing", "no row written", True))
            continue
        got, bitwise = compare(s, now)
        checks += got
        cap = (now.machine or {}).get("cpu_capability")
        where = f"{now.threads} thread(s) on {machine(now.device_name)}" + (f" ({cap})" if cap else "")
        then = (s.row.machine or {}).get("cpu_capability") or "an instruction set not recorded"
        modes.add(f"bit for bit at {where}" if bitwise else
                  f"within {ABS_TOL:g} / {REL_TOL:.0%} (rerun at {where}; committed at "
                  f"{s.row.threads} thread(s) on {machine(s.row.device_name)}, {then})")
    notes = [f"metrics compared {m}" for m in sorted(modes)]
    return Outcome(suite.name, sampled, checks, notes)


def verdict_line(out: Outcome) -> str:
    """One line: every sampled row reproduced, or the first mismatch with its row and field."""
    bad = out.failed
    n = len(out.sampled)
    if not bad:
        return f"verify {out.suite}: all {n} sampled row(s) reproduced"
    by_label = {s.label: s for s in out.sampled}
    rows = sorted({c.job for c in bad})
    first = bad[0]
    return (f"verify {out.suite}: MISMATCH in {len(rows)} of {n} sampled row(s); first: "
            f"{by_label[first.job].names} field {first.field}: committed {show(first.committed)}, "
            f"now {show(first.now)}")


def table(out: Outcome) -> str:
    from tabulate import tabulate

    body = [[c.job, c.field, show(c.committed), show(c.now), c.verdict.upper() if c.failed else c.verdict]
            for c in out.checks]
    return tabulate(body, headers=["job", "field", "committed", "now", "verdict"], disable_numparse=True)


def job_lines(out: Outcome) -> list[str]:
    """One line per sampled job: how many fields matched and how, its step-time ratio, and each
    mismatch named (the whole comparison is :func:`table`)."""
    by_job: dict[str, list[Check]] = {}
    for c in out.checks:
        by_job.setdefault(c.job, []).append(c)
    lines = []
    for s in out.sampled:
        checks = by_job.get(s.label, [])
        bad = [c for c in checks if c.failed]
        judged = [c for c in checks if not c.verdict.startswith("ratio")]
        ratio = next((c.verdict.split()[1] for c in checks if c.field == "step_ms"
                      and c.verdict.startswith("ratio")), None)
        speed = f", step time x{ratio} (informative)" if ratio else ""
        if bad:
            shown = "; ".join(f"{c.field}: committed {show(c.committed)}, now {show(c.now)}" for c in bad[:2])
            more = f" and {len(bad) - 2} more" if len(bad) > 2 else ""
            lines.append(f"  {s.label}: MISMATCH in {len(bad)} of {len(judged)} fields: {shown}{more}")
        else:
            lines.append(f"  {s.label}: {len(judged)} fields reproduced{speed}")
    return lines
