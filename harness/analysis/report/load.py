"""The report's rows: read through the store, migrated to :class:`harness.results.rows.ResultRow`, in
one order.

Every collection the report walks is sorted by :func:`row_order` first, so the same rows in any file
order give the same report.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.analysis.report.fmt import natural_key, scalar_key
from harness.results.rows import ResultRow, migrate
from harness.results.store import latest_rows

__all__ = ["Loaded", "as_rows", "latest", "load", "load_rows", "row_order"]


def row_order(r: ResultRow) -> tuple[Any, ...]:
    """Suite, job kind, task, variant, seed, length, then when it finished."""
    return (str(r.suite), str(r.job or "train"), natural_key(r.task), natural_key(r.variant),
            scalar_key(r.seed), scalar_key(r.seq_len), str(r.finished_at), str(r.run_id))


@dataclass
class Loaded:
    """The rows of a results directory (last per run_id), unreadable lines skipped, files read."""

    rows: list[ResultRow]
    skipped: int
    files: int


def load(results_dir: Path) -> Loaded:
    """Every ``*.jsonl`` of ``results_dir`` as sorted :class:`ResultRow` objects."""
    stored = latest_rows(results_dir)
    return Loaded(sorted((migrate(r) for r in stored.rows), key=row_order), stored.skipped, stored.files)


def load_rows(results_dir: Path) -> list[ResultRow]:
    """Result rows from ``results_dir/*.jsonl``: unparseable lines skipped, the last row per run_id kept."""
    return load(results_dir).rows


def as_rows(rows: Any) -> list[ResultRow]:
    """Rows from ResultRows, dicts or a pandas DataFrame (as ``harness.load_results`` returns)."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
                for rec in rows.to_dict("records")]
    return [r if isinstance(r, ResultRow) else migrate(r) for r in rows]


def latest(rows: Iterable[ResultRow], key: tuple[str, ...]) -> tuple[list[ResultRow], int]:
    """One row per combination of the ``key`` fields: the most recently finished; also the number dropped."""
    best: dict[tuple[str, ...], ResultRow] = {}
    dropped = 0
    for r in rows:
        k = tuple(str(r.field_value(f)) for f in key)
        old = best.get(k)
        if old is not None:
            dropped += 1
            if (str(old.finished_at), str(old.run_id)) > (str(r.finished_at), str(r.run_id)):
                continue
        best[k] = r
    return sorted(best.values(), key=row_order), dropped
