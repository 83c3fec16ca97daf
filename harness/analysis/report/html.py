"""The report as one self-contained HTML page: ``report/index.html``.

Built from the same sections and blocks as ``tables.md`` (:mod:`harness.analysis.report.doc`), one
document per
language. Both languages are in the page; buttons switch between them (``lang`` is shown first), and a
block that reads the same in every language (a figure, a table of numbers and variant names) is written
once. Every table sorts by any column (numbers by value, "—" last); each suite has a text filter over
its tables' variants and the claims ledger a select over the verdicts. Figures are embedded as
``data:`` URIs and the style sheet and scripts are inline (:mod:`harness.analysis.report.html_assets`), so the
page opens from a file with no network. All text is escaped with :func:`html.escape`; the report's
inline conventions (``code``, **bold**, *emphasis*, [links](url)) become their tags.

The same documents give the same bytes. No torch import here.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.analysis.report.claims import anchor
from harness.analysis.report.doc import Block, Bullets, Figure, Heading, Para, Section, Table
from harness.analysis.report.html_assets import CSS, PAGE_JS, SORT_JS
from harness.analysis.report.text import VERDICT_WORDS

__all__ = ["FOLD_CHARS", "html_page", "inline", "sort_value", "write_html"]

FOLD_CHARS = 160  # a table cell whose text is longer than this is folded into a <details> showing its start
SUMMARY_CHARS = 80
PROSE_CHARS = 36  # the preview of a cell of a folded column (Table.fold: the papers' prose)
LANG_NAMES = {"en": "English", "zh": "中文"}
UI: dict[str, dict[str, str]] = {
    "en": {"brand": "harness report", "filter": "Filter variants:", "filter_hint": "e.g. pre, k2",
           "verdict": "Show verdict:", "all": "all", "sort": "click to sort", "shown": "rows shown:"},
    "zh": {"brand": "harness 报告", "filter": "筛选变体：", "filter_hint": "例如 pre, k2",
           "verdict": "按结论筛选：", "all": "全部", "sort": "点击排序", "shown": "显示行数："},
}

# ------------------------------------------------------------------------------------- inline text
_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|(?<![\w*])\*([^*\s](?:[^*]*[^*\s])?)\*(?![\w*])"
                     r"|\[([^\]]+)\]\(([^)\s]+)\)")


def inline(text: str) -> str:
    """Escaped HTML of one piece of report text: ``code``, **bold**, *emphasis*, [text](url) become
    tags (a link only to an anchor or http(s)), a newline a line break, everything else is escaped."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        code, strong, em, label, url = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif strong is not None:
            out.append(f"<strong>{inline(strong)}</strong>")
        elif em is not None:
            out.append(f"<em>{inline(em)}</em>")
        elif url.startswith(("#", "https://", "http://")):
            out.append(f'<a href="{html.escape(url, quote=True)}">{inline(label)}</a>')
        else:
            out.append(html.escape(m.group(0)))
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out).replace("\n", "<br>")


def _plain(text: str) -> str:
    """The text without its inline markup (for a folded cell's summary)."""
    text = re.sub(r"\[([^\]]+)\]\([^)\s]+\)", r"\1", text)
    return re.sub(r"`|\*\*|(?<![\w*])\*(?=\S)|(?<=\S)\*(?![\w*])", "", text)


# ------------------------------------------------------------------------------------ sort values
_NUMBER = re.compile(r"[<>≤≥~×]?\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
                     r"(?:(KiB|MiB|GiB| KiB| MiB| GiB| B|K|M|B|%))?(?![\w.\-])")
_UNITS = {"K": 1e3, "M": 1e6, "B": 1e9, " B": 1.0, "KiB": 2.0**10, "MiB": 2.0**20, "GiB": 2.0**30, "%": 1.0}


def sort_value(text: str) -> float | None:
    """The number a cell sorts by when it starts with one, in the report's formats ("0.8123 ± 0.0100",
    "+0.0120", "12.3K", "1.20B", "3.5 MiB", "512 B", "42%", "<0.0001", "2017 (notes: 2018)"); None for
    text ("k2", "n/r", "—")."""
    s = _plain(text).strip()
    m = _NUMBER.match(s)
    if m is None:
        return None
    unit = m.group(2) or ""
    value = float(m.group(1)) * _UNITS.get(unit.strip() if unit.strip() != "B" else unit, 1.0)
    if s.startswith("<"):
        value = math.nextafter(value, -math.inf)
    elif s.startswith(">"):
        value = math.nextafter(value, math.inf)
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------------------------------ blocks
def _cell(text: str, prose: bool = False) -> str:
    """One cell; a long one (or, with ``prose``, any longer than its preview) folded to its start."""
    v = None if prose else sort_value(text)
    plain = " ".join(_plain(text).split())
    shown = PROSE_CHARS if prose else SUMMARY_CHARS
    fold = len(plain) > (shown if prose else FOLD_CHARS)
    cls = "fold prose" if fold and prose else "fold" if fold else "num" if v is not None else ""
    attrs = (f' data-v="{v!r}"' if v is not None else "") + (f' class="{cls}"' if cls else "")
    if fold:
        preview = f'<span class="pv">{html.escape(plain[:shown])}…</span>'
        body = f"<details><summary>{preview}</summary>{inline(text)}</details>"
    else:
        body = inline(text)
    return f"<td{attrs}>{body}</td>"


