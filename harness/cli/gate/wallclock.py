"""The gate's measurements in this process: the counted costs (parameters, FLOPs, memory) and the
wall-clock step time of each model relative to its reference, with an interval over rounds."""

from __future__ import annotations

import functools
import gc
import math
import statistics
from collections.abc import Sequence
from typing import Any

from harness.cli.gate.subjects import Subject
from harness.core.device import cpu_threads
from harness.core.errors import HarnessError

DEFAULT_ROUNDS = 15
STEPS_PER_ROUND = 3
WARMUP_STEPS = 2
CPU_THREADS = 1  # torch threads while measuring on the CPU
CONFIDENCE = 0.95  # of the interval around the median ratio
EXACT = ("params", "params_applied", "flops_fwd")
MEMORY = ("act_bytes", "mem_bytes")


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(median, low, high): the median of ``values`` and a distribution-free interval for it.

    The interval is the pair of order statistics ``x_(k)`` and ``x_(n+1-k)`` with the largest ``k``
    for which the chance that the true median lies outside is at most ``1 - confidence``: that chance
    is ``2 P(B < k)`` for B ~ Binomial(n, 1/2) and does not depend on how the values are distributed.
    With too few values for any such ``k`` (n < 6 at 95%) the interval is the whole range.
    """
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("no values")
    k, below = 1, 0.0  # below: P(B < k)
    while k < (n + 1) / 2:
        below += math.comb(n, k - 1) / 2**n
        if 2 * below > 1 - confidence:
            break
        k += 1
    k = max(1, k - 1)
    return statistics.median(xs), xs[k - 1], xs[n - k]


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
    over rounds of (its time / the reference's time in that round) with its interval
    (:func:`median_interval`: ``time_rel_low``, ``time_rel_high``), and the median absolute time in ms
    (information only).
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
        mid, low, high = median_interval([t / rt for t, rt in zip(ts, ref)])
        out[s.name] = {"time_rel": mid, "time_rel_low": low, "time_rel_high": high,
                       "step_ms": statistics.median(ts)}
    return out


def measure(
    subjects: list[Subject], reference: str, *, rounds: int = DEFAULT_ROUNDS, device: Any = "cpu"
) -> dict[str, dict[str, Any]]:
    """Every quantity measured in this process, per subject: {name: {params, ..., time_rel, step_ms}}."""
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


__all__ = ["CONFIDENCE", "CPU_THREADS", "DEFAULT_ROUNDS", "EXACT", "MEMORY", "measure", "measure_costs",
           "measure_relative_time", "median_interval"]
