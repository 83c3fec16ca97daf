"""Every committed suite, expanded today, names only jobs its results file already holds.

A ``run_id`` hashes a job's resolved model config, task config, train settings and seed. Refactoring a
model's config (a shared base class, a moved default) or the suite loader must leave every id as it
was, or a rerun would train everything again and the report would mix old and new rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.results.store import read_rows
from harness.suite.load import load_suite

ROOT = Path(__file__).resolve().parent.parent
SUITES = sorted((ROOT / "suites").glob("*.yaml"))


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_committed_suite_expands_to_committed_run_ids(path: Path) -> None:
    suite = load_suite(path)
    results = ROOT / "results" / f"{suite.name}.jsonl"
    if not results.exists():
        pytest.skip(f"no committed results for {suite.name}")
    stored = {r["run_id"]: r for r in read_rows(results) if "run_id" in r}
    missing = [(j.variant, j.task_name, j.kind, j.seed, j.seq_len)
               for j in suite.jobs if j.run_id not in stored]
    assert not missing, f"{len(missing)} of {len(suite.jobs)} jobs of {path.name} have new ids: {missing[:5]}"
    for job in suite.jobs:  # the stored config is the one the id was made from
        row = stored[job.run_id]
        assert row["variant"] == job.variant and row["model"] == job.model
        assert row["config"]["model"] == job.model_cfg
