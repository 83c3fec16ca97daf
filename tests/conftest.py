from __future__ import annotations

import os

import pytest

# Keep test timings independent of how many cores the machine has, and quiet.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _seeded() -> None:
    import torch

    torch.manual_seed(0)
