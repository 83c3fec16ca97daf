"""``harness check``: measure every model of the suite, compare with the baseline, print the verdict;
``harness check --update --reason TEXT`` writes a new baseline from a clean tree."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from harness.cli.gate.baseline import (
    FORMAT,
    does_not_apply,
    machine_kind,
    previous_baseline,
    provenance,
    write_baseline,
)
from harness.cli.gate.compare import CUDA_MEM_TOLERANCE, MEM_TOLERANCE, Finding, compare, findings_table, fmt
from harness.cli.gate.subjects import Subject, suite_subjects
from harness.cli.gate.wallclock import CPU_THREADS, DEFAULT_ROUNDS, measure, measure_relative_time
from harness.core.device import cpu_threads
from harness.core.errors import HarnessError

DEFAULT_TIME_TOLERANCE = 0.35
# instructions per step may move this much before the gate fails: reruns of the whole count gave
# identical numbers on one machine (see the package docstring); the margin absorbs what a fresh clone
# elsewhere on disk and another environment could move, far below a 3% slowdown
DEFAULT_INSTRUCTIONS_TOLERANCE = 0.005


def add_arguments(parser: Any) -> None:
    """``harness check``'s arguments, on its argparse subparser."""
    parser.add_argument("suite", nargs="?", default="suites/quick.yaml",
                        help="suite whose variants are profiled (default suites/quick.yaml)")
    parser.add_argument("--baseline", default="results/baseline.json",
                        help="baseline JSON (default results/baseline.json)")
    parser.add_argument("--update", action="store_true",
                        help="rewrite the baseline from this run, on purpose (needs --reason; a clean tree)")
    parser.add_argument("--reason", default=None, metavar="TEXT",
                        help="why the baseline is regenerated (--update)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="let --update write a baseline from a tree whose harness/ differs from HEAD")
    parser.add_argument("--no-count", action="store_true",
                        help="do not count instructions under valgrind (the wall-clock check decides)")
    parser.add_argument("--count-jobs", type=int, default=None, metavar="N",
                        help="models counted at once under valgrind (default: one per CPU core)")
    parser.add_argument("--repeats", type=int, default=None, metavar="N",
                        help="interleaved timing rounds (default: the baseline's, else 15)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--time-tolerance", type=float, default=None, metavar="FRAC",
                        help="allowed increase of relative step time (default: the baseline's, else 0.35); "
                             "--update stores it")


def run_check(
    suite_path: str | Path, baseline_path: Path, *, update: bool = False, reason: str | None = None,
    allow_dirty: bool = False, repeats: int | None = None, device: str = "cpu",
    time_tolerance: float | None = None, count: bool = True, processes: int | None = None, out: Any = None,
) -> int:
    """``harness check``: 0 when nothing regressed (or after ``--update``), 1 on a regression.

    Raises HarnessError (exit 2) for bad input: a suite that does not load, a missing or foreign
    baseline, a baseline made on another device, ``--update`` without a reason or from a dirty tree.
    """
    from harness.suite.load import load_suite

    out = out or sys.stdout
    if repeats is not None and repeats < 1:
        raise HarnessError(f"--repeats must be >= 1, got {repeats}")
    if time_tolerance is not None and not 0 < time_tolerance < 10:
        raise HarnessError(f"--time-tolerance must be a fraction > 0 (0.35 = 35%), got {time_tolerance}")
    made_from = update_source(reason, allow_dirty) if update else {}
    old = previous_baseline(baseline_path, update)
    dev = check_device(device, old, baseline_path, update)
    suite = load_suite(suite_path, device=dev.type)
    stored = (old or {}).get("tolerance", {})
    tolerances = {"time_rel": time_tolerance or stored.get("time_rel", DEFAULT_TIME_TOLERANCE),
                  "instructions": stored.get("instructions", DEFAULT_INSTRUCTIONS_TOLERANCE)}
    rounds = repeats or (old or {}).get("rounds", DEFAULT_ROUNDS)
    subjects, reference = suite_subjects(suite, dev.type)
    if not subjects:
        raise HarnessError(f"{suite_path}: no variant to profile")
    t0 = time.perf_counter()
    now = measure(subjects, reference, rounds=rounds, device=dev)
    timed = time.perf_counter() - t0
    counted = count_models(suite_path, now, old, dev, count=count, update=update, processes=processes)
    took = time.perf_counter() - t0
    here = machine_kind(counted.get("cpu_capability"))
    with cpu_threads(dev, CPU_THREADS):
        meta = provenance(dev)  # device_name shows the thread count measured with
    refs = ", ".join(sorted({s.reference for s in subjects}))
    print(f"harness check: {len(now)} models of suite {suite.name} ({suite_path}): step time relative to "
          f"{refs} over {rounds} interleaved rounds on {CPU_THREADS} thread ({timed:.0f} s); "
          f"{counted['note']}; {took:.0f} s in all", file=out)
    findings: list[Finding] = []
    if old is not None:
        why = does_not_apply(old.get("machine"), here) if counted.get("instructions") else "not counted here"
        if why:
            print(f"instructions: the baseline's counts do not apply here ({why}); not a regression, "
                  "the wall-clock check decides", file=out)
        findings = compare_confirmed(old["models"], now, subjects, reference, tolerances, rounds, dev,
                                     counts_apply=why is None, confirm=not update, out=out)
        print(findings_table(findings), file=out)
    if update:
        data = {"format": FORMAT, "suite": suite.name, "suite_file": str(suite_path), "reference": reference,
                **meta, **made_from, "machine": here if counted.get("instructions") else None,
                "threads": CPU_THREADS, "rounds": rounds, "tolerance": tolerance_note(tolerances),
                "count": {k: counted[k] for k in ("steps", "warmup") if k in counted}, "models": now}
        write_baseline(baseline_path, data)
        if old is None:
            print(findings_table(compare({}, now, time_tolerance=1, reference=reference)), file=out)
        print(f"baseline written to {baseline_path} ({len(now)} models, from {made_from['commit']}"
              f"{' (dirty)' if made_from['dirty'] else ''}): commit it with the reason, '{reason}'", file=out)
        return 0
    return summarise(findings, tolerances, refs, suite_path, baseline_path, out)


def update_source(reason: str | None, allow_dirty: bool) -> dict[str, Any]:
    """What a new baseline is made from: the commit, and why. A tree whose harness/ differs from its
    commit is refused unless ``allow_dirty``: the baseline must be reproducible from a commit."""
    from harness.results.provenance import git_state

    if not reason or not reason.strip():
        raise HarnessError("--update needs --reason TEXT: why the numbers are meant to move")
    sha, changed = git_state()
    if changed and not allow_dirty:
        raise HarnessError(f"--update refuses a dirty tree: {len(changed)} file(s) under harness/ differ "
                           f"from {sha} ({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''}); "
                           "commit first, or pass --allow-dirty")
    return {"commit": sha, "dirty": bool(changed), "reason": reason.strip()}


def count_models(
    suite_path: str | Path, now: dict[str, dict[str, Any]], old: dict[str, Any] | None, dev: Any, *,
    count: bool, update: bool, processes: int | None,
) -> dict[str, Any]:
    """Count each model's instructions per step into ``now`` (``instructions``); returns what was done
    (``note``, and ``cpu_capability``, ``steps``, ``warmup``, ``instructions`` when counted)."""
    from harness.cli.gate.counting import COUNT_STEPS, COUNT_WARMUP, count_instructions
    from harness.measure.instructions import unavailable

    if not count:
        return {"note": "instructions not counted (--no-count)"}
    if dev.type != "cpu":
        return {"note": "instructions not counted on cuda"}
    why = unavailable()
    if why and (update or os.environ.get("CI") == "true"):
        raise HarnessError(f"cannot count instructions: {why} (or pass --no-count)")
    if why:
        return {"note": f"instructions not counted: {why}"}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    t0 = time.perf_counter()
    got = count_instructions(suite_path, list(now), jobs=processes or cores)
    for name, n in got["instructions"].items():
        now[name]["instructions"] = n
    took = time.perf_counter() - t0
    return {**got, "steps": COUNT_STEPS, "warmup": COUNT_WARMUP,
            "note": f"instructions per step counted under callgrind, {got['jobs']} model(s) at a time "
                    f"({took:.0f} s)"}


def check_device(device: str, old: dict[str, Any] | None, path: Path, update: bool) -> Any:
    from harness.core.device import resolve_device

    try:
        dev = resolve_device(device)
    except RuntimeError as e:
        raise HarnessError(f"--device {device}: {e}") from None
    if old is not None and old.get("device") != dev.type and not update:
        raise HarnessError(f"--baseline {path} was made on {old.get('device')}, this check runs on "
                           f"{dev.type}: pass --device {old.get('device')} or --update")
    return dev


def compare_confirmed(
    base: dict[str, Any], now: dict[str, dict[str, Any]], subjects: list[Subject], reference: str,
    tolerances: dict[str, float], rounds: int, dev: Any, *, counts_apply: bool, confirm: bool, out: Any,
) -> list[Finding]:
    """Compare; a wall-clock slowdown must show twice: the suspects are timed against their references
    again and the run with the lower interval counts (noise rarely strikes one model in two runs)."""
    def run() -> list[Finding]:
        return compare(base, now, time_tolerance=tolerances["time_rel"], reference=reference,
                       instructions_tolerance=tolerances["instructions"] if counts_apply else None)

    findings = run()
    slow = [f.model for f in findings if f.regression and f.quantity == "time_rel"]
    if not slow or not confirm:
        return findings
    print(f"re-timing {', '.join(slow)} to confirm the slowdown", file=out)
    keep = {*slow, *(s.reference for s in subjects if s.name in slow)}
    with cpu_threads(dev, CPU_THREADS):
        second = measure_relative_time([s for s in subjects if s.name in keep], reference, dev, rounds)
    for name in slow:
        now[name]["time_rel_first"] = now[name]["time_rel"]
        if second[name]["time_rel_low"] < now[name].get("time_rel_low", now[name]["time_rel"]):
            now[name].update({k: round(v, 4) for k, v in second[name].items()})
    return run()


def tolerance_note(tolerances: dict[str, float]) -> dict[str, Any]:
    return {
        **tolerances, "mem": MEM_TOLERANCE, "cuda_mem": CUDA_MEM_TOLERANCE,
        "note": "instructions: allowed relative change of instructions per training step (counted under "
                "callgrind; applies on the machine and build of 'machine' only); time_rel: allowed "
                "relative increase of (step time / reference step time) beyond the run's interval; "
                "params, params_applied and flops_fwd are exact; act_bytes and cpu mem_bytes may not grow",
    }


def summarise(
    findings: list[Finding], tolerances: dict[str, float], refs: str, suite_path: str | Path,
    baseline_path: Path, out: Any,
) -> int:
    """Print the verdict; 1 if anything regressed."""
    bad = [f for f in findings if f.regression]
    counts = {v: sum(f.verdict == v for f in findings) for v in ("REGRESSION", "improved", "new", "gone")}
    summary = ", ".join(f"{n} {v.lower()}" for v, n in counts.items() if n) or "nothing beyond tolerance"
    print(f"harness check: {summary} (instructions ±{tolerances['instructions']:.2%}; time relative to "
          f"{refs} ±{tolerances['time_rel']:.0%} beyond its interval; params and FLOPs exact; memory may "
          "not grow)", file=out)
    for f in bad:
        sys.stderr.write(f"harness check: REGRESSION: {f.model} {f.quantity}: {fmt(f.baseline, f.quantity)}"
                         f" -> {fmt(f.now, f.quantity)} {f.change()} ({f.why})\n")
    if bad:
        sys.stderr.write(f"harness check: {len(bad)} regression(s) against {baseline_path}; if intended, "
                         f"commit, then accept them with 'harness check {suite_path} --baseline "
                         f"{baseline_path} --update --reason TEXT'\n")
    return 1 if bad else 0


__all__ = ["DEFAULT_INSTRUCTIONS_TOLERANCE", "DEFAULT_TIME_TOLERANCE", "add_arguments", "check_device",
           "compare_confirmed", "count_models", "run_check", "summarise", "tolerance_note", "update_source"]
