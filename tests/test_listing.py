"""``harness list``: one line per suite cut to the terminal; ``harness list SUITE``: all of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tiny_suites import section_only

from harness.cli.listing import ELLIPSIS, first_sentence, fit, suite_lines
from harness.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
# the tiny suite with a description of two sentences, the second too long for any terminal line
LISTED = dict(
    name="listed",
    description="Two tiny variants (Vaswani et al. 2017. Not a sentence end), e.g. for listing. The second "
                "sentence is long and only harness list SUITE shows it; it goes on past any terminal's "
                "width, on purpose, to be wrapped.",
    seeds=[0],
    train=section_only("train", steps=2, batch_size=2),
)


def test_first_sentence() -> None:
    assert first_sentence("One. Two.") == "One."
    assert first_sentence("  Spread\n over   lines! Then more") == "Spread over lines!"
    assert first_sentence("Press et al. 2020: orders. Then") == "Press et al. 2020: orders."
    text = "Base (Vaswani et al. Table 3. x) here."
    assert first_sentence(text + " Next") == text
    assert first_sentence("Use e.g. copy, i.e. a task. B") == "Use e.g. copy, i.e. a task."
    assert first_sentence("Version 1.5 of it") == "Version 1.5 of it"  # no space after the dot
    assert first_sentence("No end at all") == "No end at all" and first_sentence("") == ""


def test_fit_cuts_to_the_width_with_an_ellipsis() -> None:
    assert fit("abcdef", 6) == "abcdef"
    assert fit("abcdef", 4) == "abc" + ELLIPSIS and len(fit("abcdef", 4)) == 4
    assert fit("ab   cdef", 6) == "ab" + ELLIPSIS  # no trailing blanks before the ellipsis


def test_suite_lines_are_one_per_suite_within_the_width() -> None:
    suites = [("a.yaml", "Short. More text."), ("long.yaml", "word " * 40)]
    lines = suite_lines(suites, width=40)
    assert lines[0] == "  a.yaml     Short."
    assert len(lines) == 2 and len(lines[1]) == 40 and lines[1].endswith(ELLIPSIS)
    assert lines[1].startswith("  long.yaml  word word")


def test_list_suites_fits_the_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("COLUMNS", "70")  # what shutil.get_terminal_size reads first
    assert main(["list", "suites"]) == 0
    lines = capsys.readouterr().out.splitlines()
    files = sorted(p.name for p in (ROOT / "suites").glob("*.yaml"))
    assert lines[0] == "suites:" and [ln.split()[0] for ln in lines[1:]] == files
    assert all(len(ln) <= 70 for ln in lines)
    assert any(ln.endswith(ELLIPSIS) for ln in lines)  # the committed descriptions are long
    assert main(["list"]) == 0  # everything: the registry sections, then the suites
    out = capsys.readouterr().out
    assert "models:" in out and "presets:" in out and "tasks:" in out
    assert out.index("suites:") > out.index("tasks:")


def test_list_suite_shows_the_description_and_the_dry_run_grid(
    tmp_path: Path, tiny_suite: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tiny_suite(LISTED, file="suites/listed.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["run", str(path), "--dry-run"]) == 0
    grid = capsys.readouterr().out
    table = grid.split("\n\n")[0]
    assert "GFLOPs/ex" in table and table.count("\n") == 2 + 4  # title, header, rule, 2 train, 2 profile
    configs = grid.split("\n\n")[1]  # then each variant's resolved config, and b against the baseline a
    assert configs.startswith("resolved configs on task copy (baseline a):")
    assert "differs from a: norm: pre vs post" in configs
    for name in ("listed", "listed.yaml", str(path)):  # a name under suites/ or a path
        assert main(["list", name]) == 0
        out = capsys.readouterr().out
        assert out.endswith(grid)  # the same grid, through the same function
        head = out[: -len(grid)]
        assert head.startswith("listed\n\n") and "is long and only harness list SUITE shows it" in " ".join(
            head.split())
        assert all(len(ln) <= 80 for ln in head.splitlines())


def test_list_of_an_unknown_suite_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "no-such-suite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-suite" in err[0]