def _table(t: Table, lang: str, filter_kind: str) -> str:
    sort = html.escape(UI[lang]["sort"], quote=True)
    head = "".join(f'<th scope="col" tabindex="0" title="{sort}">{inline(h)}<span class="arrow"></span></th>'
                   for h in t.headers)
    wide = bool(t.fold) or any(len(_plain(c)) > FOLD_CHARS for row in t.rows for c in row)
    cls = "sortable wide" if wide else "sortable"
    filt = f' data-filter="{filter_kind}"' if filter_kind and t.keys else ""
    rows = []
    for i, row in enumerate(t.rows):
        key = f' data-key="{html.escape(t.keys[i], quote=True)}"' if filt and i < len(t.keys) else ""
        rows.append(f"<tr{key}>" + "".join(_cell(c, j in t.fold) for j, c in enumerate(row)) + "</tr>")
    return (f'<div class="tw"><table class="{cls}"{filt}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _figure(f: Figure, fig_dir: Path) -> str:
    data = base64.b64encode((fig_dir / f.name).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(f.alt, quote=True)}">'
            "</figure>")


def _block(b: Block, lang: str, ctx: _Context) -> str:
    if isinstance(b, Heading):
        level = min(max(b.level, 1), 6)
        return f'<h{level} id="{ctx.heading_id(b)}">{inline(b.title)}</h{level}>'
    if isinstance(b, Para):
        return f"<p>{inline(b.text)}</p>"
    if isinstance(b, Table):
        return _table(b, lang, ctx.filter_kind)
    if isinstance(b, Figure):
        return _figure(b, ctx.fig_dir)
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{inline(item)}</li>" for item in b.items) + "</ul>"
    raise TypeError(f"not a report block: {b!r}")


class _Context:
    """What rendering a section needs: the figures folder, the section's id, its tables' filter."""

    def __init__(self, fig_dir: Path, section_id: str = "", filter_kind: str = "") -> None:
        self.fig_dir, self.section_id, self.filter_kind = fig_dir, section_id, filter_kind
        self.used: set[str] = set()

    def heading_id(self, h: Heading) -> str:
        base = (self.section_id + "-" if self.section_id else "") + anchor(h.text).lstrip("#")
        hid, k = base, 1
        while hid in self.used:
            k += 1
            hid = f"{base}-{k}"
        self.used.add(hid)
        return html.escape(hid, quote=True)


def _aligned(seqs: Sequence[Sequence[Any]]) -> bool:
    """Whether the languages' block lists have the same shape, so they can be interleaved."""
    return len({len(s) for s in seqs}) == 1 and all(
        len({(type(b).__name__, getattr(b, "kind", ""), getattr(b, "key", "")) for b in group}) == 1
        for group in zip(*seqs))


def _blocks(per_lang: Mapping[str, Sequence[Block]], ctx: _Context) -> list[str]:
    """Blocks of every language: one copy where all languages agree, else one per language."""
    langs = list(per_lang)
    seqs = [per_lang[lang] for lang in langs]
    out: list[str] = []
    if not _aligned(seqs):
        for lang, seq in zip(langs, seqs):
            out.append(f'<div class="l-{lang}">' + "".join(_block(b, lang, ctx) for b in seq) + "</div>")
        return out
    for group in zip(*seqs):
        if all(b == group[0] for b in group):
            out.append(_block(group[0], langs[0], ctx))
            continue
        for lang, b in zip(langs, group):
            inner = _block(b, lang, ctx)
            tag = "span" if isinstance(b, Heading) else "div"
            out.append(f'<{tag} class="l-{lang}">{inner}</{tag}>')
    return out


def _spans(texts: Mapping[str, str]) -> str:
    """The same label in every language, each in a span shown only in its language."""
    return "".join(f'<span class="l-{lang}">{inline(text)}</span>' for lang, text in texts.items())


