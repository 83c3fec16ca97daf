"""Each suite's ``report:`` layout, read from its suite file as the user has it now.

The layout is :class:`harness.suite.spec.ReportSpec`, read by :func:`harness.suite.load.report_layout`
(no torch, no model built), so editing a suite's ``report:`` key changes the next report without any job
running again. The suite file of a suite's rows is the one its newest row records (``suite_file``,
relative to the working directory), else ``<suites dir>/<suite>.yaml``. Without either the suite's
section has the default layout (``ReportSpec()``) and the provenance section says so; a suite file that
does not load gives the default layout too, with its one-line error in the provenance section and as a
warning.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness.analysis.report.fmt import natural_key
from harness.analysis.report.load import row_order
from harness.core.errors import HarnessError
from harness.results.rows import ResultRow
from harness.suite.load import report_layout
from harness.suite.spec import ReportSpec

__all__ = ["SUITES_DIR", "SuiteLayout", "suite_file_candidates", "suite_layout", "suite_layouts"]

SUITES_DIR = Path("suites")  # where a suite's file is looked for when its rows record none that exists


@dataclass(frozen=True)
class SuiteLayout:
    """A suite's layout and where it came from."""

    suite: str
    spec: ReportSpec = field(default_factory=ReportSpec)
    path: str | None = None  # the suite file read; None: none found
    tried: tuple[str, ...] = ()  # the files looked for, in order
    error: str | None = None  # why ``path`` did not load (one line); the layout is then the default

    @property
    def warning(self) -> str | None:
        """The one-line warning of a suite file that does not load (None when it loaded or is missing)."""
        if self.error is None:
            return None
        return (f"suite '{self.suite}': {self.path} does not load, so the report uses the default layout "
                f"for it: {self.error}")


def suite_file_candidates(rows: Iterable[ResultRow], suite: str, suites_dir: Path = SUITES_DIR) -> list[Path]:
    """The files that may hold ``suite``, in the order they are tried: the one its newest row records,
    then ``suites_dir/<suite>.yaml``."""
    recorded = [r for r in rows if r.suite == suite and r.suite_file]
    out = []
    if recorded:
        newest = max(recorded, key=lambda r: (str(r.finished_at or ""), row_order(r)))
        out.append(Path(str(newest.suite_file)))
    fallback = Path(suites_dir) / f"{suite}.yaml"
    if fallback not in out:
        out.append(fallback)
    return out


def suite_layout(rows: Iterable[ResultRow], suite: str, suites_dir: Path = SUITES_DIR) -> SuiteLayout:
    """The layout of ``suite`` from the first of its candidate files that exists."""
    candidates = suite_file_candidates(rows, suite, suites_dir)
    tried = tuple(p.as_posix() for p in candidates)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return SuiteLayout(suite, tried=tried)
    try:
        spec = report_layout(path)
    except Exception as e:  # a refused suite (InputError), or any other failure: the report goes on
        text = str(e).strip().splitlines()[:1] or [""]
        first = text[0] if isinstance(e, HarnessError) else f"{type(e).__name__}: {text[0]}"
        return SuiteLayout(suite, path=path.as_posix(), tried=tried, error=first)
    return SuiteLayout(suite, spec, path.as_posix(), tried)


def suite_layouts(rows: list[ResultRow], suites_dir: Path = SUITES_DIR) -> dict[str, SuiteLayout]:
    """The layout of every suite that ``rows`` hold, in natural order of the suite names."""
    suites = sorted({str(r.suite) for r in rows if r.suite is not None}, key=natural_key)
    return {s: suite_layout(rows, s, suites_dir) for s in suites}
