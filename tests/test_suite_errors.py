"""Malformed suites and overrides: exit 2, one clear line naming file/line/key, nothing written."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tiny_suites import write_suite

from harness.cli.main import main

GOOD = """\
name: t
seeds: [0]
baseline: a
train: {steps: 2, batch_size: 2, eval_every: 1, eval_batches: 1, eval_batch_size: 2}
model: {d_model: 16, n_heads: 2, d_ff: 32, n_layers: 1}
tasks:
  - {name: copy, task: copy, seq_len: 4, vocab: 4}
variants:
  - {name: a, model: vanilla}
  - {name: b, model: vanilla, norm: pre}
"""

# (suite text or None for GOOD, overrides, expected fragments of the one error line)
CASES = {
    "yaml_syntax": ("name: t\nseeds: [0\n", [], ["bad.yaml:", "YAML syntax error"]),
    "unknown_top_key": (GOOD + "trian: {steps: 3}\n", [], ["bad.yaml:11:", "trian", "did you mean 'train'"]),
    "unknown_model_key": (
        GOOD.replace("norm: pre", "nrom: pre"),
        [], ["bad.yaml:10:", "variants[1].nrom", "did you mean 'norm'"]),
    "unknown_model": (
        GOOD.replace("model: vanilla, norm", "model: vanila, norm"),
        [], ["bad.yaml:10:", "variants[1].model", "Did you mean: vanilla"]),
    "unknown_task": (
        GOOD.replace("task: copy", "task: cpoy"),
        [], ["bad.yaml:7:", "tasks[0].task", "Did you mean: copy"]),
    "wrong_type": (
        GOOD.replace("steps: 2", "steps: two"),
        [], ["bad.yaml:4:", "train.steps", "expected int"]),
    "zero_size": (GOOD.replace("d_model: 16", "d_model: 0"), [], ["bad.yaml:5:", "d_model", "must be >= 1"]),
    "negative_size": (
        GOOD.replace("batch_size: 2,", "batch_size: -3,"),
        [], ["bad.yaml:4:", "train.batch_size", ">= 1"]),
    "heads_not_dividing": (
        GOOD.replace("n_heads: 2", "n_heads: 3"),
        [], ["bad.yaml:5:", "n_heads", "must divide d_model (16)"]),
    "empty_file": ("", [], ["bad.yaml:1:", "empty"]),
    "image_model_on_token_task": (
        GOOD.replace("model: vanilla, norm: pre", "model: resnet"),
        [], ["bad.yaml:10:", "variants[1].model", "its io is 'image'"]),
    "null_name": (GOOD.replace("name: t", "name: null"), [], ["bad.yaml:1:", "name", "expected str"]),
    "unsafe_name": (GOOD.replace("name: t", "name: a/b"), [], ["bad.yaml:1:", "name", "file-name-safe"]),
    "missing_include": ("include: nowhere.yaml\n" + GOOD, [], ["bad.yaml:1:", "include", "not found"]),
    "duplicate_variant": (
        GOOD.replace("name: b,", "name: a,"),
        [], ["bad.yaml:10:", "variants[1].name", "duplicate variant name 'a'"]),
    "python_tag": (
        GOOD.replace("name: t", "name: !!python/object/apply:os.system ['echo hi']"),
        [], ["bad.yaml:1:", "not allowed"]),
    "bad_sweep": (
        GOOD.replace("norm: pre}", "norm: pre, sweep: {n_layers: 3}}"),
        [], ["bad.yaml:10:", "sweep.n_layers", "non-empty list"]),
    "sweep_name_field": (
        GOOD.replace("name: b, model: vanilla, norm: pre}",
                     "name: 'b{k}', model: vanilla, sweep: {n_layers: [1, 2]}}"),
        [], ["variants[1].name", "{k}"]),
    "unknown_baseline": (
        GOOD.replace("baseline: a", "baseline: c"),
        [], ["bad.yaml:3:", "baseline", "unknown baseline variant 'c'"]),
    "duplicate_key": (GOOD + "seeds: [1]\n", [], ["bad.yaml:11:", "seeds", "duplicate key"]),
    "override_wrong_type": (
        None,
        ["train.steps=abc"], ["override 'train.steps=abc'", "train.steps", "expected int"]),
    "override_unknown_key": (None, ["train.stesp=3"], ["override 'train.stesp=3'", "did you mean 'steps'"]),
    "override_no_equals": (None, ["train.steps"], ["override 'train.steps'", "KEY=VALUE"]),
    "override_bad_index": (None, ["variants.7.n_layers=2"], ["variants.7.n_layers", "no list item 7"]),
    "warmup_over_steps": (
        GOOD.replace("steps: 2,", "steps: 2, warmup_steps: 5,"),
        [], ["train.warmup_steps", "must not exceed"]),
    "no_variants": (GOOD.split("variants:")[0], [], ["variants", "non-empty list"]),
    "task_too_long_for_max_len": (
        GOOD.replace("norm: pre}", "norm: pre, pos: learned, max_len: 3}"),
        [], ["variants[1].max_len", "must be >= 9"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_suite_exits_2_with_one_line(case: str, refused_suite) -> None:  # noqa: ANN001
    text, overrides, fragments = CASES[case]
    line = refused_suite(GOOD if text is None else text, *overrides)
    for frag in fragments:
        assert frag in line, (frag, line)


def test_bad_flag_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["run", "x.yaml", "--device", "tpu"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device" in err[0]


def test_missing_suite_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "none.yaml"), "--results-dir", str(tmp_path / "r")]) == 2
    assert "none.yaml: file not found" in capsys.readouterr().err


def test_console_script_bad_suite_subprocess(tmp_path: Path, tiny_suite: Callable[..., Path]) -> None:
    """The installed entry point, as a user runs it: exit 2, one line on stderr, no traceback."""
    suite = tiny_suite(file="bad.yaml", model={"n_heads": 5})
    exe = Path(sys.executable).parent / "harness"
    proc = subprocess.run(
        [str(exe), "run", str(suite), "--results-dir", str(tmp_path / "r"),
         "--report-dir", str(tmp_path / "p")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "n_heads" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_include_and_override_merge(tmp_path: Path, tiny_suite: Callable[..., Path]) -> None:
    from harness.suite.load import load_suite

    tiny_suite(file="base.yaml", seeds=[0], profile=None)  # two variants, one task, one seed
    child = write_suite(tmp_path / "child.yaml", "include: base.yaml\nname: child\nseeds: [0, 1]\n")
    s = load_suite(child, ["train.steps=3", "model.d_model=32"])
    assert s.name == "child" and s.seeds == [0, 1]
    assert {j.train["steps"] for j in s.jobs} == {3}
    assert {j.model_cfg["d_model"] for j in s.jobs} == {32}
    assert len(s.jobs) == 2 * 1 * 2


def test_sweep_expands_names(tiny_suite: Callable[..., Path]) -> None:
    from harness.suite.load import load_suite

    swept = {"name": "b-L{n_layers}", "model": "vanilla", "norm": "pre", "sweep": {"n_layers": [1, 2, 3]}}
    s = load_suite(tiny_suite(seeds=[0], variants=[{"name": "a", "model": "vanilla"}, swept], profile=None))
    assert s.variants == ["a", "b-L1", "b-L2", "b-L3"]
    assert [j.model_cfg["n_layers"] for j in s.jobs if j.variant.startswith("b")] == [1, 2, 3]


def test_run_ids_stable_and_distinct(tiny_suite: Callable[..., Path]) -> None:
    from harness.suite.load import load_suite

    p = tiny_suite(profile=None)  # training jobs only: every one of them depends on train.lr
    a, b = load_suite(p), load_suite(p)
    assert [j.run_id for j in a.jobs] == [j.run_id for j in b.jobs]
    assert len({j.run_id for j in a.jobs}) == len(a.jobs)
    c = load_suite(p, ["train.lr=0.5"])
    assert not {j.run_id for j in a.jobs} & {j.run_id for j in c.jobs}