def _controls(kind: str, langs: Sequence[str], verdicts: Sequence[str]) -> str:
    if kind == "suite":
        hints = {lang: UI[lang]["filter_hint"] for lang in langs}
        return (f'<div class="controls"><label>{_spans({lang: UI[lang]["filter"] for lang in langs})} '
                f'<input type="search" class="filter" {_data_words(hints)}></label>{_shown(langs)}</div>')
    if kind == "claims" and verdicts:
        first = langs[0]
        opts = [f'<option value="" {_data_words({lang: UI[lang]["all"] for lang in langs})}>'
                f'{html.escape(UI[first]["all"])}</option>']
        for v in verdicts:
            words = {lang: VERDICT_WORDS[lang][v] for lang in langs}
            opts.append(f'<option value="{html.escape(v, quote=True)}" {_data_words(words)}>'
                        f"{html.escape(words[first])}</option>")
        return (f'<div class="controls"><label>{_spans({lang: UI[lang]["verdict"] for lang in langs})} '
                f'<select class="filter">{"".join(opts)}</select></label>{_shown(langs)}</div>')
    return ""


def _shown(langs: Sequence[str]) -> str:
    label = _spans({lang: UI[lang]["shown"] for lang in langs})
    return f'<span class="muted">{label} <span class="shown"></span></span>'



def _data_words(words: Mapping[str, str]) -> str:
    return " ".join(f'data-{lang}="{html.escape(w, quote=True)}"' for lang, w in words.items())


def _section(group: Sequence[Section], langs: Sequence[str], fig_dir: Path) -> tuple[str, str]:
    """One section in every language, and its entry of the page's navigation."""
    ids = [anchor(s.heading.text).lstrip("#") for s in group]
    sid = html.escape(ids[0], quote=True)
    extra = "".join(f'<span id="{html.escape(i, quote=True)}"></span>' for i in dict.fromkeys(ids[1:])
                    if i != ids[0])
    first = group[0]
    filter_kind = {"suite": "variant", "claims": "verdict"}.get(first.kind, "")
    verdicts = sorted({k for s in group for b in s.blocks if isinstance(b, Table) for k in b.keys},
                      key=list(VERDICT_WORDS["en"]).index) if first.kind == "claims" else []
    ctx = _Context(fig_dir, ids[0], filter_kind)
    level = min(max(first.heading.level, 1), 6)
    titles = {lang: s.heading.title for lang, s in zip(langs, group)}
    head = f"<h{level}>{_spans(titles)}</h{level}>"
    body = "".join(_blocks({lang: s.blocks for lang, s in zip(langs, group)}, ctx))
    kind = html.escape(first.kind, quote=True)
    html_ = (f'<section id="{sid}" class="sec sec-{kind}" data-kind="{kind}">{extra}{head}'
             f"{_controls(first.kind, langs, verdicts)}{body}</section>")
    nav = "" if first.kind == "intro" else f'<a href="#{sid}">{_spans(titles)}</a>'
    return html_, nav


def _main(docs: Mapping[str, Sequence[Section | Block]], fig_dir: Path) -> tuple[list[str], list[str]]:
    langs = list(docs)
    seqs = [docs[lang] for lang in langs]
    if not _aligned(seqs):  # never expected: each language's document on its own
        return [f'<div class="l-{lang}">' + "".join(_main({lang: docs[lang]}, fig_dir)[0]) + "</div>"
                for lang in langs], []
    parts, nav = [], []
    for group in zip(*seqs):
        if isinstance(group[0], Section):
            part, link = _section(group, langs, fig_dir)
            parts.append(part)
            if link:
                nav.append(link)
        else:
            parts += _blocks({lang: [b] for lang, b in zip(langs, group)}, _Context(fig_dir))
    return parts, nav


def html_page(docs: Mapping[str, Sequence[Section | Block]], fig_dir: Path, lang: str,
              sort_js: str = SORT_JS) -> str:
    """The page of the documents (language -> sections), ``lang`` shown first; ``sort_js`` must define
    ``sortTable(table, col)`` (tests pass a broken one)."""
    langs = [lang, *(other for other in docs if other != lang)]
    ordered = {other: docs[other] for other in langs}
    parts, nav = _main(ordered, fig_dir)
    title = next((b.heading.title for b in ordered[lang] if isinstance(b, Section)), "harness report")
    buttons = "".join(f'<button type="button" data-set-lang="{x}">{html.escape(LANG_NAMES.get(x, x))}'
                      "</button>" for x in sorted(langs))
    brand = _spans({x: UI[x]["brand"] for x in langs})
    return "\n".join([
        "<!DOCTYPE html>",
        f'<html lang="{html.escape(lang, quote=True)}" data-lang="{html.escape(lang, quote=True)}">',
        '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head>",
        f'<body><header class="bar"><span class="brand">{brand}</span><nav>{"".join(nav)}</nav>'
        f'<span class="langs">{buttons}</span></header>',
        "<main>", *parts, "</main>",
        f"<script>{sort_js}\n{PAGE_JS}</script>",
        "</body></html>", ""])


def write_html(docs: Mapping[str, Sequence[Section | Block]], fig_dir: Path, path: Path, lang: str,
               sort_js: str = SORT_JS) -> Path:
    """Write :func:`html_page` to ``path``; return it."""
    path.write_text(html_page(docs, fig_dir, lang, sort_js), encoding="utf-8", newline="\n")
    return path
