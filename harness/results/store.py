"""Append-only JSON-lines results: one file per suite, one line per finished job.

Crash safety: a row is serialised first, then appended with a single ``write`` on an ``O_APPEND``
descriptor under an exclusive ``flock`` and ``fsync``-ed. A process killed at any moment either wrote
the whole line or nothing, except on a full disk or a power cut, which can leave a tail without its
newline: the next writer cuts such a tail off (under the lock) before appending, and readers skip any
line that does not parse.

Rows are plain JSON objects with sorted keys on disk; :func:`load_rows` gives them back as typed
:class:`harness.results.rows.ResultRow` objects, old layouts migrated (:func:`harness.results.rows.migrate`).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.results.rows import ResultRow, migrate


def json_safe(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every line is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class ResultStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def rows(self) -> Iterator[dict[str, Any]]:
        return read_rows(self.path)

    def done_ids(self) -> set[str]:
        """Jobs not to run again; a "skipped" cell is retried (its limit may have been raised since)."""
        return {r["run_id"] for r in self.rows() if "run_id" in r and r.get("status") != "skipped"}

    def append(self, row: ResultRow | Mapping[str, Any]) -> None:
        """Append one row (a :class:`ResultRow` or its dict form) as one line of sorted-key JSON."""
        data = row.to_dict() if isinstance(row, ResultRow) else dict(row)
        line = (json.dumps(json_safe(data), sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open_locked(self.path)
        try:
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


def _open_locked(path: Path) -> int:
    """The results file opened for appending under its exclusive lock. :func:`prune_rows` replaces the
    file while holding the lock, so a writer that got the lock on the replaced file opens it again."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def prune_rows(path: str | Path, keep: set[str], *, dry_run: bool = False) -> list[dict[str, Any]]:
    """Drop from a results file every row whose run_id is not in ``keep`` (rows of jobs a suite no
    longer expands to, after a task or variant changed), and return them; rows without a run_id and
    every row of a kept run_id stay, in order, byte for byte; lines that do not parse are dropped
    (returned as ``{}``). The file is rewritten atomically under the store's lock: a temporary file
    beside it, fsync-ed, then ``os.replace``. ``dry_run``: only say what would go."""
    path = Path(path)
    if not path.is_file():
        return []
    fd = _open_locked(path)
    try:
        kept: list[bytes] = []
        dropped: list[dict[str, Any]] = []
        with open(fd, "rb", closefd=False) as f:
            f.seek(0)
            for raw in f:
                if not raw.strip():
                    continue
                row = _parse_line(raw)
                if row is None:
                    dropped.append({})
                elif isinstance(row.get("run_id"), str) and row["run_id"] not in keep:
                    dropped.append(row)
                else:
                    kept.append(raw if raw.endswith(b"\n") else raw + b"\n")
        if dropped and not dry_run:
            tmp = path.with_name(f".{path.name}.prune-{os.getpid()}")
            with tmp.open("wb") as out:
                out.writelines(kept)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the rename itself survives a power cut
            finally:
                os.close(dir_fd)
        return dropped
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


def _parsed_lines(path: Path) -> Iterator[dict[str, Any] | None]:
    """Each non-blank line of a results file as a dict, or None where it does not parse as one."""
    if not path.is_file():
        return
    with path.open("rb") as f:
        for raw in f:
            if raw.strip():
                yield _parse_line(raw)


def _parse_line(raw: bytes) -> dict[str, Any] | None:
    """One line of a results file as a dict, or None where it does not parse as one (a torn tail)."""
    try:
        row = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return row if isinstance(row, dict) else None


def read_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of one results file, as stored; lines that do not parse (a torn tail) are skipped."""
    return (row for row in _parsed_lines(Path(path)) if row is not None)


def result_files(path_or_dir: str | Path) -> list[Path]:
    """Every ``*.jsonl`` of a directory, or the one file named (none when the path does not exist)."""
    p = Path(path_or_dir)
    if p.is_dir():
        return sorted(p.glob("*.jsonl"))
    return [p] if p.is_file() else []


@dataclass
class StoredRows:
    """What a results file or directory holds: the rows as stored (the last row per run_id, at the
    position of its first), the number of lines that did not parse, and the number of files read."""

    rows: list[dict[str, Any]]
    skipped: int
    files: int


def latest_rows(path_or_dir: str | Path) -> StoredRows:
    """The rows of a results file or directory, the last row per run_id of each file winning (two
    suites that ran the same job each keep their row: a run_id does not hash the suite's name)."""
    by_id: dict[tuple[str, str], dict[str, Any]] = {}
    anonymous: list[dict[str, Any]] = []
    skipped = 0
    files = result_files(path_or_dir)
    for f in files:
        for row in _parsed_lines(f):
            if row is None:
                skipped += 1
            elif isinstance(row.get("run_id"), str) and row["run_id"]:
                by_id[(f.name, row["run_id"])] = row
            else:
                anonymous.append(row)
    return StoredRows([*by_id.values(), *anonymous], skipped, len(files))


def load_rows(path_or_dir: str | Path) -> list[ResultRow]:
    """The rows of a results file or directory as :class:`ResultRow` (last per run_id, file order)."""
    return [migrate(r) for r in latest_rows(path_or_dir).rows]


def load_results(path_or_dir: str | Path) -> Any:
    """Every row of a results file or directory as a pandas DataFrame (last row per run_id wins), with
    the columns as stored."""
    import pandas as pd

    return pd.DataFrame(latest_rows(path_or_dir).rows)
