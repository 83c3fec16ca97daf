"""A suite's cost-sweep variants at one input size, timed side by side in one process.

The committed sweep times each (variant, length) cell on its own, a few steps each, so on a noisy
machine two cells can land in different slow phases. This script builds the same models and batches
as the suite's profile jobs at one size, measures each one's ``act_bytes`` as the sweep does, then
times each job's training step (the one training runs: forward, loss, backward, clipping, AdamW) in
alternating rounds, the order reversed each
round, so that noise falls on all variants alike. The verdicts are ratios of medians measured in this
run, against each of the suite's references (``report.references``, else its vanilla variants).

    python benchmarks/bench_side_by_side.py suites/long_range.yaml --at 8192 [--variants A B ...]
        [--rounds 6] [--steps 2] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from typing import Any

import torch
from tabulate import tabulate

from harness.analysis.report import cost_references
from harness.core.device import use_deterministic
from harness.core.errors import HarnessError
from harness.core.heap import pin_heap
from harness.measure.costs import measure_act_bytes
from harness.measure.timing import alternate_step_ms
from harness.run.execute import build_job, job_batch, step_builder
from harness.suite.load import Job, load_suite, report_layout


def profile_jobs(suite_path: str, at: int, variants: list[str] | None) -> list[Job]:
    """The suite's profile jobs at size ``at`` (one per variant), in suite order."""
    suite = load_suite(suite_path)
    jobs: dict[str, Job] = {}
    for job in suite.jobs:
        if job.kind == "profile" and job.seq_len == at and (not variants or job.variant in variants):
            jobs.setdefault(job.variant, job)
    missing = sorted(set(variants or []) - set(jobs))
    if missing:
        raise HarnessError(f"{suite_path}: no profile job at {at} for variant(s) {', '.join(missing)}")
    if not jobs:
        sizes = sorted({j.seq_len for j in suite.jobs if j.kind == "profile" and j.seq_len})
        raise HarnessError(f"{suite_path}: no profile job at {at} (profiled sizes: {sizes})")
    return list(jobs.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite")
    ap.add_argument("--at", type=int, required=True, help="input size (seq_len, or image side)")
    ap.add_argument("--variants", nargs="*", help="default: every profiled variant of the suite")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    pin_heap()
    try:
        jobs = profile_jobs(args.suite, args.at, args.variants)
    except HarnessError as e:
        sys.stderr.write(f"bench_side_by_side: error: {e}\n")
        return 2
    use_deterministic()  # as the runner sets it
    steps, act, meta = {}, {}, {}
    for job in jobs:
        model, task = build_job(job)
        batch = job_batch(job, model, task)
        model.train()
        step = step_builder(job, task, "cpu")(model)  # the job's own training step (its train config)
        act[job.variant] = max(measure_act_bytes(model, batch, lambda _m, b, f=f: f(b))
                               for f in step.losses())
        step(0, lambda b=batch: b)  # warm-up: optimizer state, allocator, kernels
        step = functools.partial(step, 1, lambda b=batch: b)
        steps[job.variant] = step
        meta[job.variant] = {"model": job.model, "batch_size": batch.batch_size}
    times = alternate_step_ms(steps, rounds=args.rounds, per_round=args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    refs = cost_references(report_layout(args.suite), {j.variant: j.model for j in jobs})
    out: dict[str, Any] = {
        "suite": args.suite, "at": args.at, "threads": torch.get_num_threads(), "rounds": args.rounds,
        "steps_per_round": args.steps, "references": refs,
        "variants": {
            k: {**meta[k], "median_step_ms": med[k], "min_step_ms": min(times[k]), "act_bytes": act[k],
                "step_ratio": {r: med[k] / med[r] for r in refs},
                "act_ratio": {r: act[k] / act[r] if act[r] else None for r in refs}}
            for k in steps
        },
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{args.suite} at {args.at}: {args.rounds} alternating rounds x {args.steps} steps, "
          f"{torch.get_num_threads()} threads")
    headers = ["variant", "step ms (median)", "act MB", *(f"step / {r}" for r in refs),
               *(f"act / {r}" for r in refs)]
    rows = []
    for k, v in out["variants"].items():
        rows.append([k, f"{v['median_step_ms']:.1f}", f"{v['act_bytes'] / 1e6:.2f}",
                     *(f"{v['step_ratio'][r]:.3f}" for r in refs),
                     *(f"{v['act_ratio'][r]:.3f}" if v["act_ratio"][r] is not None else "-" for r in refs)])
    print(tabulate(rows, headers=headers, tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
