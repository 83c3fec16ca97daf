"""``harness check``: a regression gate on each model's parameters, FLOPs, memory and relative speed.

It profiles every variant of a suite (default ``suites/quick.yaml``) and compares against a committed
baseline JSON (default ``results/baseline.json``):

- ``params``, ``params_applied``, ``flops_fwd``: exact. Any change fails: a model's size or cost
  changed (intended changes are accepted with ``--update``).
- ``act_bytes`` and, on the CPU, ``mem_bytes`` (``cpu_estimate``): deterministic (read from the
  allocator's events, and from tensor sizes), so the tolerance is ``MEM_TOLERANCE`` = 0: more bytes
  than the baseline fail; fewer bytes pass as an improvement. On CUDA, ``mem_bytes`` is the
  allocator's peak and the tolerance is ``CUDA_MEM_TOLERANCE`` (2%).
- speed: never the machine's absolute speed. Each model's training-step time (the training step of
  its job's train config, :class:`harness.measure.step.TrainStep`, the one training runs, with the
  learning rate at 0 so that the weights stay put) is divided by that of the baseline variant of the
  task it is profiled on (``baseline:``; in
  quick.yaml vanilla-post for the token models and resnet for the image models), measured in the
  same round. Models are timed round-robin, the order rotating each round, ``STEPS_PER_ROUND`` steps
  each with the fastest kept, over ``--repeats`` rounds (default ``DEFAULT_ROUNDS``), on one CPU
  thread; the median of the per-round ratios is compared. A ratio more than the baseline's
  ``tolerance.time_rel`` (default ``DEFAULT_TIME_TOLERANCE`` = 35%) above the stored one is timed
  again, and fails only if the second run agrees (the lower of the two ratios counts). Machine speed
  and drift hit every model of a round alike and cancel in the ratio. The 35% comes from reruns on
  the 2-core CPU while other work loaded it (load average 4-8): ratios of the quick suite's models
  moved by up to 32% (max/min over five runs of 15 rounds); alone on the machine they move far less.

Shape profiled: for each variant, the suite's first cost-sweep cell (the smallest of ``profile:``'s
lengths at its batch size, on its task); a variant without one (no ``profile:`` section, or
``profile: false``) is profiled on its first training task at the training batch (``train.batch_size``
at the longest training length). The shape is stored per model; a changed shape fails (rerun with
``--update`` if intended).

``--update`` rewrites the baseline on purpose; a variant missing from the baseline is reported as
``new`` (and passes), one missing from the suite as ``gone``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.device import cpu_threads
from harness.core.errors import HarnessError

FORMAT = 1
DEFAULT_TIME_TOLERANCE = 0.35
MEM_TOLERANCE = 0.0
CUDA_MEM_TOLERANCE = 0.02
DEFAULT_ROUNDS = 15
STEPS_PER_ROUND = 3
WARMUP_STEPS = 2
CPU_THREADS = 1  # torch threads while measuring on the CPU
EXACT = ("params", "params_applied", "flops_fwd")
MEMORY = ("act_bytes", "mem_bytes")


@dataclass
class Subject:
    """One model to profile: built fresh by ``build()`` (seeded), on ``batch``, stepped by the training
    step of its job's train config (:meth:`make_step`) on its task."""

    name: str
    build: Callable[[], Any]
    batch: Any
    task: Any
    train: dict[str, Any]  # the job's train config
    shape: str  # how the input was made, stored with the numbers
    model: str = ""
    reference: str = ""  # whose step time this one's is divided by (default: measure()'s reference)

    def make_step(self, model: Any, device: Any, **changes: Any) -> Any:
        """The job's :class:`harness.measure.step.TrainStep` for ``model`` (``changes``: spec keys)."""
        import torch

        from harness.measure.step import StepSpec, TrainStep

        spec = StepSpec.from_train(self.train, **changes)
        return TrainStep(model, self.task, spec, device, gen=torch.Generator().manual_seed(0))


