"""The report lays each suite out as its suite file says now: the ``report:`` key is read from the file
(harness.suite.load.report_layout), not from the rows, so editing it changes the next report without a
job running again; a suite file not found or not loading gives the default layout, said in the
provenance section (and, for one that does not load, as a warning)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from tiny_suites import suite_yaml, tiny_spec

from harness.analysis.report import write_report
from harness.cli.main import main
from harness.core.errors import InputError
from harness.results.store import read_rows
from harness.suite.load import load_suite, recorded_path, report_layout
from harness.suite.spec import MatrixSpec, ReportSpec

# two vanilla variants on copy, two seeds, and a cost sweep at two lengths
TINY = suite_yaml(tiny_spec(name="tiny", profile={"seq_lens": [8, 16]}))


def _report(results: Path, out: Path, suites: Path, warnings: list[str] | None = None,
            lang: str = "en") -> str:
    sink = warnings if warnings is not None else []
    return write_report(results, out, lang=lang, html=False, suites_dir=suites,
                        warn=sink.append).read_text(encoding="utf-8")


def _provenance(md: str) -> str:
    return md[md.rindex("\n## "):]


def test_editing_the_report_key_changes_the_report_without_a_rerun(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    suite, results, empty = tmp_path / "tiny.yaml", tmp_path / "results", tmp_path / "no-suites"
    suite.write_text(TINY)
    empty.mkdir()
    assert main(["run", str(suite), "--results-dir", str(results), "--no-report"]) == 0
    capsys.readouterr()
    stored = (results / "tiny.jsonl").read_bytes()
    rows = list(read_rows(results / "tiny.jsonl"))
    assert len(rows) == 8 and all(r["suite_file"] == suite.resolve().as_posix() for r in rows)
    assert all("report_spec" not in r for r in rows)

    md = _report(results, tmp_path / "r0", empty)  # the recorded file is found, not suites/tiny.yaml
    assert "Overview:" not in md and "Cost relative" not in md and "default layout" not in md

    suite.write_text(TINY + "report: {grid: [tok_acc, seq_acc], references: [a], ratio_at: 8}\n")
    md = _report(results, tmp_path / "r1", empty)
    grid = md[md.index("### Overview: tok_acc / seq_acc"):]
    assert "(n=2)" in next(ln for ln in grid.splitlines() if ln.startswith("| a "))
    assert "Cost relative to each reference at n = 8 " in md and "step_ms / a" in md

    suite.write_text(TINY + "report: {grid: [seq_acc], references: [a], ratio_at: 16}\n")
    md = _report(results, tmp_path / "r2", empty)
    assert "### Overview: seq_acc per variant" in md and "Overview: tok_acc" not in md
    assert "Cost relative to each reference at n = 16 " in md and "at n = 8 " not in md
    assert (results / "tiny.jsonl").read_bytes() == stored  # no job ran again


def test_rows_record_the_suite_file_relative_to_the_working_directory(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from harness.run.outcome import new_row

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "tiny.yaml").write_text(TINY)
    monkeypatch.chdir(tmp_path)
    jobs = load_suite("in/tiny.yaml").jobs
    assert {j.suite_file for j in jobs} == {"in/tiny.yaml"}
    assert load_suite(tmp_path / "in" / "tiny.yaml").jobs[0].suite_file == "in/tiny.yaml"
    assert new_row(jobs[0]).suite_file == "in/tiny.yaml"
    # where the suite file is, is not what the job is: the run_id ignores it
    assert dataclasses.replace(jobs[0], suite_file="elsewhere.yaml").run_id == jobs[0].run_id
    monkeypatch.chdir(tmp_path / "in")
    assert recorded_path(tmp_path / "in" / "tiny.yaml") == "tiny.yaml"
    outside = tmp_path / "out.yaml"
    assert recorded_path(outside) == outside.resolve().as_posix()


def _rows(suite: str, **extra: object) -> list[dict]:
    base = {"suite": suite, "job": "train", "task": "copy", "status": "ok", "metric": "seq_acc",
            "higher_is_better": True, "model": "vanilla", "baseline": "a", **extra}
    return [{**base, "run_id": f"{v}{s}", "variant": v, "seed": s, "value": 0.5,
             "metrics": {"seq_acc": 0.5, "tok_acc": 0.7}} for v in ("a", "b") for s in (0, 1)]


def _write(results: Path, suite: str, rows: list[dict]) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{suite}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return results


def test_a_suite_file_not_found_gives_the_default_layout_and_a_note(tmp_path: Path) -> None:
    # old rows carry the layout they ran with (report_spec): it is not used, and the file they name is gone
    gone = tmp_path / "moved.yaml"
    rows = _rows("ghost", report_spec={"grid": ["tok_acc"]}, suite_file=gone.as_posix())
    results, suites = _write(tmp_path / "results", "ghost", rows), tmp_path / "suites"
    warnings: list[str] = []
    md = _report(results, tmp_path / "r", suites, warnings)
    assert "Overview:" not in md and not warnings
    note = (f"- Suite `ghost`: no suite file found (looked for `{gone.as_posix()}`, "
            f"`{(suites / 'ghost.yaml').as_posix()}`), so its section has the default layout.")
    assert note in _provenance(md).splitlines()
    assert "默认布局" in _provenance(_report(results, tmp_path / "zh", suites, lang="zh"))
    # the fallback, <suites dir>/<suite>.yaml, is read when the recorded file is gone
    suites.mkdir()
    (suites / "ghost.yaml").write_text(TINY.replace("name: tiny\n", "") + "report: {grid: [tok_acc]}\n")
    md = _report(results, tmp_path / "r2", suites)
    assert "### Overview: tok_acc" in md and "default layout" not in md


@pytest.mark.parametrize(("report", "expect"), [
    ("report: {references: [c]}", "report.references[0]: unknown variant 'c'"),
    ("report: {grid: tok_acc}", "report.grid: expected list of str"),
    ("report: [", "YAML syntax error"),
])
def test_a_broken_suite_file_warns_and_gives_the_default_layout(tmp_path: Path, capsys, report: str,  # noqa: ANN001
                                                                 expect: str) -> None:
    suites = tmp_path / "suites"
    suites.mkdir()
    path = suites / "tiny.yaml"
    path.write_text(TINY + "\n" + report + "\n")
    results = _write(tmp_path / "results", "tiny", _rows("tiny"))
    warnings: list[str] = []
    md = _report(results, tmp_path / "r", suites, warnings)
    with pytest.raises(InputError) as refused:  # the message a full load gives
        load_suite(path)
    assert expect in str(refused.value)
    assert warnings == [f"suite 'tiny': {path.as_posix()} does not load, so the report uses the default "
                        f"layout for it: {refused.value}"]
    assert "Overview:" not in md
    assert (f"- Suite `tiny`: its suite file `{path.as_posix()}` does not load, so its section has the "
            f"default layout: `{str(refused.value).replace('`', chr(39))}`") in _provenance(md).splitlines()
    # the CLI: one warning line on stderr, and the report is written
    code = main(["report", "--results-dir", str(results), "--report-dir", str(tmp_path / "cli"),
                 "--suites", str(suites)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0 and err == [f"harness: warning: {warnings[0]}"]
    assert (tmp_path / "cli" / "tables.md").exists()


BASE = """\
train: {eval_modes: {full: {attention: full}}}
tasks: [{task: copy, seq_len: 4, vocab: 4}, {name: rev, task: reverse, seq_len: 4, vocab: 4}]
model: {d_model: 16, n_heads: 2, d_ff: 32, n_layers: 1}
variants:
  - {name: "lsh{n_hashes}", model: reformer, bucket_size: 2, sweep: {n_hashes: [1, 2]}}
  - {name: a, model: vanilla}
