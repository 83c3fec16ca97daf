"""MLflow: rows logged by ``harness run --log mlflow`` and ``harness export mlflow`` read back with MLflow's
own client against a real local file store, equal to the JSONL rows."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tiny_suites import write_tiny_suite

from harness.cli.main import main
from harness.results.store import read_rows

needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason="MLflow is not installed (pip install -e '.[mlflow]')")


TRACK = dict(name="track", description="Two tiny variants logged to MLflow.")  # the tiny suite as it is


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The suite run once with --log mlflow: (results file, tracking URI)."""
    pytest.importorskip("mlflow")
    tmp = tmp_path_factory.mktemp("mlflow")
    uri = (tmp / "store").as_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        suite = write_tiny_suite(tmp, TRACK)
        argv = ["run", str(suite), "--results-dir", str(tmp / "res"), "--no-report", "--log", "mlflow"]
        assert main(argv) == 0
    return tmp / "res" / "track.jsonl", uri


def _runs(uri: str, suite: str = "track") -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(suite)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_id = {r.data.tags["run_id"]: r for r in runs}
    assert len(by_id) == len(runs), "a run_id logged twice"
    return by_id


@needs_mlflow
@pytest.mark.slow
def test_logged_runs_read_back_as_the_jsonl_rows(logged: tuple[Path, str]) -> None:
    from mlflow.tracking import MlflowClient

    from harness.results.tracking import flatten

    path, uri = logged
    rows = list(read_rows(path))
    runs = _runs(uri)
    assert set(runs) == {r["run_id"] for r in rows} and len(rows) == 6  # 4 training jobs, 2 cost cells
    client = MlflowClient(tracking_uri=uri)
    for row in rows:
        run = runs[row["run_id"]]
        params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
        # params: the config, flattened; spot-checked by hand, then every key
        assert params["model.d_model"] == "16" and params["train.lr"] == "0.003"
        assert params["task.seq_len"] == "4"
        assert params["train.betas"] == json.dumps(row["config"]["train"]["betas"])
        assert params["model.norm"] == row["config"]["model"]["norm"]
        assert {k: v for k, v in params.items() if not k.startswith("shape.")} == flatten(row["config"])
        assert params["shape.seq_len"] == str(row["seq_len"])
        # metrics: the cost fields and the final metrics, exactly
        for k in ("params", "params_applied", "flops_fwd", "mem_bytes", "act_bytes", "step_ms", "mfu"):
            assert metrics[k] == row[k], k
        for k, v in (row["metrics"] or {}).items():
            assert metrics[k] == v, k
        assert ("value" in metrics) == (row["value"] is not None)
        # tags
        for k in ("suite", "variant", "task", "seed", "run_id", "status", "job", "model"):
            assert tags[k] == str(row[k]), k
        assert run.info.status == "FINISHED"
        # the training curve, step by step
        if row["job"] == "train":
            assert metrics["train_s"] == row["train_s"] and row["curve"]
            for name in ("loss", "tok_acc", "seq_acc"):
                history = client.get_metric_history(run.info.run_id, f"curve/{name}")
                got = sorted((m.step, m.value) for m in history)
                assert got == [(p["step"], p[name]) for p in row["curve"]], name
        else:
            assert not any(k.startswith("curve/") for k in metrics)


@needs_mlflow
@pytest.mark.slow
def test_export_is_idempotent(logged: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = logged
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # the default store: ./mlruns
    store = (tmp_path / "mlruns").as_uri()
    assert main(["export", "mlflow", str(path.parent)]) == 0
    assert capsys.readouterr().out.strip() == f"6 run(s) logged to {store}, 0 already there"
    assert main(["export", "mlflow", str(path)]) == 0  # again, the file this time: nothing new
    assert capsys.readouterr().out.strip() == f"0 run(s) logged to {store}, 6 already there"
    runs = _runs((tmp_path / "mlruns").as_uri())
    assert set(runs) == {r["run_id"] for r in read_rows(path)}
    # exported runs carry what --log mlflow logged
    logged_runs = _runs(logged[1])
    for rid, run in runs.items():
        assert run.data.params == logged_runs[rid].data.params
        assert run.data.metrics == logged_runs[rid].data.metrics


@needs_mlflow
def test_export_of_nothing_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "mlflow", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no results file" in err[0]


@needs_mlflow
def test_an_unusable_tracking_uri_exits_2_before_any_job(
    tmp_path: Path, tiny_suite: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the store's folder would go
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (blocker / "mlruns").as_uri())
    res = tmp_path / "res"
    argv = ["run", str(tiny_suite(TRACK)), "--results-dir", str(res), "--no-report", "--log", "mlflow"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MLflow tracking URI" in err[0] and "file/mlruns" in err[0], err
    assert not res.exists()


def test_without_mlflow_run_and_export_exit_2_in_one_line(
    tmp_path: Path, tiny_suite: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow fails as if it were not installed
    res = tmp_path / "res"
    argv = ["run", str(tiny_suite(TRACK)), "--results-dir", str(res), "--no-report", "--log", "mlflow"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["harness: error: --log mlflow needs MLflow, which is not installed: "
                   "pip install -e '.[mlflow]'"]
    assert not res.exists()
    res.mkdir()
    (res / "track.jsonl").write_text('{"run_id": "x", "suite": "track"}\n')
    assert main(["export", "mlflow", str(res)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "harness export mlflow needs MLflow" in err[0]


def test_params_and_metrics_of_a_row() -> None:
    """The mapping from a row to MLflow's params, metrics and tags, on a hand-made row."""
    from harness.results.tracking import curve_metrics, flatten, row_metrics, row_tags

    row = {"run_id": "r1", "suite": "s", "variant": "v", "task": "t", "seed": 3, "job": "train",
           "status": "ok", "error": None, "model": "vanilla", "seq_len": 8, "batch_size": 4,
           "params": 10, "step_ms": 1.5, "higher_is_better": True, "value": 0.5,
           "metrics": {"tok_acc": 0.5, "loss": 0.25}, "ponder_steps": 2.0,
           "curve": [{"step": 5, "loss": 1.0, "tok_acc": 0.1}, {"step": 10, "loss": 0.5, "tok_acc": 0.4}],
           "config": {"model": {"d_model": 16, "attn_dropout": None, "betas": [0.9, 0.98]}, "seed": 3}}
    assert flatten(row["config"]) == {"model.d_model": "16", "model.attn_dropout": "null",
                                      "model.betas": "[0.9, 0.98]", "seed": "3"}
    assert row_metrics(row) == {"params": 10.0, "step_ms": 1.5, "value": 0.5, "tok_acc": 0.5,
                                "loss": 0.25, "ponder_steps": 2.0}
    assert list(curve_metrics(row)) == [("curve/loss", 1.0, 5), ("curve/tok_acc", 0.1, 5),
                                        ("curve/loss", 0.5, 10), ("curve/tok_acc", 0.4, 10)]
    tags = row_tags(row)
    assert tags["mlflow.runName"] == "v t seed=3" and tags["seed"] == "3" and "error" not in tags