@dataclass
class Finding:
    """One compared quantity of one model."""

    model: str
    quantity: str
    baseline: Any
    now: Any
    verdict: str  # same | ok | improved | new | gone | REGRESSION
    why: str = ""

    @property
    def regression(self) -> bool:
        return self.verdict == "REGRESSION"

    def change(self) -> str:
        b, n = self.baseline, self.now
        if isinstance(b, (int, float)) and isinstance(n, (int, float)) and not isinstance(b, bool) and b:
            return f"{(n - b) / abs(b) * 100:+.1f}%"
        return ""


# --- what to profile ---------------------------------------------------------------------------


def suite_subjects(suite: Any, device: str = "cpu") -> tuple[list[Subject], str]:
    """One subject per variant of the suite (shape rule in the module docstring), and the default
    reference. Each subject's own reference is the baseline variant of the task it is profiled on
    (suites may name one per task, e.g. resnet for the image task), if that variant is profiled."""
    from harness.run.execute import build_job, job_batch

    chosen: dict[str, Any] = {}
    for job in suite.jobs:
        if job.kind == "profile":
            old = chosen.get(job.variant)
            if old is None or old.kind != "profile" or job.seq_len < old.seq_len:
                chosen[job.variant] = job
    for job in suite.jobs:
        if job.kind == "train" and job.variant not in chosen:
            chosen[job.variant] = job
    subjects = []
    for vname in suite.variants:
        job = chosen.get(vname)
        if job is None:
            continue
        job = dataclasses.replace(job, device=device)

        def build(job: Any = job) -> Any:
            return build_job(job)[0]

        model, task = build_job(job)
        batch = job_batch(job, model, task)
        if job.kind == "profile":
            shape = f"{job.task_name} seq_len={job.seq_len} batch_size={job.batch_size} (profile)"
        else:
            shape = f"{job.task_name} seq_len={batch.seq_len} batch_size={batch.batch_size} (training batch)"
        subjects.append(Subject(vname, build, batch, task, job.train, shape, job.preset or job.model,
                                job.baseline or ""))
    names = {s.name for s in subjects}
    first = subjects[0].name if subjects else ""
    default = next((s.reference for s in subjects if s.reference in names), first)
    for s in subjects:
        if s.reference not in names:
            s.reference = default
    return subjects, default


# --- measuring ---------------------------------------------------------------------------------


def measure_costs(subject: Subject, device: Any) -> dict[str, Any]:
    """The deterministic fields: parameters, FLOPs and memory, from :func:`profile_model` (counted, and
    the CPU memory estimate after one step)."""
    import torch

    from harness.measure.meter import profile_model

    torch.manual_seed(0)
    model = subject.build().to(device)
    prof = profile_model(model, subject.batch, lambda m: subject.make_step(m, device), device=device,
                         n_warmup=0, n_timed=0)
    return {
        "model": subject.model, "shape": subject.shape,
        **{k: prof[k] for k in (*EXACT, *MEMORY, "mem_kind")},
    }


def measure_relative_time(
    subjects: list[Subject], reference: str, device: Any, rounds: int, steps: int = STEPS_PER_ROUND
) -> dict[str, dict[str, float]]:
    """Step time of each subject over its reference's (``Subject.reference``, else ``reference``),
    timed round-robin in this process.

    Each round times every model for ``steps`` training steps (the job's training step with the
    learning rate at 0, so the weights and the work stay the same) and keeps its fastest; the order
    rotates by one each round so no model always follows the same one. The result per model: the median
    over rounds of (its time / the reference's time in that round), the median
    absolute time in ms (information only) and the spread of the ratio (max - min over rounds).
    """
    import torch

    from harness.measure.timing import alternate_step_ms

    calls = {}
    for s in subjects:
        torch.manual_seed(0)
        model = s.build().to(device).train()
        batch = s.batch.to(device)
        # lr 0: the optimizer does all its work but the weights stay put, so a model whose cost
        # depends on its weights (ACT halting, LSH buckets) does the same work in every round
        step = s.make_step(model, device, lr=0.0)
        for i in range(WARMUP_STEPS):
            step(i, lambda b=batch: b)
        calls[s.name] = functools.partial(step, WARMUP_STEPS, lambda b=batch: b)
    gc_was = gc.isenabled()
    gc.collect()
    gc.disable()  # a collection in the middle of one model's step is noise
    try:
        every = alternate_step_ms(calls, rounds=rounds, per_round=steps, device=device, order="rotate")
    finally:
        if gc_was:
            gc.enable()
    # each model's fastest step of each round
    times = {name: [min(ts[i : i + steps]) for i in range(0, len(ts), steps)] for name, ts in every.items()}
    out = {}
    for s in subjects:
        ts, ref = times[s.name], times[s.reference or reference]
        ratios = [t / rt for t, rt in zip(ts, ref)]
        out[s.name] = {"time_rel": statistics.median(ratios), "step_ms": statistics.median(ts),
                       "time_rel_spread": max(ratios) - min(ratios)}
    return out


