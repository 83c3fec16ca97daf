"""The command line as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.main import main

EXE = str(Path(sys.executable).parent / "harness")
ROOT = Path(__file__).resolve().parent.parent


def test_help_and_list_do_not_import_torch() -> None:
    code = (
        "import sys; from harness.cli.main import main\n"
        "for argv in (['list'], ['list', 'models'], ['list', 'suites']):\n"
        "    assert main(argv) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "vanilla" in proc.stdout and "transformer-base" in proc.stdout and "quick.yaml" in proc.stdout
    helped = subprocess.run([EXE, "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "run" in helped.stdout and "profile" in helped.stdout


def test_profile_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["vanilla", "d_model=32", "n_heads=2", "d_ff=64", "seq_len=16", "batch_size=2", "--json"]
    assert main(["profile", *args]) == 0
    out = json.loads(capsys.readouterr().out)
    for k in ("params", "params_applied", "flops_fwd", "flops_unsupported", "mem_bytes", "mem_kind",
              "act_bytes", "step_ms", "tokens_per_s", "mfu"):
        assert k in out, k
    assert out["seq_len"] == 16 and out["batch_size"] == 2 and out["flops_unsupported"] == []


def test_profile_json_carries_the_model_extras(capsys: pytest.CaptureFixture[str]) -> None:
    """An ACT model's profile row has ponder_steps, as its training rows do."""
    args = ["universal", "act=true", "d_model=32", "n_heads=2", "d_ff=64", "n_layers=2", "seq_len=16",
            "batch_size=2", "--json"]
    assert main(["profile", *args, "--warmup", "0", "--steps", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "ok" and 1.0 <= out["ponder_steps"] <= 2 * 2  # max_steps: 2 x n_layers
    assert main(["profile", *[a for a in args if a != "act=true"], "--steps", "1"]) == 0
    assert "ponder_steps" not in json.loads(capsys.readouterr().out)  # no ACT, no ponder steps


@pytest.mark.slow
def test_profile_preset_counts_paper_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "transformer-base", "seq_len=8", "batch_size=1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 63_082_496
    assert out["params_applied"] > out["params"]  # the tied embedding is used by src, tgt and head


def test_profile_bad_key_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "vanilla", "n_head=3", "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_head" in err[0] and "n_heads" in err[0]
    assert main(["profile", "vanila"]) == 2
    assert "Did you mean: vanilla" in capsys.readouterr().err


@pytest.mark.slow
def test_dry_run_prints_grid_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = tmp_path / "res"
    assert main(["run", str(ROOT / "suites" / "quick.yaml"), "--dry-run", "--results-dir", str(res)]) == 0
    out = capsys.readouterr().out
    assert "vanilla-post" in out and "GFLOPs/ex" in out and "params" in out
    assert not res.exists()


def test_python_api() -> None:
    import harness

    assert {"vanilla", "transformer-base", "transformer-big"} <= set(harness.list_models())
    assert {"copy", "reverse", "sort", "addition", "duplication"} <= set(harness.list_tasks())
    df = harness.load_results(ROOT / "results")
    assert {"run_id", "variant", "status", "value", "flops_fwd"} <= set(df.columns)
    assert df["run_id"].is_unique


@pytest.mark.slow
def test_report_command_zh_from_committed_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--results-dir", str(ROOT / "results"), "--report-dir", str(tmp_path), "--lang", "zh"]
    assert main(["report", *args]) == 0
    text = (tmp_path / "tables.md").read_text(encoding="utf-8")
    for header in ("时间", "会议", "题目", "想解决的问题", "使用的方法", "结果", "训练细节", "其它"):
        assert header in text
    assert main(["report", "--results-dir", str(tmp_path / "none")]) == 2
