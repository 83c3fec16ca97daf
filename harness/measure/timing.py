"""Wall-clock measures: step functions timed side by side (the gate, the benchmarks) and the matmul
peak that MFU is a fraction of."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Literal

import torch

from harness.measure.step import sync

MATMUL_N = 2048
PEAK_CACHE: dict[str, float] = {}


def alternate_step_ms(
    steps: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    per_round: int,
    device: torch.device | str = "cpu",
    order: Literal["reverse", "rotate"] = "reverse",
) -> dict[str, list[float]]:
    """Wall times in ms of each named step function, measured side by side, in the order they ran.

    Each round runs every function ``per_round`` times in turn, so that slow phases of a shared or
    noisy machine fall on all of them alike; a ratio of their medians is then a fair comparison where
    absolute times are not. From one round to the next the order reverses (``reverse``) or rotates
    by one (``rotate``: no function always follows the same one). The caller warms up.
    """
    device = torch.device(device)
    times: dict[str, list[float]] = {k: [] for k in steps}
    names = list(steps)
    for r in range(rounds):
        if order == "rotate":
            turn = names[r % len(names):] + names[: r % len(names)]
        else:
            turn = names if r % 2 == 0 else names[::-1]
        for k in turn:
            for _ in range(per_round):
                sync(device)
                start = time.perf_counter()
                steps[k]()
                sync(device)
                times[k].append((time.perf_counter() - start) * 1e3)
    return times


def canonical(device: torch.device | str) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def matmul_peak_flops(device: torch.device | str, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of a 2048 x 2048 matmul in ``dtype`` on ``device``, measured once per process and cached.

    The MFU denominator: a peak achieved on the same device in the same process (under the same
    thread count and TF32 settings as the model), not a datasheet number. Median of 5 timings after
    2 warm-up runs; on CUDA each timing spans 20 matmuls so that launch overhead does not dominate.
    """
    device = canonical(device)
    key = f"{device}/{dtype}"
    if key not in PEAK_CACHE:
        n = MATMUL_N
        # A private generator: measuring must not advance the caller's RNG stream.
        generator = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(n, n, device=device, generator=generator).to(dtype)
        b = torch.randn(n, n, device=device, generator=generator).to(dtype)
        reps = 20 if device.type == "cuda" else 1
        for _ in range(2):
            torch.mm(a, b)
        times = []
        for _ in range(5):
            sync(device)
            start = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            sync(device)
            times.append((time.perf_counter() - start) / reps)
        PEAK_CACHE[key] = 2 * n**3 / statistics.median(times)
    return PEAK_CACHE[key]
