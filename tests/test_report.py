"""harness.analysis.report on synthetic result rows: determinism, languages, verdicts, fitted exponents,
paper rows."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.report import ablation, load_literature, load_rows, suite_table, write_report

SEEDS = [0, 1, 2, 3, 4]
NOISE = [0.010, -0.020, 0.015, -0.005, 0.000]  # per-seed shared noise, so pairing removes it
LENS = [64, 128, 256, 512, 1024]

# Titles (as substrings) of every row of the notes' two tables, plus the Transformer-family papers the
# notes discuss in prose.
TRANSFORMER_TITLES = ["Attention Is All You Need", "Reordering their Sublayers", "Universal Transformers",
                      "Residual Shuffle-Exchange", "BERT: Pre-training", "ALBERT", "Reformer"]
CV_TITLES = ["Image Transformer", "Self-Attention Generative Adversarial Networks",
             "An Image is Worth 16x16 Words",
             "End-to-End Object Detection with Transformers", "Deformable DETR",
             "Texture Transformer Network for Image Super-Resolution",
             "Lane Shape Prediction with Transformers",
             "Feature Pyramid Transformer", "LambdaNetworks"]


def _row(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "suite": "quick", "job": "train", "task": "copy", "status": "ok", "error": None,
        "params": 1_234_567, "params_applied": 1_234_567, "flops_fwd": 2.5e8, "flops_unsupported": [],
        "mem_bytes": 48 * 2**20, "mem_kind": "cpu_estimate", "act_bytes": 12 * 2**20, "step_ms": 21.5,
        "tokens_per_s": 12_345.0, "mfu": 0.0123, "metric": "seq_acc", "higher_is_better": True,
        "curve": [{"step": 100, "loss": 1.0, "seq_acc": 0.5}], "train_s": 3.0, "device": "cpu",
        "device_name": "Synthetic CPU", "torch_version": "2.13.0", "harness_version": "0.1.0",
        "git_commit": "abc1234", "seq_len": 32, "batch_size": 16, "baseline": "vanilla-post",
        "suite_description": "Synthetic quick suite for tests",
        "config": {"train": {"steps": 300, "batch_size": 16}, "task": {"seq_len": 32}},
    }
    base.update(kw)
    if base["job"] == "train" and "metrics" not in kw and base["status"] == "ok":
        base["metrics"] = {base["metric"]: base["value"]}
    base.setdefault("run_id", f"{base['suite']}-{base['job']}-{base['task']}-{base['variant']}-"
                              f"{base['seed']}-{base.get('seq_len')}")
    return base


def synthetic_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    day = 0
    for task in ("copy", "reverse"):
        for i, seed in enumerate(SEEDS):
            day += 1
            stamp = f"2025-01-{day:02d}T10:00:00Z"
            base = 0.60 + NOISE[i]
            rows.append(_row(task=task, variant="vanilla-post", model="vanilla", seed=seed, value=base,
                             finished_at=stamp))
            # clear-cut: +0.2 on every seed
            rows.append(_row(task=task, variant="vanilla-pre", model="vanilla", seed=seed,
                             value=base + 0.2 + 0.001 * i, finished_at=stamp))
            # mixed-sign differences: within noise
            wobble = [0.01, -0.012, 0.004, -0.006, 0.0][i]
            if task == "copy" and seed == 4:
                rows.append(_row(task=task, variant="vanilla-encdec", model="vanilla", seed=seed, value=None,
                                 status="oom", error="CUDA out of memory. Tried to allocate 2.00 GiB",
                                 metrics=None, step_ms=None, finished_at=stamp))
            else:
                rows.append(_row(task=task, variant="vanilla-encdec", model="vanilla", seed=seed,
                                 value=base + wobble, params=2_345_678, params_applied=2_345_678,
                                 finished_at=stamp))
    # one error row in a second suite, plus a lower-is-better metric
    for i, seed in enumerate(SEEDS[:4]):
        stamp = f"2025-02-{i + 1:02d}T08:30:00Z"
        common = {"suite": "lm", "task": "charlm", "metric": "bpc", "higher_is_better": False,
                  "baseline": "interleaved", "suite_description": "Lower is better", "seq_len": 128,
                  "finished_at": stamp}
        rows.append(_row(variant="interleaved", model="sandwich", seed=seed, value=1.50 + NOISE[i], **common))
        rows.append(_row(variant="sandwich-k2", model="sandwich", seed=seed,
                         value=1.40 + NOISE[i] + 0.001 * i,
                         **common))
        rows.append(_row(variant="sandwich-k10", model="sandwich", seed=seed,
                         value=1.60 + NOISE[i] - 0.001 * i,
                         **common))
    rows.append(_row(variant="sandwich-k3", model="sandwich", seed=0, value=None, status="error",
                     error="ValueError: order string has 7 's' but 8 'f'\n"
                           "Traceback (most recent call last): ...",
                     suite="lm", task="charlm", metric="bpc", higher_is_better=False, baseline="interleaved",
                     metrics=None, finished_at="2025-02-05T09:00:00Z"))
    # profile sweep with exact power laws
    laws = {"vanilla-post": (2.0, 1.5, 1.0), "reformer-lsh": (1.25, 1.0, 0.75)}
    for variant, (ks, ka, km) in laws.items():
        for j, n in enumerate(LENS):
            rows.append(_row(job="profile", task="copy", variant=variant, model=variant.split("-")[0], seed=0,
                             seq_len=n, batch_size=4, value=None, metric=None, metrics=None, curve=None,
                             step_ms=0.01 * n**ks, act_bytes=1000.0 * n**ka, mem_bytes=5000.0 * n**km,
                             finished_at=f"2025-01-20T12:00:{j:02d}Z"))
    rows.append(_row(job="profile", task="copy", variant="vanilla-post", model="vanilla", seed=0,
                     seq_len=4096,
                     batch_size=4, value=None, metric=None, metrics=None, status="oom", step_ms=None,
                     act_bytes=None, mem_bytes=None, error="out of memory at seq_len 4096",
                     finished_at="2025-01-20T12:01:00Z"))
    return rows


def write_results(dirpath: Path, rows: list[dict[str, Any]], shuffle_seed: int | None = None) -> Path:
    dirpath.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(rows)
    by_suite: dict[str, list[str]] = {}
    for r in rows:
        by_suite.setdefault(r["suite"], []).append(json.dumps(r))
    for suite, lines in by_suite.items():
        (dirpath / f"{suite}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dirpath


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_results(tmp_path_factory.mktemp("results"), synthetic_rows())


@pytest.fixture(scope="module", autouse=True)
def _literature(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # The shipped literature.yaml maps rows to the committed suites; pin the mapping this module's
    # synthetic rows are built for, so the tests do not change when a suite is renamed.
    import yaml

    from harness.analysis.report import literature

    data = yaml.safe_load(literature.LITERATURE_PATH.read_text(encoding="utf-8"))
    for paper in data["papers"]:
        if paper["id"] == "transformer":
            paper["measured"] = {"suite": "quick", "variant": "vanilla-post", "baseline": "vanilla-post"}
    lit = tmp_path_factory.mktemp("lit") / "literature.yaml"
    lit.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(literature, "LITERATURE_PATH", lit)
        yield


@pytest.fixture(scope="module")
def report_en(results: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_report(results, tmp_path_factory.mktemp("report_en")).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def report_zh(results: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_report(results, tmp_path_factory.mktemp("report_zh"), lang="zh").read_text(encoding="utf-8")


def _section(md: str, start: str, end: str) -> str:
    a = md.index(start)
    return md[a:md.index(end, a + len(start))]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def _table_row(md: str, first_cell: str) -> list[str]:
    # tables are padded to their columns' widths: match the first cell, not a fixed prefix
    for line in md.splitlines():
        if line.startswith("| ") and _cells(line)[:1] == [first_cell]:
            return _cells(line)
    raise AssertionError(f"no table row starting with {first_cell!r}")


def _paper_row(md: str, title_part: str) -> list[str]:
    for line in md.splitlines():
        if line.startswith("| ") and title_part in line:
            return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
    raise AssertionError(f"no paper row mentioning {title_part!r}")


@pytest.mark.slow
def test_report_is_byte_identical(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    tables = write_report(results, out)
    first = {p.name: p.read_bytes() for p in sorted((out / "figures").glob("*.png"))}
    first_md = tables.read_bytes()
    # strip plots for copy, reverse and charlm, their accuracy-against-cost figures, and one cost figure
    assert len(first) == 7
    assert tables == write_report(results, out)
    assert tables.read_bytes() == first_md
    assert {p.name: p.read_bytes() for p in sorted((out / "figures").glob("*.png"))} == first
    # same rows written in another order, reported into another folder
    shuffled = write_results(tmp_path / "shuffled", synthetic_rows(), shuffle_seed=7)
    other = write_report(shuffled, tmp_path / "report2")
    assert other.read_bytes() == first_md
    assert {p.name: p.read_bytes() for p in sorted((tmp_path / "report2" / "figures").glob("*.png"))} == first
    for name, png in first.items():
        assert f"(figures/{name})" in first_md.decode()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"Software" not in png and b"matplotlib" not in png


def test_every_notes_paper_has_a_row(report_en: str) -> None:
    md = report_en
    transformer = _section(md, "## Transformer series", "## Transformer in CV series")
    cv = _section(md, "## Transformer in CV series", "## Suite:")
    for title in TRANSFORMER_TITLES:
        assert title in transformer, title
    for title in CV_TITLES:
        assert title in cv, title
    def n_rows(text: str) -> int:
        return sum(1 for ln in text.splitlines() if ln.startswith("| ") and "arxiv.org" in ln)

    assert n_rows(transformer) == len(TRANSFORMER_TITLES)
    assert n_rows(cv) == len(CV_TITLES)
    # literature.yaml ids are unique and every paper has both languages
    papers = load_literature()
    assert len({p["id"] for p in papers}) == len(papers)
    for p in papers:
        for key in ("problem", "method", "result", "training", "other"):
            assert p[key]["en"] and p[key]["zh"], (p["id"], key)


def _measured(row: list[str]) -> list[str]:
    """The seven measured cells of a literature row: headline, change, then scale to throughput."""
    return [row[1], row[2], *row[4:9]]


def test_measured_columns(report_en: str) -> None:
    md = report_en
    headers = _table_row(md, "Title")
    assert len(headers) == 16  # title, 7 measured columns, the claims' verdict tally, the notes' 7 others
    assert headers[1].startswith("Headline metric") and headers[3] == "Claims: verdicts (measured)"
    assert headers[9:] == ["Year", "Venue", "Problem", "Method", "Result", "Training details", "Other"]
    # a paper without results: every measured cell is a dash
    assert _measured(_paper_row(md, "Reordering their Sublayers")) == ["—"] * 7
    assert _measured(_paper_row(md, "LambdaNetworks")) == ["—"] * 7
    # its claims are not measured either (the synthetic rows test none of them)
    assert "not measured" in _paper_row(md, "LambdaNetworks")[3]
    # the vanilla row is fed by suite quick and states its scale
    aiayn = _paper_row(md, "Attention Is All You Need")
    assert "quick/copy" in aiayn[4] and "L=32" in aiayn[4] and "300 steps" in aiayn[4]
    assert aiayn[5] == "copy: 1.2M<br>reverse: 1.2M"
    assert aiayn[6].startswith("copy: 0.25")
    assert "48.0 MiB (cpu_estimate)" in aiayn[7]
    assert "12.3K" in aiayn[8]
    assert "seq_acc 0.6000 ± " in aiayn[1] and "(n=5)" in aiayn[1]
    assert "baseline" in aiayn[2]
    # paper numbers stay in the paper columns
    assert "27.3" in aiayn[13] and "27.3" not in "".join(_measured(aiayn))


def test_measured_suite_without_results_shows_dash(tmp_path: Path) -> None:
    only_lm = [r for r in synthetic_rows() if r["suite"] == "lm"]
    md = write_report(write_results(tmp_path / "res", only_lm), tmp_path / "r").read_text(encoding="utf-8")
    # suite lm measures no paper: the notes' tables are left out, and so are the claims it does not bear
    assert "## Transformer series" not in md and "literature tables are left out" in md
    assert "claim(s) of `literature.yaml` bear on no suite of these results" in md
    empty = write_report(tmp_path / "does-not-exist", tmp_path / "r2").read_text(encoding="utf-8")
    assert _measured(_paper_row(empty, "Attention Is All You Need")) == ["—"] * 7
    assert "No result rows found" in empty


def test_holm_verdicts(report_en: str) -> None:
    md = report_en
    copy = _section(md, "### Task: copy", "### Task: reverse")
    pre = _table_row(copy, "vanilla-pre")
    assert pre[6] == "better beyond seed noise"
    assert pre[4].startswith("+0.2020 ± ")
    assert float(pre[5].lstrip("<")) < 0.05
    encdec = _table_row(copy, "vanilla-encdec")
    assert encdec[6] == "within seed noise"
    assert encdec[1] == "4/5 ok (1 oom)"
    assert encdec[3] == "4"
    assert _table_row(copy, "vanilla-post")[6] == "baseline"
    assert "CUDA out of memory" in copy  # the oom row is listed with its error line
    lm = _section(md, "## Suite: lm", "## Suite: quick")
    # lower bpc is better here
    assert _table_row(lm, "sandwich-k2")[6] == "better beyond seed noise"
    assert _table_row(lm, "sandwich-k10")[6] == "worse beyond seed noise"
    assert _table_row(lm, "sandwich-k3")[1] == "0/1 ok (1 error)"
    assert "ValueError: order string has 7 's' but 8 'f'" in lm and "Traceback" not in lm
    # natural order: baseline first, then k2 before k3 before k10 (in the ablation table, which comes
    # before the accuracy-against-cost table)
    ablation_part = lm.split("Resolved configs")[0]
    order = [ln.split("|")[1].strip() for ln in ablation_part.splitlines()
             if ln.startswith("| ") and "sandwich" in ln
             or ln.startswith("| interleaved")]
    assert order == ["interleaved", "sandwich-k2", "sandwich-k3", "sandwich-k10"]


def test_holm_correction_is_applied() -> None:
    rows = synthetic_rows()
    ts = ablation(rows, "lm", "charlm")
    compared = [s for s in ts.variants if not s.is_baseline and s.p == s.p]
    assert len(compared) == 2
    raw = sorted(s.p for s in compared)
    adj = sorted(s.p_holm for s in compared)
    assert adj[0] == pytest.approx(min(1.0, 2 * raw[0]))
    assert adj[1] == pytest.approx(max(adj[0], raw[1]))


def test_fitted_exponents_printed(report_en: str) -> None:
    md = report_en
    prof = md[md.index("### Cost against input size (copy;"):]
    assert _table_row(prof, "vanilla-post")[1:4] == ["2.00", "1.50", "1.00"]
    assert _table_row(prof, "reformer-lsh")[1:4] == ["1.25", "1.00", "0.75"]
    assert _table_row(prof, "vanilla-post")[4] == "64–1024 (5)"
    assert "out of memory at seq_len 4096" in prof
    assert "figures/quick-copy-cost.png" in md


def test_chinese_report(report_zh: str, results: Path, tmp_path: Path) -> None:
    md = report_zh
    header = _table_row(md, "题目")
    assert header[9:] == ["时间", "会议", "想解决的问题", "使用的方法", "结果", "训练细节", "其它"]
    assert "## Transformer系列论文" in md and "## Transformer in CV系列论文" in md
    assert "## 实验套件：quick" in md and "## 来源信息" in md
    assert "机器翻译，时序模型，长时模型" in md  # the notes' own text
    assert "优于基线（超出种子噪声）" in md
    assert _measured(_paper_row(md, "Reordering their Sublayers")) == ["—"] * 7
    assert "## 论断" in md and "未测量" in _paper_row(md, "Reordering their Sublayers")[3]
    with pytest.raises(ValueError):
        write_report(results, tmp_path / "x", lang="fr")


def test_notes_discrepancies_are_visible(report_en: str) -> None:
    md = report_en
    detr = _paper_row(md, "End-to-End Object Detection with Transformers")
    assert detr[10] == "ECCV (notes: CVPR)"
    sagan = _paper_row(md, "Self-Attention Generative Adversarial Networks")
    assert sagan[9] == "2019 (notes: 2018)"
    assert _paper_row(md, "Attention Is All You Need")[9:11] == ["2017", "NIPS"]


def test_provenance(report_en: str) -> None:
    md = report_en
    prov = md[md.index("## Provenance"):]
    n = len(synthetic_rows())
    assert f"Result rows: {n} (from 2 file(s); 0 unreadable line(s) skipped)." in prov
    assert "`Synthetic CPU`" in prov and "`2.13.0`" in prov and "`abc1234`" in prov
    assert "2025-01-01T10:00:00Z and 2025-02-05T09:00:00Z" in prov


def test_loader_skips_bad_lines_and_keeps_last(tmp_path: Path) -> None:
    d = tmp_path / "res"
    d.mkdir()
    a = _row(variant="v", seed=0, value=0.1, run_id="same", finished_at="2025-01-01T00:00:00Z")
    b = dict(a, value=0.9)
    (d / "quick.jsonl").write_text(json.dumps(a) + "\n{not json\n[1, 2]\n\n" + json.dumps(b) + "\n",
                                   encoding="utf-8")
    (d / "notes.txt").write_text("ignored", encoding="utf-8")
    rows = load_rows(d)
    assert len(rows) == 1 and rows[0].value == 0.9
    md = write_report(d, tmp_path / "r").read_text(encoding="utf-8")
    assert "2 unreadable line(s) skipped" in md


def test_newest_row_per_seed_wins(tmp_path: Path) -> None:
    rows = [_row(variant="v", seed=0, value=0.1, run_id="old", finished_at="2025-01-01T00:00:00Z"),
            _row(variant="v", seed=0, value=0.7, run_id="new", finished_at="2025-03-01T00:00:00Z")]
    ts = ablation(rows, "quick", "copy")
    v = ts.get("v")
    assert ts.superseded == 1 and v is not None and v.values == {0: 0.7}


def test_stale_figures_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "r"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "gone-suite-metric.png").write_bytes(b"old")
    (out / "figures" / "notes.txt").write_text("kept", encoding="utf-8")
    write_report(tmp_path / "no-results", out)
    assert not (out / "figures" / "gone-suite-metric.png").exists()
    assert (out / "figures" / "notes.txt").exists()


def test_suite_table_plain_text() -> None:
    text = suite_table(synthetic_rows(), "quick")
    assert "quick / copy" in text and "quick / reverse" in text
    assert "better beyond seed noise" in text and "|" not in text
    assert "vanilla-encdec" in text and "4/5 ok (1 oom)" in text
    assert suite_table([], "quick") == "No results for suite 'quick'."
    pd = pytest.importorskip("pandas")
    assert suite_table(pd.DataFrame(synthetic_rows()), "quick") == text


def test_report_does_not_import_torch(tmp_path: Path) -> None:
    """Neither the report nor reading a suite's layout from its file (tasks and models named, not built)."""
    import subprocess
    import sys

    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "quick.yaml").write_text(
        "tasks: [{task: copy}, {task: reverse}]\n"
        "variants: [{name: vanilla-post, model: vanilla}, {name: 'rt-{n_hashes}', model: reformer, "
        "sweep: {n_hashes: [1]}}]\n"
        "report: {grid: [seq_acc], references: [rt-1]}\n")
    results = write_results(tmp_path / "results", [r for r in synthetic_rows() if r["suite"] == "quick"])
    code = ("import sys; from pathlib import Path; from harness.analysis.report import write_report; "
            f"p = write_report(Path({str(results)!r}), Path({str(tmp_path / 'r')!r}), "
            f"suites_dir=Path({str(suites)!r})); "
            "print('Overview: seq_acc' in p.read_text(encoding='utf-8'), "
            "[m for m in sys.modules if m == 'torch' or m.startswith(('harness.models', 'harness.tasks'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True []"


def test_grid_overview_table(tmp_path: Path) -> None:
    """A suite's `report: {grid: [...], extras: [...]}` lays out variant x task cells like the UT paper."""
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "ut.yaml").write_text(
        "tasks: [{task: copy}, {task: reverse}]\n"
        "variants: [{name: ut-act, model: universal, act: true}, {name: vanilla, model: vanilla}]\n"
        "report: {grid: [tok_acc, seq_acc], extras: [ponder_steps]}\n")
    rows = []
    for task, (tok, seq) in {"copy": (0.9, 0.3), "reverse": (0.6, 0.1)}.items():
        for seed in (0, 1):
            rows.append(_row(suite="ut", task=task, variant="ut-act", model="universal", seed=seed, value=seq,
                             metrics={"tok_acc": tok + 0.02 * seed, "seq_acc": seq}, ponder_steps=3.0 + seed,
                             baseline=None))
            rows.append(_row(suite="ut", task=task, variant="vanilla", model="vanilla", seed=seed, value=0.0,
                             metrics={"tok_acc": 0.5, "seq_acc": 0.0}, baseline=None))
    results = write_results(tmp_path / "results", rows)
    md = write_report(results, tmp_path / "report", suites_dir=suites).read_text(encoding="utf-8")
    section = md[md.index("### Overview: tok_acc / seq_acc"):]
    assert _table_row(section, "ut-act")[1:] == ["0.910 / 0.300; ponder_steps 3.500 (n=2)",
                                                 "0.610 / 0.100; ponder_steps 3.500 (n=2)"]
    assert _table_row(section, "vanilla")[1:] == ["0.500 / 0.000 (n=2)", "0.500 / 0.000 (n=2)"]


def test_markdown_table_cells_are_kept_as_written() -> None:
    from harness.analysis.report.markdown import md_table

    text = md_table(["a|b", "n"], [["0.0100", "two\nlines"], ["", None], ["1e3", "+0.2000 ± 0.0100"]])
    lines = text.splitlines()
    assert len(lines) == 5 and set(lines[1]) <= {"|", "-", ":"}  # header, separator, three rows
    assert _cells(lines[0]) == ["a\\|b", "n"]  # a pipe inside a cell is escaped
    cells = [_cells(ln) for ln in lines[2:]]
    # numbers are not reformatted, newlines become <br>, empty cells a dash
    assert cells == [["0.0100", "two<br>lines"], ["—", "—"], ["1e3", "+0.2000 ± 0.0100"]]