def measure(
    subjects: list[Subject], reference: str, *, rounds: int = DEFAULT_ROUNDS, device: Any = "cpu"
) -> dict[str, dict[str, Any]]:
    """Every compared quantity of every subject: {name: {params, ..., time_rel, step_ms}}."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        from harness.core.device import use_tf32

        use_tf32()
    names = {s.name for s in subjects}
    for r in {reference, *(s.reference for s in subjects if s.reference)}:
        if r not in names:
            raise HarnessError(f"reference model '{r}' is not among those profiled")
    with cpu_threads(device, CPU_THREADS):
        models = {s.name: measure_costs(s, device) for s in subjects}
        for name, t in measure_relative_time(subjects, reference, device, rounds).items():
            models[name].update({k: round(v, 4) for k, v in t.items()})
    for s in subjects:
        models[s.name]["reference"] = s.reference or reference
    return models


# --- comparing ---------------------------------------------------------------------------------


def compare(
    baseline: dict[str, dict[str, Any]], now: dict[str, dict[str, Any]], *, time_tolerance: float,
    reference: str, mem_tolerance: float = MEM_TOLERANCE,
) -> list[Finding]:
    """Findings for every model and quantity (see the module docstring for the rules)."""
    out: list[Finding] = []
    for name, cur in now.items():
        base = baseline.get(name)
        if base is None:
            out.append(Finding(name, "model", None, cur.get("model"), "new",
                               "not in the baseline (--update adds it)"))
            continue
        if base.get("shape") != cur.get("shape"):
            out.append(Finding(name, "shape", base.get("shape"), cur.get("shape"), "REGRESSION",
                               "profiled on another input, not comparable (--update if intended)"))
            continue
        for q in EXACT:
            same = base.get(q) == cur.get(q)
            out.append(Finding(name, q, base.get(q), cur.get(q), "same" if same else "REGRESSION",
                               "" if same else "changed (must be exact)"))
        for q in MEMORY:
            b, n = base.get(q), cur.get(q)
            if q == "mem_bytes" and base.get("mem_kind") != cur.get("mem_kind"):
                out.append(Finding(name, q, base.get("mem_kind"), cur.get("mem_kind"), "REGRESSION",
                                   "measured another way (mem_kind): use the baseline's device or --update"))
                continue
            tol = CUDA_MEM_TOLERANCE if cur.get("mem_kind") == "cuda_allocated" else mem_tolerance
            if b is None or n is None or n == b:
                out.append(Finding(name, q, b, n, "same"))
            elif n > b * (1 + tol):
                out.append(Finding(name, q, b, n, "REGRESSION", "more memory than the baseline"))
            elif n < b * (1 - tol):
                out.append(Finding(name, q, b, n, "improved", "less memory (--update to keep it)"))
            else:
                out.append(Finding(name, q, b, n, "ok", f"within {tol:.0%}"))
        ref = cur.get("reference", reference)
        if name == ref:
            continue
        if base.get("reference", reference) != ref:
            out.append(Finding(name, "reference", base.get("reference", reference), ref, "REGRESSION",
                               "timed against another model, not comparable (--update if intended)"))
            continue
        b, n = base.get("time_rel"), cur.get("time_rel")
        if b is None or n is None:
            continue
        if n > b * (1 + time_tolerance):
            out.append(Finding(name, "time_rel", b, n, "REGRESSION",
                               f"slower relative to {ref} by more than {time_tolerance:.0%}"))
        elif n < b * (1 - time_tolerance):
            out.append(Finding(name, "time_rel", b, n, "improved", f"faster relative to {ref}"))
        else:
            out.append(Finding(name, "time_rel", b, n, "ok", f"within ±{time_tolerance:.0%}"))
    for name, base in baseline.items():
        if name not in now:
            out.append(Finding(name, "model", base.get("model"), None, "gone",
                               "in the baseline, not in the suite"))
    return out


def _fmt(v: Any, quantity: str) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if quantity == "time_rel":
        return f"{v:.3f}x"
    return f"{v:,}" if isinstance(v, int) else f"{v:.4g}"


def findings_table(findings: list[Finding], show_all: bool = False) -> str:
    """What moved (every time ratio, and any other quantity that is not identical)."""
    from tabulate import tabulate

    rows = [[f.model, f.quantity, _fmt(f.baseline, f.quantity), _fmt(f.now, f.quantity), f.change(),
             f.verdict + (f": {f.why}" if f.why and f.verdict != "ok" else "")]
            for f in findings if show_all or f.verdict != "same"]
    if not rows:
        return "nothing moved"
    return tabulate(rows, headers=["model", "quantity", "baseline", "now", "change", "verdict"])


# --- the command -------------------------------------------------------------------------------


def _provenance(device: Any) -> dict[str, Any]:
    import torch

    from harness.core.device import device_name
    from harness.core.version import __version__
    from harness.results.provenance import git_commit

    return {
        "device": device.type, "device_name": device_name(device.type), "torch_version": torch.__version__,
        "harness_version": __version__, "git_commit": git_commit(),
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
    }


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"--baseline {path}: no such file "
                           "(make one with 'harness check --update')") from None
    except (OSError, json.JSONDecodeError) as e:
        raise HarnessError(f"--baseline {path}: not a readable JSON file ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("models"), dict):
        raise HarnessError(f"--baseline {path}: not a harness check baseline (format {FORMAT}); "
                           "regenerate it with 'harness check --update'")
    return data


def run_check(
    suite_path: str | Path, baseline_path: Path, *, update: bool = False, repeats: int | None = None,
    device: str = "cpu", time_tolerance: float | None = None, out: Any = None,
) -> int:
    """``harness check``: 0 when nothing regressed (or after ``--update``), 1 on a regression.

    Raises HarnessError (exit 2) for bad input: a suite that does not load, a missing or foreign
    baseline, a baseline made on another device.
    """
    import torch

    from harness.suite.load import load_suite

    out = out or sys.stdout
    if repeats is not None and repeats < 1:
        raise HarnessError(f"--repeats must be >= 1, got {repeats}")
    if time_tolerance is not None and not 0 < time_tolerance < 10:
        raise HarnessError(f"--time-tolerance must be a fraction > 0 (0.35 = 35%), got {time_tolerance}")
    old = _previous_baseline(baseline_path, update)
    dev = _check_device(device, old, baseline_path, update)
    suite = load_suite(suite_path, device=dev.type)
    tolerance = time_tolerance or (old or {}).get("tolerance", {}).get("time_rel", DEFAULT_TIME_TOLERANCE)
    rounds = repeats or (old or {}).get("rounds", DEFAULT_ROUNDS)
    subjects, reference = suite_subjects(suite, dev.type)
    if not subjects:
        raise HarnessError(f"{suite_path}: no variant to profile")
    t0 = time.perf_counter()
    now = measure(subjects, reference, rounds=rounds, device=dev)
    took = time.perf_counter() - t0
    with cpu_threads(dev, CPU_THREADS):
        meta = _provenance(dev)  # device_name shows the thread count measured with
    threads = CPU_THREADS if dev.type == "cpu" else torch.get_num_threads()
    refs = ", ".join(sorted({s.reference for s in subjects}))
    print(f"harness check: {len(now)} models of suite {suite.name} ({suite_path}), {rounds} interleaved "
          f"rounds, step time relative to {refs}; {dev.type}, {threads} thread(s), {took:.0f} s",
          file=out)
    findings = []
    if old is not None:
        if old.get("torch_version") != meta["torch_version"]:
            print(f"note: the baseline was made with torch {old.get('torch_version')}, this is "
                  f"{meta['torch_version']}: memory fields may move", file=out)
        findings = compare_confirmed(old["models"], now, subjects, reference, tolerance, rounds, dev,
                                      confirm=not update, out=out)
        print(findings_table(findings), file=out)
    if update:
        data = {"format": FORMAT, "suite": suite.name, "suite_file": str(suite_path), "reference": reference,
                **meta, "threads": threads, "rounds": rounds, "tolerance": _tolerance_note(tolerance),
                "models": now}
        _write_baseline(baseline_path, data, fresh=old is None, out=out)
        return 0
    return _summarise(findings, tolerance, refs, suite_path, baseline_path, out)


def _previous_baseline(path: Path, update: bool) -> dict[str, Any] | None:
    """The baseline to compare with; with ``--update`` it only supplies defaults and a comparison, and a
    missing or broken one is replaced."""
    if not update:
        return load_baseline(path)
    try:
        return load_baseline(path) if path.exists() else None
    except HarnessError:
        return None


def _check_device(device: str, old: dict[str, Any] | None, path: Path, update: bool) -> Any:
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
    tolerance: float, rounds: int, dev: Any, *, confirm: bool, out: Any,
) -> list[Finding]:
    """Compare; a slowdown must show twice: the suspects are timed against their references again and
    the lower ratio of the two runs counts (noise rarely strikes one model in two runs of rounds)."""
    findings = compare(base, now, time_tolerance=tolerance, reference=reference)
    slow = [f.model for f in findings if f.regression and f.quantity == "time_rel"]
    if not slow or not confirm:
        return findings
    print(f"re-timing {', '.join(slow)} to confirm the slowdown", file=out)
    keep = {*slow, *(s.reference for s in subjects if s.name in slow)}
    with cpu_threads(dev, CPU_THREADS):
        second = measure_relative_time([s for s in subjects if s.name in keep], reference, dev, rounds)
    for name in slow:
        now[name]["time_rel_first"] = now[name]["time_rel"]
        now[name]["time_rel"] = round(min(now[name]["time_rel"], second[name]["time_rel"]), 4)
    return compare(base, now, time_tolerance=tolerance, reference=reference)


def _tolerance_note(tolerance: float) -> dict[str, Any]:
    return {
        "time_rel": tolerance, "mem": MEM_TOLERANCE, "cuda_mem": CUDA_MEM_TOLERANCE,
        "note": "time_rel: allowed relative increase of (step time / reference step time); "
                "params, params_applied and flops_fwd are exact; act_bytes and cpu mem_bytes may "
                "not grow at all",
    }


def _write_baseline(path: Path, data: dict[str, Any], *, fresh: bool, out: Any) -> None:
    now, tolerance = data["models"], data["tolerance"]["time_rel"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if fresh:
        first = compare({}, now, time_tolerance=tolerance, reference=data["reference"])
        print(findings_table(first), file=out)
    print(f"baseline written to {path} ({len(now)} models, time tolerance ±{tolerance:.0%})", file=out)


def _summarise(
    findings: list[Finding], tolerance: float, refs: str, suite_path: str | Path, baseline_path: Path,
    out: Any,
) -> int:
    """Print the verdict; 1 if anything regressed."""
    bad = [f for f in findings if f.regression]
    counts = {v: sum(f.verdict == v for f in findings) for v in ("REGRESSION", "improved", "new", "gone")}
    summary = ", ".join(f"{n} {v.lower()}" for v, n in counts.items() if n) or "nothing beyond tolerance"
    print(f"harness check: {summary} (time tolerance ±{tolerance:.0%} relative to {refs}; "
          f"params and FLOPs exact; memory may not grow)", file=out)
    for f in bad:
        sys.stderr.write(f"harness check: REGRESSION: {f.model} {f.quantity}: {_fmt(f.baseline, f.quantity)}"
                         f" -> {_fmt(f.now, f.quantity)} {f.change()} ({f.why})\n")
    if bad:
        sys.stderr.write(f"harness check: {len(bad)} regression(s) against {baseline_path}; if intended, "
                         f"accept them with 'harness check {suite_path} --baseline {baseline_path} "
                         "--update'\n")
    return 1 if bad else 0


__all__ = ["Finding", "Subject", "compare", "compare_confirmed", "findings_table", "measure", "run_check",
           "suite_subjects"]
