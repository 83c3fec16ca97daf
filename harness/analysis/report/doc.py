"""The report as blocks: headings, paragraphs, tables, figures and lists, grouped into sections.

Every part of the report (:mod:`harness.analysis.report.sections`, ``claims``, ``literature``, ``pareto``,
``budget``) builds these blocks from its analysis; :func:`markdown_lines` writes them as
``report/tables.md`` and :mod:`harness.analysis.report.html` as ``report/index.html``. Text inside a
block keeps
the report's inline conventions (``code``, **bold**, *emphasis*, [links](#anchor), a newline inside a
table cell); each renderer turns those into its own markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.analysis.report.fmt import DASH
from harness.analysis.report.markdown import md_table

__all__ = ["Block", "Bullets", "Figure", "Heading", "Para", "Section", "Table", "markdown_lines"]


@dataclass(frozen=True)
class Heading:
    """A heading as :mod:`harness.analysis.report.text` writes it, its level in the leading ``#``s."""

    text: str

    @property
    def level(self) -> int:
        return len(self.text) - len(self.text.lstrip("#"))

    @property
    def title(self) -> str:
        return self.text.lstrip("#").strip()


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Table:
    """A table of text cells. ``keys``: one per row, what a filter matches (the variant in a suite's
    tables, the verdict in the claims ledger); empty when the table is not filterable. ``fold``: the
    columns whose cells the HTML page folds to their first words whatever their length (the papers'
    prose in the literature tables); markdown shows them whole."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    keys: tuple[str, ...] = ()
    fold: tuple[int, ...] = ()

    @classmethod
    def of(cls, headers: Iterable[Any], rows: Iterable[Iterable[Any]], keys: Iterable[Any] = (),
           fold: Iterable[int] = ()) -> Table:
        def text(c: Any) -> str:
            return DASH if c is None or str(c).strip() == "" else str(c)

        return cls(tuple(str(h) for h in headers), tuple(tuple(text(c) for c in row) for row in rows),
                   tuple(str(k) for k in keys), tuple(fold))


@dataclass(frozen=True)
class Figure:
    """A PNG of ``report/figures/``."""

    name: str
    alt: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass
class Section:
    """A heading and its blocks. ``kind``: ``intro``, ``literature``, ``claims``, ``suite`` or
    ``provenance``; ``key`` names the suite of a suite section."""

    heading: Heading
    kind: str
    blocks: list[Any] = field(default_factory=list)
    key: str = ""


Block = Heading | Para | Table | Figure | Bullets


def markdown_lines(blocks: Sequence[Block | Section]) -> list[str]:
    """The blocks as markdown lines, each block followed by one empty line."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Section):
            out += [b.heading.text, "", *markdown_lines(b.blocks)]
        elif isinstance(b, (Heading, Para)):
            out += [b.text, ""]
        elif isinstance(b, Table):
            out += [md_table(b.headers, b.rows), ""]
        elif isinstance(b, Figure):
            out += [f"![{b.alt}](figures/{b.name})", ""]
        elif isinstance(b, Bullets):
            out += [*(f"- {item}" for item in b.items), ""]
        else:
            raise TypeError(f"not a report block: {b!r}")
    return out
