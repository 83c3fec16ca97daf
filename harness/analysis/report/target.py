"""Where a report goes, and which results a report folder already belongs to.

A report is written beside the results it is built from: ``report/`` for the repository's ``results/``
(the default), ``<results-dir>/report`` for any other results folder (:func:`default_report_dir`).
Every report folder records the results folder it was built from in ``source.json`` (the path relative
to the report folder, so that moving both together keeps it true). Writing a report of other results
over it is refused (:func:`report_conflict`) unless the caller says so (``--overwrite-report``). A report
folder without ``source.json`` (written before it existed) counts as built from ``results/`` beside it,
which is where every such report came from by default.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.core.errors import HarnessError

__all__ = ["DEFAULT_RESULTS", "SOURCE_FILE", "ReportInUse", "built_from", "default_report_dir",
           "report_conflict", "write_source"]

DEFAULT_RESULTS = Path("results")
DEFAULT_REPORT = Path("report")
SOURCE_FILE = "source.json"
REPORT_FILES = ("tables.md", "index.html", SOURCE_FILE)


class ReportInUse(HarnessError):
    """The report folder holds the report of other results; nothing was written."""


def default_report_dir(results_dir: Path, cwd: Path | None = None) -> Path:
    """``report`` for the default ``results`` folder (of the working directory), else
    ``<results_dir>/report``."""
    cwd = Path.cwd() if cwd is None else cwd
    if Path(results_dir).resolve() == (cwd / DEFAULT_RESULTS).resolve():
        return DEFAULT_REPORT
    return Path(results_dir) / DEFAULT_REPORT


def built_from(report_dir: Path) -> Path | None:
    """The results folder the report in ``report_dir`` was built from (resolved); None when the folder
    holds no report."""
    report_dir = Path(report_dir)
    if not any((report_dir / name).exists() for name in REPORT_FILES):
        return None
    try:
        recorded = json.loads((report_dir / SOURCE_FILE).read_text(encoding="utf-8")).get("results")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if not isinstance(recorded, str):  # a report from before source.json: from results/ beside it
        return (report_dir.parent / DEFAULT_RESULTS).resolve()
    return (report_dir / recorded).resolve()


def report_conflict(results_dir: Path, report_dir: Path) -> str | None:
    """Why a report of ``results_dir`` may not be written into ``report_dir`` (it holds the report of
    another results folder), or None."""
    owner = built_from(report_dir)
    if owner is None or owner == Path(results_dir).resolve():
        return None
    return (f"--report-dir {report_dir}: holds the report of {_shown(owner)}, not of {results_dir}; "
            f"pass --overwrite-report to replace it, or leave --report-dir out to write "
            f"{default_report_dir(Path(results_dir))}")


def write_source(results_dir: Path, report_dir: Path) -> None:
    """Record in ``report_dir`` which results folder its report was built from."""
    rel = os.path.relpath(Path(results_dir).resolve(), Path(report_dir).resolve())
    text = json.dumps({"results": Path(rel).as_posix()}, indent=1) + "\n"
    (Path(report_dir) / SOURCE_FILE).write_text(text, encoding="utf-8", newline="\n")


def _shown(path: Path) -> str:
    """A path relative to the working directory where it is inside it."""
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix() + "/"
    except ValueError:
        return str(path)
