"""For the researcher at the keyboard (issue 23): a run or report into another results folder leaves every
committed file as it was; a variant's hidden defaults show in the dry run, the suite's section and a
claim's row (a pre-LN sandwich against a post-LN vanilla: ``norm: pre`` against ``post``); the terminal
ends with a short summary."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.analysis.claims import evaluate_claims, load_claims
from harness.analysis.report import load_rows
from harness.analysis.report.claims import claims_section
from harness.analysis.report.doc import markdown_lines
from harness.cli.main import main

ROOT = Path(__file__).resolve().parent.parent

# vanilla is post-LN by default and sandwich pre-LN: the suite never says `norm`
SUITE = """\
name: mine
description: A post-LN vanilla against a sandwich k=1 that says nothing of its norm.
seeds: [0, 1]
baseline: vanilla
train: {steps: 4, batch_size: 4, lr: 3.0e-3, warmup_steps: 1, eval_every: 2, eval_batches: 1,
        eval_batch_size: 8}
model: {d_model: 16, n_heads: 2, d_ff: 32, n_layers: 1}
tasks:
  - {task: copy, seq_len: 4, vocab: 4}
variants:
  - {name: vanilla, model: vanilla}
  - {name: sandwich-k1, model: sandwich, k: 1}
"""

CLAIM = {"id": "sandwich-beats-vanilla", "by": "paper", "source": "a test",
         "text": {"en": "A sandwich beats vanilla.", "zh": "三明治优于原始模型。"},
         "test": {"kind": "metric", "suite": "mine", "task": "copy", "variant": "sandwich-k1",
                  "reference": "vanilla", "expect": "higher"}}


def _committed() -> dict[str, str]:
    """A hash of every committed file of report/ and results/, by path."""
    names = subprocess.run(["git", "ls-files", "report", "results"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    return {n: hashlib.sha256((ROOT / n).read_bytes()).hexdigest() for n in names}


@pytest.fixture(scope="module")
def mine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The suite run from the repository root into a folder of its own; (results folder, stdout)."""
    tmp = tmp_path_factory.mktemp("mine")
    suite = tmp / "mine.yaml"
    suite.write_text(SUITE)
    before = _committed()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)  # where `report/` and `results/` are the committed ones
        out = subprocess.run(
            [str(Path(__import__("sys").executable)), "-c",
             "import sys; from harness.cli.main import main; sys.exit(main(sys.argv[1:]))",
             "run", str(suite), "--results-dir", str(tmp / "runs")],
            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert _committed() == before
    return tmp / "runs", out.stdout


def test_a_run_into_another_folder_reports_beside_it(mine: tuple[Path, str]) -> None:
    results, stdout = mine
    assert (results / "report" / "tables.md").is_file() and (results / "report" / "index.html").is_file()
    assert f"report: {results / 'report' / 'tables.md'}" in stdout


@pytest.mark.slow
def test_a_report_of_another_folder_leaves_the_committed_report(
    mine: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    results, _ = mine
    monkeypatch.chdir(ROOT)
    before = _committed()
    assert main(["report", "--results-dir", str(results)]) == 0  # beside the results, again
    assert main(["report", "--results-dir", str(results), "--report-dir", "report"]) == 2
    err = capsys.readouterr().err
    assert "holds the report of results/" in err and "--overwrite-report" in err
    assert _committed() == before
    # a report folder of one's own: replaced by a report of other results only when asked
    own, other = results.parent / "own", results.parent / "other"
    other.mkdir()
    assert main(["report", "--results-dir", str(results), "--report-dir", str(own)]) == 0
    assert main(["report", "--results-dir", str(other), "--report-dir", str(own)]) == 2
    assert '"results": "../runs"' in (own / "source.json").read_text()
    assert main(["report", "--results-dir", str(other), "--report-dir", str(own), "--overwrite-report"]) == 0
    assert '"results": "../other"' in (own / "source.json").read_text()
    assert _committed() == before


def test_the_dry_run_shows_the_hidden_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "mine.yaml"
    suite.write_text(SUITE)
    assert main(["run", str(suite), "--dry-run"]) == 0
    out = capsys.readouterr().out
    line = " ".join(out[out.index("differs from vanilla:"):].split())
    assert "norm: pre (sandwich's default) vs post" in line
    assert "model: sandwich vs vanilla" in line and "k: 1 vs —" in line
    assert "sandwich-k1 (sandwich): " in out and "norm=pre" in out  # the whole resolved config


def test_the_suite_section_shows_it(mine: tuple[Path, str]) -> None:
    results, _ = mine
    md = (results / "report" / "tables.md").read_text(encoding="utf-8")
    row = next(ln for ln in md.splitlines() if ln.startswith("| sandwich-k1") and "`norm`" in ln)
    assert "`norm`: pre vs post" in row and "`model`: sandwich vs vanilla" in row
    # the report is of this suite alone: no paper of the notes is measured, no claim borne
    assert "## Transformer series" not in md and "the notes' two literature tables are left out" in md
    assert md.index("## Findings") < md.index("## Claims") < md.index("## Suite: mine")


def test_the_claim_row_shows_it_unless_the_claim_is_about_it(mine: tuple[Path, str], tmp_path: Path) -> None:
    results, _ = mine
    rows = load_rows(results)
    lit = tmp_path / "literature.yaml"

    def row_of(claim: dict) -> str:
        lit.write_text(yaml.safe_dump({"papers": [{"id": "p", "claims": [claim]}]}, allow_unicode=True))
        verdicts = evaluate_claims(load_claims(lit), rows)
        md = "\n".join(markdown_lines([claims_section(verdicts, "en")]))
        return next(ln for ln in md.splitlines() if "sandwich-beats-vanilla" in ln)

    assert "`norm`: pre vs post (`vanilla`)" in row_of(CLAIM)
    about = row_of({**CLAIM, "about": ["norm"]})
    assert "`norm`" not in about  # the claim is about the norm: no confound left
    assert "`k`" not in about and "`model`" not in about  # the model and its own keys never are


def test_list_model_and_task_show_keys_defaults_bounds_and_docstring(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["list", "model", "sandwich"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model sandwich: config SandwichConfig")
    norm = next(ln for ln in out.splitlines() if ln.startswith("norm "))
    assert "'post' | 'pre'" in norm and norm.split()[-1] == "pre"
    assert next(ln for ln in out.splitlines() if ln.startswith("dropout ")).split()[2:6] == \
        ["0.1", ">=", "0", "<="]
    assert "Press et al. 2020" in out  # the class docstring's first paragraph
    assert main(["list", "models", "vanilla"]) == 0 and "norm " in capsys.readouterr().out
    assert main(["list", "task", "char_lm"]) == 0
    out = capsys.readouterr().out
    assert "task char_lm" in out and "seq_len" in out and "bits per character" in out
    assert main(["list", "model", "nosuch"]) == 2
    assert "unknown model 'nosuch'" in capsys.readouterr().err


def test_run_ends_with_a_short_summary(mine: tuple[Path, str]) -> None:
    _, stdout = mine
    lines = stdout.strip().splitlines()
    assert len(lines) <= 6, stdout
    assert lines[0].startswith("mine: headline comparisons")
    assert lines[1].strip().startswith("copy: ")  # the task's headline comparison
    assert any(ln.startswith("verdicts") for ln in lines)
    assert "Δ vs" not in stdout  # no whole tables unless --tables


def test_listing_into_a_closed_pipe_is_quiet() -> None:
    cmd = (f"cd {ROOT} && {__import__('sys').executable} -c 'import sys; from harness.cli.main import main;"
           " sys.exit(main(sys.argv[1:]))' list | head -1")
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert out.stdout == "models:\n" and "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr


def test_an_override_error_names_the_key_as_typed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "mine.yaml"
    suite.write_text(SUITE)
    assert main(["run", str(suite), "variants.0.n_layers=0", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("harness: error: override 'variants.0.n_layers=0': variants.0.n_layers: "
                           "must be >= 1, got 0")
    assert main(["run", str(suite), "variants[1].k=-1", "--dry-run"]) == 2
    assert "override 'variants[1].k=-1': variants[1].k: must be >= 0" in capsys.readouterr().err


def test_char_lm_says_what_to_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "lm.yaml"
    suite.write_text(SUITE.replace("{task: copy, seq_len: 4, vocab: 4}", "{task: char_lm, seq_len: 8}")
                     .replace("{name: sandwich-k1, model: sandwich, k: 1}", "{name: bert, model: albert}"))
    assert main(["run", str(suite), "--dry-run"]) == 2
    assert "this one is causal: false (set causal: true)" in capsys.readouterr().err


def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_log() -> None:
    import io

    from harness.run.progress import ProgressPrinter
    from harness.suite.jobs import Job

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    job = Job("s", "v", "vanilla", None, {}, "copy", "copy", {}, {}, seed=0, device="cpu")
    for stream in (Terminal(), io.StringIO()):
        p = ProgressPrinter(2, stream)
        for _ in range(2):
            p.start(job)
            p.step(4, 4, 0.25, 1000.0)
            p.finish({"status": "ok", "metric": "acc", "value": 0.5})
        text = stream.getvalue()
        if isinstance(stream, Terminal):  # the bar, with the job, its step and loss
            assert "/2 jobs [" in text and "v copy seed=0: step 4/4 loss 0.2500" in text
        else:  # one line a job
            assert text.splitlines() == ["[1/2] v copy seed=0: ok acc=0.5000",
                                         "[2/2] v copy seed=0: ok acc=0.5000"]


UNGUARDED = """\
import sys
from harness.cli.main import main
sys.exit(main(["run", {suite!r}, "--jobs", "2", "--results-dir", {results!r}, "--no-report"]))
"""


@pytest.mark.slow
def test_jobs_from_a_script_without_a_main_guard_fails_at_once(tmp_path: Path) -> None:
    import sys

    suite = tmp_path / "mine.yaml"
    suite.write_text(SUITE)
    script = tmp_path / "go.py"
    script.write_text(UNGUARDED.format(suite=str(suite), results=str(tmp_path / "r")))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert 'if __name__ == "__main__":' in out.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "r" / "mine.jsonl").exists() or not (tmp_path / "r" / "mine.jsonl").read_text()