"""
MATRIX = "{task: rev, metric: tok_acc, rows: {lsh1: One, lsh2: Two}, columns: {'': Trained, full: Full}}"


def test_report_layout_is_the_report_section_with_its_matrices(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    path = tmp_path / "s.yaml"
    path.write_text("include: base.yaml\n"
                    f"report: {{matrix: [{MATRIX}], references: [lsh2], fit_range: [4, 8]}}\n")
    spec = report_layout(path)
    assert isinstance(spec, ReportSpec) and spec.references == ["lsh2"] and spec.fit_range == [4, 8]
    assert spec.matrices == [MatrixSpec(task="rev", metric="tok_acc", rows={"lsh1": "One", "lsh2": "Two"},
                                        columns={"": "Trained", "full": "Full"})]
    assert list(spec.matrices[0].columns) == ["", "full"]  # the file's order, which the table keeps
    (tmp_path / "plain.yaml").write_text(BASE)
    assert report_layout(tmp_path / "plain.yaml") == ReportSpec()


@pytest.mark.parametrize("report", [
    f"{{matrix: [{MATRIX.replace('task: rev', 'task: nope')}]}}",
    f"{{matrix: [{MATRIX.replace('lsh2: Two', 'lsh3: Three')}]}}",
    f"{{matrix: [{MATRIX.replace('full: Full', 'lsh-9: LSH-9')}]}}",
    "{matrix: [{task: rev, metric: tok_acc, rows: {}}]}",
    "{references: [lsh]}",
    "{fit_range: [8, 4]}",
    "{ratio: 8}",
])
def test_report_layout_refuses_what_a_full_load_refuses_with_its_message(tmp_path: Path, report: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(BASE + f"report: {report}\n")
    with pytest.raises(InputError) as light:
        report_layout(path)
    with pytest.raises(InputError) as full:
        load_suite(path)
    assert str(light.value) == str(full.value) and "report" in str(light.value)


@pytest.mark.parametrize("bad", [
    "  - {name: a, model: vanilla}\n",  # a duplicate variant
    "  - {name: 'x{k}', model: vanilla, sweep: {d_model: [8]}}\n",  # a name field that is not swept
    "  - {model: vanilla}\n",  # no name
])
def test_report_layout_reads_the_variant_names_as_a_full_load_does(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(BASE + bad)
    with pytest.raises(InputError) as light:
        report_layout(path)
    with pytest.raises(InputError) as full:
        load_suite(path)
    assert str(light.value) == str(full.value)
