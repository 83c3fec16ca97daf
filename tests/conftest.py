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


@pytest.fixture
def refused_suite(tmp_path, capsys):  # noqa: ANN001, ANN201
    """Write suite text, ``harness run`` it, assert the bad-input contract, return the one error line.

    The contract (docs/design.md): exit code 2, exactly one line on stderr, no traceback, nothing written.
    """
    from harness.cli.main import main

    def run(text: str, *overrides: str) -> str:
        suite = tmp_path / "bad.yaml"
        suite.write_text(text)
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
