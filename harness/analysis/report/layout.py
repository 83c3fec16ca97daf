"""A suite's ``report:`` layout, read once from the rows that carry it (``report_spec``).

The suite file validates the layout when a suite runs (``harness.suite.load.ReportSpec``); rows store it
as plain JSON. Rows written by older code may lack keys added since, so every key has a default here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.analysis.report.load import row_order
from harness.results.rows import ResultRow

__all__ = ["MatrixLayout", "ReportLayout", "suite_layout"]


@dataclass(frozen=True)
class MatrixLayout:
    """A train-setting x eval-mode table: rows are variants, columns eval modes ('' = headline)."""

    task: str
    metric: str
    rows: dict[str, str]  # variant -> row label
    columns: dict[str, str]  # eval mode -> column label
    title: str = ""
    paper: str | None = None  # "<paper id>.<table>" of literature.yaml
    scale: float = 1.0  # multiply measured values (100: percent, as papers print them)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MatrixLayout:
        return cls(task=str(d["task"]), metric=str(d["metric"]), rows=dict(d["rows"]),
                   columns=dict(d["columns"]), title=str(d.get("title") or ""),
                   paper=str(d["paper"]) if d.get("paper") else None, scale=float(d.get("scale") or 1.0))


@dataclass(frozen=True)
class ReportLayout:
    """What the report shows of a suite besides its per-task ablation tables."""

    grid: tuple[str, ...] = ()  # metrics per cell of a variant x task overview
    extras: tuple[str, ...] = ()  # row fields added to each overview cell (e.g. ponder_steps)
    matrix: tuple[MatrixLayout, ...] = ()
    fit_range: tuple[int, ...] = ()  # (lo, hi): cost exponents fitted on lo <= n <= hi
    ratio_at: Any = None  # cost relative to the references at this length
    references: tuple[str, ...] = ()  # cost sweep references (default: the vanilla variants)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ReportLayout:
        d = d or {}
        return cls(grid=tuple(str(m) for m in d.get("grid") or []),
                   extras=tuple(str(e) for e in d.get("extras") or []),
                   matrix=tuple(MatrixLayout.from_dict(m) for m in d.get("matrix") or []),
                   fit_range=tuple(int(x) for x in d.get("fit_range") or []),
                   ratio_at=d.get("ratio_at"), references=tuple(str(v) for v in d.get("references") or []))


def suite_layout(rows: Iterable[ResultRow]) -> ReportLayout:
    """The layout of the suite's most recent run (the suite file as the user has it now)."""
    with_spec = [r for r in rows if r.report_spec]
    if not with_spec:
        return ReportLayout()
    newest = max(with_spec, key=lambda r: (str(r.finished_at or ""), row_order(r)))
    return ReportLayout.from_dict(newest.report_spec)
