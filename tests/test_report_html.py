"""report/index.html without a browser: self-contained (no network resource), every suite and figure in
it, both languages, escaped text, numeric sort keys, deterministic bytes; the committed page is built
from the current style sheet and scripts."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.report import write_report
from harness.analysis.report.html import inline, sort_value
from harness.analysis.report.html_assets import CSS, PAGE_JS, SORT_JS
from harness.analysis.report.text import LIT_HEADERS, TEXT

REPO = Path(__file__).resolve().parent.parent
EVIL = "<script>alert(1)</script> & \"quoted\""
ODD_VARIANT = "a<b>&c"


def _row(suite: str, variant: str, seed: int, value: float, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "suite": suite, "job": "train", "task": "copy", "status": "ok", "variant": variant,
        "model": "vanilla", "seed": seed, "value": value, "metric": "seq_acc", "metrics": {"seq_acc": value},
        "higher_is_better": True, "params": 12_345, "params_applied": 12_345, "flops_fwd": 2.5e6,
        "mem_bytes": 3 * 2**20, "mem_kind": "cpu_estimate", "act_bytes": 2**20, "step_ms": 10.0 + seed,
        "tokens_per_s": 1e4, "mfu": 0.01, "device": "cpu", "device_name": "Synthetic CPU",
        "torch_version": "2.13.0", "harness_version": "0.1.0", "git_commit": "abc1234", "seq_len": 16,
        "batch_size": 8, "baseline": "base", "suite_description": f"Suite {suite}: {EVIL}",
        "finished_at": f"2025-01-0{seed + 1}T10:00:00Z",
        "config": {"train": {"steps": 100, "batch_size": 8}, "task": {"seq_len": 16}},
        "run_id": f"{suite}-{variant}-{seed}",
    }
    row.update(kw)
    return row


def _rows() -> list[dict[str, Any]]:
    rows = []
    for suite in ("alpha", "beta"):
        for seed in range(3):
            noise = (0.01, -0.02, 0.005)[seed]
            rows += [_row(suite, "base", seed, 0.5 + noise),
                     _row(suite, "better", seed, 0.8 + noise, step_ms=20.0 + seed),
                     _row(suite, ODD_VARIANT, seed, 0.45 + noise + 0.01 * seed, params=1_500_000)]
    return rows


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("results")
    by_suite: dict[str, list[str]] = {}
    for r in _rows():
        by_suite.setdefault(r["suite"], []).append(json.dumps(r))
    for suite, lines in by_suite.items():
        (d / f"{suite}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


@pytest.fixture(scope="module", autouse=True)
def _literature(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The literature tables and the claims show where the report's suites measure a paper or bear a
    claim: in this module suite alpha measures the Transformer and bears two of its claims (one without
    rows)."""
    import yaml

    from harness.analysis.report import literature

    data = yaml.safe_load(literature.LITERATURE_PATH.read_text(encoding="utf-8"))
    paper = next(p for p in data["papers"] if p["id"] == "transformer")
    paper["measured"] = {"suite": "alpha", "variant": "better", "baseline": "base"}
    text = {"en": "Better is better.", "zh": "更好。"}
    paper["claims"] += [{"id": f"alpha-{v}", "by": "paper", "source": "a test", "text": text,
                         "test": {"kind": "metric", "suite": "alpha", "task": "copy", "variant": v,
                                  "reference": "base", "expect": "higher"}} for v in ("better", "absent")]
    lit = tmp_path_factory.mktemp("lit") / "literature.yaml"
    lit.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(literature, "LITERATURE_PATH", lit)
        mp.setattr("harness.analysis.claims.schema.CLAIMS_PATH", lit)
        yield


