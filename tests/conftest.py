from __future__ import annotations

import functools
import os
import random
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from tiny_suites import write_suite, write_tiny_suite

# Tests assert no timings; one thread keeps them fast and immune to OpenMP spinning when the two
# cores are shared with another process. Subprocesses started by tests inherit this.
os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _seeded() -> None:
    import torch

    torch.manual_seed(0)


@pytest.fixture
def tiny_suite(tmp_path: Path) -> Callable[..., Path]:
    """``tiny_suite(*patches, file=None, **changes)``: write the tests' tiny suite (tests/tiny_suites.py)
    with ``patches`` then ``changes`` merged in, as ``tmp_path/file`` (default ``<name>.yaml``), and
    return its path."""
    return functools.partial(write_tiny_suite, tmp_path)


@pytest.fixture
def refused_suite(tmp_path, capsys):  # noqa: ANN001, ANN201
    """Write a suite (literal text, or data such as ``tiny_spec(...)``) as ``bad.yaml``, ``harness run``
    it, assert the bad-input contract, return the one error line.

    The contract (docs/design.md): exit code 2, exactly one line on stderr, no traceback, nothing written.
    """
    from harness.cli.main import main

    def run(text: str | Mapping[str, Any], *overrides: str) -> str:
        suite = write_suite(tmp_path / "bad.yaml", text)
        results, report = tmp_path / "results", tmp_path / "report"
        dirs = ["--results-dir", str(results), "--report-dir", str(report)]
        code = main(["run", str(suite), *overrides, *dirs])
        err = capsys.readouterr().err
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert not results.exists() and not report.exists()
        return lines[0]

    return run


class CountingRandom(random.Random):
    """``random.Random`` that counts its draws (calls of ``random()`` and ``getrandbits()``, which every
    other method is built on). The stream is the same: defining ``getrandbits`` keeps ``randrange``
    on the bits-based path of the base class."""

    def __init__(self, seed: Any = None) -> None:
        self.draws = 0
        super().__init__(seed)

    def random(self) -> float:
        self.draws += 1
        return super().random()

    def getrandbits(self, k: int) -> int:
        self.draws += 1
        return super().getrandbits(k)


@pytest.fixture
def counted_random(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], list[CountingRandom]]:
    """``counted_random(module)``: from now on the ``random.Random(seed)`` that ``module`` makes are
    :class:`CountingRandom`; returns the list they are appended to. The work of pure-Python generation
    (a corpus, a tree sampler) is counted in draws, the same on every machine, where a timing is not."""

    def count(module: Any) -> list[CountingRandom]:
        made: list[CountingRandom] = []

        def make(seed: Any = None) -> CountingRandom:
            made.append(CountingRandom(seed))
            return made[-1]

        monkeypatch.setattr(module, "random", types.SimpleNamespace(Random=make))
        return made

    return count
