"""harness.core.heap: the pinned glibc policy keeps freed large blocks for reuse, not faulting them back
in."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.core.heap import pin_heap

# Three rounds of what a training step does to the heap: hold 60 blocks of 2 MiB, then free them all.
# Printed: the minor page faults of rounds 2 and 3. Under glibc's defaults the freed heap top goes
# back to the kernel and is faulted in again (all 30,720 pages a round on this project's machine);
# with the heap pinned the blocks are reused.
PROBE = """
import resource
from harness.core.heap import pin_heap
state = pin_heap()
import torch
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    held = [torch.ones(1 << 19) for _ in range(60)]
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del held
print(state, faults[1] + faults[2])
"""


def _probe(heap: str) -> tuple[str, int]:
    env = {**os.environ, "HARNESS_HEAP": heap}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    state, faults = out.stdout.split()
    return state, int(faults)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_pinned_heap_reuses_freed_blocks() -> None:
    pinned_state, pinned = _probe("pinned")
    system_state, system = _probe("system")
    assert (pinned_state, system_state) == ("pinned", "system")
    assert pinned * 4 < system


def test_pin_heap_is_idempotent() -> None:
    first = pin_heap()
    assert pin_heap() == first in ("pinned", "system")


def test_use_deterministic_keeps_fresh_tensors_unfilled() -> None:
    import torch
    import torch.utils.deterministic

    from harness.core.device import use_deterministic

    was = (torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled(),
           torch.utils.deterministic.fill_uninitialized_memory)
    try:
        use_deterministic()
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
        torch.utils.deterministic.fill_uninitialized_memory = was[2]
