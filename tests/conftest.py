from __future__ import annotations

import os

import pytest

# Tests assert no timings; one thread keeps them fast and immune to OpenMP spinning when the two
# cores are shared with another process. Subprocesses started by tests inherit this.
os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _seeded() -> None:
    import torch

    torch.manual_seed(0)
