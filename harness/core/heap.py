"""The C heap's policy for large blocks, pinned so that CPU step times measure the model, not glibc.

glibc serves a request above its mmap threshold (128 KiB at start, raised on the fly up to 32 MiB as
large blocks are freed) with a fresh ``mmap`` and gives heap memory above the trim threshold back to
the kernel on ``free``. A training step that frees hundreds of MB and asks for them again at the next
step then page-faults every page back in. On this project's 2-core VM a page fault costs about 2 us:
the Residual Shuffle-Exchange step at n = 8192 (checkpointed, ~150 MB recomputed per step) took
10,000 to 70,000 minor faults per step under the default policy, depending on what had been allocated
before in the process, and about 200 with it pinned; the recomputation pass ran in about 80 ms instead
of about 150 ms. Vanilla Transformer steps fault far less (about 3,500) and are unchanged within noise.

``pin_heap()`` raises the mmap threshold to its 32 MiB maximum and the trim threshold to 1 GiB, the
behaviour of a caching allocator (what PyTorch's CUDA allocator does on the GPU, and what jemalloc or
tcmalloc give on the CPU). Every harness process calls it once (the CLI, and each worker of ``--jobs``
and Ray), so every model is measured under the same policy. ``HARNESS_HEAP=system`` leaves the C
library's defaults alone, to compare. Other platforms and C libraries are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # the largest value glibc accepts on 64-bit systems
TRIM_THRESHOLD = 1 << 30

_state: str | None = None


def policy() -> str:
    """The policy this process runs under: what :func:`pin_heap` gave, or, before it ran, what it will
    give here ("pinned" on Linux unless ``HARNESS_HEAP=system``; "system" elsewhere)."""
    if _state is not None:
        return _state
    if os.environ.get("HARNESS_HEAP", "pinned") == "system" or not sys.platform.startswith("linux"):
        return "system"
    return "pinned"


def pin_heap() -> str:
    """Pin glibc's large-block policy once per process; returns what is in force ("pinned", "system")."""
    global _state
    if _state is not None:
        return _state
    _state = "system"
    if os.environ.get("HARNESS_HEAP", "pinned") == "system" or not sys.platform.startswith("linux"):
        return _state
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return _state
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1:
        _state = "pinned"
    return _state