@pytest.fixture(scope="module")
def report(results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_report(results, out)
    return out


@pytest.fixture(scope="module")
def page(report: Path) -> str:
    return (report / "index.html").read_text(encoding="utf-8")


class _Resources(HTMLParser):
    """Every tag, and the attributes that make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.fetched: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "srcset", "data", "poster") or (tag == "link" and name == "href"):
                self.fetched.append((tag, name, value or ""))
            elif name == "href":
                self.links.append(value or "")


def test_page_loads_nothing_from_the_network(page: str) -> None:
    parser = _Resources()
    parser.feed(page)
    assert "link" not in parser.tags and "iframe" not in parser.tags
    assert parser.fetched and all(v.startswith("data:image/png;base64,") for _, _, v in parser.fetched)
    assert not re.search(r"url\(|@import", page)
    assert not re.search(r"<script[^>]*\ssrc=", page)
    # links are navigation, not resources: anchors in the page and the papers' arXiv pages
    assert all(h.startswith(("#", "https://arxiv.org/")) for h in parser.links)
    ids = set(re.findall(r'\sid="([^"]+)"', page))
    assert {h[1:] for h in parser.links if h.startswith("#")} <= ids


def test_every_part_and_suite_is_in_the_page(page: str) -> None:
    for sid in ("suite-alpha", "suite-beta", "claims", "provenance", "transformer-series"):
        assert f'<section id="{sid}"' in page, sid
    assert page.count('<input type="search" class="filter"') == 2  # one variant filter per suite
    assert '<select class="filter">' in page  # the claims' verdict filter
    # every suite table row carries its variant as the filter key
    keys = re.findall(r'<tr data-key="([^"]*)">', page)
    assert {"base", "better", "a&lt;b&gt;&amp;c", "not measured"} <= set(keys)


def test_figures_are_embedded(report: Path, page: str) -> None:
    pngs = sorted((report / "figures").glob("*.png"))
    assert pngs  # metric and accuracy-against-cost figures of both suites
    embedded = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == len(pngs)  # each figure once, shared by both languages
    assert {base64.b64decode(e) for e in embedded} == {p.read_bytes() for p in pngs}


def test_both_languages_with_the_notes_headers(results: Path, page: str, tmp_path: Path) -> None:
    assert '<html lang="en" data-lang="en">' in page
    for lang in ("en", "zh"):
        for header in LIT_HEADERS[lang]:
            assert f">{header}<" in page, header
    assert TEXT["zh"]["claims"].lstrip("# ") in page and 'class="l-zh"' in page
    write_report(results, tmp_path, lang="zh")
    zh = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert '<html lang="zh" data-lang="zh">' in zh  # shown first; the same content otherwise
    assert zh.count("<td") == page.count("<td")


def test_cell_text_is_escaped(page: str) -> None:
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot;" in page
    assert "<td>a&lt;b&gt;&amp;c</td>" in page
    assert page.count("<script>") == 1  # only the page's own


def test_inline_markup() -> None:
    assert inline("`x<y`, **bold**, *em*") == "<code>x&lt;y</code>, <strong>bold</strong>, <em>em</em>"
    assert inline("[section](#suite-quick)") == '<a href="#suite-quick">section</a>'
    assert inline("[t](javascript:alert(1))") == "[t](javascript:alert(1))"
    assert inline("a\nb & c") == "a<br>b &amp; c"
    assert inline("2 * 3 * 4") == "2 * 3 * 4"


@pytest.mark.parametrize(("text", "value"), [
    ("0.8123 ± 0.0100", 0.8123), ("+0.0120 ± 0.0300", 0.012), ("-0.1669 ± 0.0677", -0.1669),
    ("12.3K", 12_300.0), ("1.20B", 1.2e9), ("63.1M", 63.1e6), ("512 B", 512.0), ("3.5 MiB", 3.5 * 2**20),
    ("1.25 GiB", 1.25 * 2**30), ("42%", 42.0), ("2017 (notes: 2018)", 2017.0), ("3", 3.0),
    ("1/3 ok (2 error)", 1.0), ("`0.5`", 0.5),
    ("—", None), ("k2", None), ("n/r", None), ("8x8 digits", None), ("sandwich-k1", None), ("L=16", None),
])
def test_sort_value(text: str, value: float | None) -> None:
    assert sort_value(text) == (pytest.approx(value) if value is not None else None)


def test_sort_value_orders_bounds() -> None:
    assert sort_value("<0.0001") < 0.0001 < sort_value("0.0001 ± 0.1") + 1e-12
    assert sort_value("999.9K") < sort_value("1.0M")


def test_page_is_deterministic(results: Path, page: str, tmp_path: Path) -> None:
    write_report(results, tmp_path)
    assert (tmp_path / "index.html").read_text(encoding="utf-8") == page


def test_committed_page_uses_the_current_scripts() -> None:
    """report/index.html is regenerated with the report (`harness report`); a page written by older
    code would test old scripts in the browser test."""
    committed = (REPO / "report" / "index.html").read_text(encoding="utf-8")
    assert CSS in committed and SORT_JS in committed and PAGE_JS in committed
