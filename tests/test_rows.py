"""The typed result row: every committed row loads through the migration and round-trips unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.results.rows import SCHEMA_VERSION, ResultRow, migrate
from harness.results.store import ResultStore, load_rows, read_rows

RESULTS = Path(__file__).resolve().parent.parent / "results"


def _committed() -> list[dict]:
    return [row for path in sorted(RESULTS.glob("*.jsonl")) for row in read_rows(path)]


def test_every_committed_row_loads_and_round_trips() -> None:
    rows = _committed()
    assert len(rows) > 300
    for stored in rows:
        row = migrate(stored)
        assert row.run_id == stored["run_id"]
        out = row.to_dict()
        # every stored field comes back with its value but the retired report_spec (the report reads
        # the layout from the suite file); only fields the row lacked are added
        kept = {k: v for k, v in stored.items() if k != "report_spec"}
        assert {k: out[k] for k in kept} == kept and "report_spec" not in out, stored["run_id"]
        assert set(out) - set(stored) <= {"schema_version", "suite_file", "threads"}
        if "threads" not in stored and out["threads"] is not None:  # read from the device name
            assert f"({out['threads']} thread" in stored["device_name"]
        assert out["schema_version"] == SCHEMA_VERSION
        assert migrate(out) == row  # a migrated row is current: migrating again changes nothing


def test_committed_run_ids_are_unique_per_file_after_loading() -> None:
    for path in sorted(RESULTS.glob("*.jsonl")):
        ids = [r.run_id for r in load_rows(path)]
        assert len(ids) == len(set(ids)) and all(ids)


def test_extras_stay_top_level_fields(tmp_path: Path) -> None:
    row = ResultRow(run_id="x", suite="s", job="train", status="ok")
    row.update({"ponder_steps": 2.5, "value": 0.75})
    assert row.value == 0.75 and row.extras == {"ponder_steps": 2.5}
    store = ResultStore(tmp_path / "s.jsonl")
    store.append(row)
    line = (tmp_path / "s.jsonl").read_text().strip()
    data = json.loads(line)
    assert data["ponder_steps"] == 2.5 and data["schema_version"] == SCHEMA_VERSION
    assert list(data) == sorted(data)  # plain JSON, sorted keys
    assert load_rows(tmp_path) == [row]
    assert row.field_value("ponder_steps") == 2.5 and row.field_value("value") == 0.75


def test_legacy_flat_config_layout() -> None:
    row = migrate({"run_id": "old", "suite": "s", "metrics": None, "curve": None,
                   "config": {"seq_len": 64, "steps": 300, "batch_size": 16}})
    assert (row.seq_len, row.task_len, row.steps, row.batch_size) == (64, 64, 300, 16)
    assert row.metrics == {} and row.curve == [] and not row.is_profile
    # the row's own fields win over the config; the configured length stays the task's
    row = migrate({"seq_len": 33, "batch_size": 8, "job": "profile",
                   "config": {"task": {"seq_len": 32}, "train": {"steps": 10, "batch_size": 16}}})
    assert (row.seq_len, row.task_len, row.steps, row.batch_size) == (33, 32, 10, 8)
    assert row.is_profile


@pytest.mark.parametrize("metric, expected", [(None, 0.5), ("acc", 0.5), ("bpc", 1.25), ("nope", None)])
def test_metric_value(metric: str | None, expected: float | None) -> None:
    row = ResultRow(metric="acc", value=0.5, metrics={"acc": 0.5, "bpc": 1.25})
    assert row.metric_value(metric) == expected


def test_bounds_are_optional_and_round_trip() -> None:
    """A row's ``bounds`` (what its task declares) round-trips; a row without them (every row written
    before they existed, every profile row) reads as None and writes no such field."""
    declared = {"seq_acc": {"floor": 0.1, "chance": 0.15, "ceiling": 1.0, "higher_is_better": True}}
    row = migrate({"run_id": "a", "job": "train", "metric": "seq_acc", "bounds": declared})
    assert row.bounds == declared and row.to_dict()["bounds"] == declared
    assert migrate(row.to_dict()).bounds == declared
    for old in ({"run_id": "b"}, {"run_id": "c", "bounds": None}, {"run_id": "d", "bounds": "junk"}):
        row = migrate(old)
        assert row.bounds is None and "bounds" not in row.to_dict() and "bounds" not in row.extras
