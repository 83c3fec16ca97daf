"""Where jobs run and under which numerics: the device, its name in result rows, deterministic kernels,
TF32 on CUDA, the thread count of a job and while timing, and the machine's memory."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def device_type(name: str) -> str:
    """The device type a suite's ``device`` stands for on this machine: ``auto`` is ``cuda`` where
    torch sees a GPU and ``cpu`` elsewhere; ``cpu`` and ``cuda`` stand for themselves (whether CUDA is
    there is checked when a job runs). Job identities hash this, never ``auto``."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def machine(kind: str) -> dict[str, Any]:
    """What a row records of the machine: the CPU's model and the instruction set torch's CPU kernels
    dispatch to (``AVX2``, ``AVX512``, ...: CPU results agree bit for bit only where both match), and
    the GPU's name on CUDA."""
    import torch

    return {"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "gpu": torch.cuda.get_device_name() if kind == "cuda" else None}


def resolve_device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but torch.cuda.is_available() is False")
    return torch.device(name)


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(kind: str) -> str:
    """The GPU's name, or the CPU's with the torch thread count now (workers of a parallel run
    change it between jobs)."""
    import torch

    if kind == "cuda":
        return torch.cuda.get_device_name()
    n = torch.get_num_threads()
    return f"{cpu_model()} ({n} thread{'' if n == 1 else 's'})"


def use_deterministic() -> None:
    """Deterministic kernels wherever torch has them (a warning where it has none), for every job and
    ``harness profile`` alike. torch's companion setting that fills each new tensor with NaN is a
    debugging aid that changes no result of correct code; it is switched off because it adds a memset
    to every allocation (at n = 8192 the shuffle-exchange step made ~580 such fills, ~18 ms a step)."""
    import torch
    import torch.utils.deterministic

    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]


def use_tf32() -> None:
    """TF32 tensor cores for float32 matmuls and convolutions on CUDA (Ampere and later)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def free_memory() -> None:
    """Collect garbage and return cached CUDA blocks to the device after a failed job."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def physical_memory_bytes() -> int | None:
    """This machine's RAM, where the OS says (Linux, macOS)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - platforms without sysconf
        return None


@contextlib.contextmanager
def cpu_threads(device: Any, n: int) -> Iterator[None]:
    """On the CPU, run the block with ``n`` torch threads (the count before is restored). The gate
    measures on one thread: speed ratios then do not depend on the machine's core count or on how
    well each model's small kernels parallelise, and a second core absorbs the machine's other work."""
    import torch

    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


DEFAULT_THREADS = 1  # TrainConfig.threads' default: a job's torch threads unless its suite says otherwise


def job_threads(train: dict[str, Any]) -> int:
    """The torch thread count a job runs at: its train settings' ``threads`` (see TrainConfig)."""
    return max(1, int(train.get("threads") or DEFAULT_THREADS))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads on any device (the count before is restored): a job's
    numbers on the CPU depend on it, so every job runs at its recorded setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
