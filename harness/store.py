"""Append-only JSON-lines results: one file per suite, one line per finished job.

Crash safety: a row is serialised first, then appended with a single ``write`` on an ``O_APPEND``
descriptor under an exclusive ``flock`` and ``fsync``-ed. A process killed at any moment either wrote
the whole line or nothing, except on a full disk or a power cut, which can leave a tail without its
newline: the next writer cuts such a tail off (under the lock) before appending, and readers skip any
line that does not parse.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every line is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class ResultStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def rows(self) -> Iterator[dict[str, Any]]:
        return read_rows(self.path)

    def done_ids(self) -> set[str]:
        """Jobs not to run again; a "skipped" cell is retried (its limit may have been raised since)."""
        return {r["run_id"] for r in self.rows() if "run_id" in r and r.get("status") != "skipped"}

    def append(self, row: dict[str, Any]) -> None:
        line = (json.dumps(_clean(row), sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size:
                os.lseek(fd, size - 1, os.SEEK_SET)
                if os.read(fd, 1) != b"\n":  # a torn tail from a crashed writer: drop it
                    _truncate_to_last_newline(fd, size)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _truncate_to_last_newline(fd: int, size: int) -> None:
    pos, chunk = size, 4096
    while pos > 0:
        start = max(0, pos - chunk)
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, pos - start)
        i = data.rfind(b"\n")
        if i >= 0:
            os.ftruncate(fd, start + i + 1)
            return
        pos = start
    os.ftruncate(fd, 0)


def read_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of one results file; lines that do not parse (a torn tail) are skipped."""
    path = Path(path)
    if not path.exists():
        return
    with path.open("rb") as f:
        for raw in f:
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(row, dict):
                yield row


def result_files(path_or_dir: str | Path) -> list[Path]:
    p = Path(path_or_dir)
    return sorted(p.glob("*.jsonl")) if p.is_dir() else [p]


def load_results(path_or_dir: str | Path) -> Any:
    """Every row of a results file or directory as a pandas DataFrame (last row per run_id wins)."""
    import pandas as pd

    rows: dict[str, dict[str, Any]] = {}
    extra: list[dict[str, Any]] = []
    for f in result_files(path_or_dir):
        for r in read_rows(f):
            if "run_id" in r:
                rows[r["run_id"]] = r
            else:
                extra.append(r)
    return pd.DataFrame([*rows.values(), *extra])
