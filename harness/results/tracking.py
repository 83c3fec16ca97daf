"""Result rows into MLflow: ``harness run ... --log mlflow`` and ``harness export mlflow RESULTS``.

MLflow is an optional extra (``pip install -e '.[mlflow]'``, the ``mlflow-skinny`` client). The
tracking URI is ``MLFLOW_TRACKING_URI`` when set, else a file store ``mlruns/`` in the current
directory (MLflow 3 keeps that store in maintenance mode and asks for ``MLFLOW_ALLOW_FILE_STORE=true``,
which this module sets for a file store unless the environment says otherwise; it also sets
``MLFLOW_DISABLE_TELEMETRY=true`` unless set, so that logging reaches no network). One experiment per
suite, named after it; one MLflow run per result row:

- params: the row's ``config`` (model, task and train config, device, seed, ...) flattened to dotted
  keys (``model.d_model``, ``train.lr``, ``task.seq_len``), plus ``shape.seq_len`` and
  ``shape.batch_size`` (the shape the row profiled); values as JSON text (``None`` becomes ``null``);
- metrics: every final metric of ``metrics`` and every numeric top-level field (the cost fields
  ``params``, ``params_applied``, ``flops_fwd``, ``mem_bytes``, ``act_bytes``, ``step_ms``,
  ``tokens_per_s``, ``mfu``, ``train_s``, the headline ``value`` and model extras such as
  ``ponder_steps``), at the last training step; the training curve as step metrics ``curve/<name>``
  (``curve/loss``, ``curve/tok_acc``, ...), one value per evaluation step;
- tags: ``suite``, ``variant``, ``task``, ``seed``, ``run_id``, ``status``, ``job``, ``model``,
  ``metric`` and the error when there is one; the run's name is ``variant task seed=N`` (``n=L`` for a
  cost cell) and its status FINISHED for an ``ok`` row, FAILED otherwise; its end time is the row's
  ``finished_at``.

Export skips a row whose ``run_id`` is already in the suite's experiment, so it can be repeated.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError

MLFLOW_INSTALL = "pip install -e '.[mlflow]'"
NOT_METRICS = {"seed", "seq_len", "batch_size", "schema_version"}  # numeric, but identity or shape
TAGS = ("suite", "variant", "task", "seed", "run_id", "status", "job", "model", "metric", "error")
MAX_PARAMS, MAX_METRICS = 100, 1000  # MLflow's log_batch limits


def import_mlflow(what: str = "--log mlflow") -> Any:
    """``mlflow``, or HarnessError with the install command (the CLI turns it into exit 2). MLflow's
    usage telemetry (a download of its config and uploads of events) is switched off unless the
    environment says otherwise: harness reaches no network by itself."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        import mlflow
    except ImportError:
        raise HarnessError(f"{what} needs MLflow, which is not installed: {MLFLOW_INSTALL}") from None
    return mlflow


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else the file store ``mlruns/`` under the current directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or (Path.cwd() / "mlruns").as_uri()


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A nested mapping as ``{"a.b": "json text"}``: the row's config as MLflow params."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value if isinstance(value, str) else json.dumps(value, sort_keys=True)}


def row_params(row: dict[str, Any]) -> dict[str, str]:
    params = flatten(row.get("config") or {})
    params.update(flatten({"shape": {"seq_len": row.get("seq_len"), "batch_size": row.get("batch_size")}}))
    return params


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def row_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The final metrics and the numeric fields (cost, headline value, extras) of a row."""
    out = {k: float(v) for k, v in row.items() if _number(v) and k not in NOT_METRICS}
    out.update({k: float(v) for k, v in (row.get("metrics") or {}).items() if _number(v)})
    return out


def curve_metrics(row: dict[str, Any]) -> Iterator[tuple[str, float, int]]:
    """``(curve/<name>, value, step)`` for every number of every evaluation point of the curve."""
    for point in row.get("curve") or []:
        step = int(point.get("step", 0))
        for k, v in point.items():
            if k != "step" and _number(v):
                yield f"curve/{k}", float(v), step


def row_tags(row: dict[str, Any]) -> dict[str, str]:
    tags = {k: str(row[k]) for k in TAGS if row.get(k) is not None}
    what = f"seed={row.get('seed')}" if row.get("job", "train") == "train" else f"n={row.get('seq_len')}"
    tags["mlflow.runName"] = f"{row.get('variant')} {row.get('task')} {what}"
    return tags


def _millis(row: dict[str, Any]) -> int | None:
    try:
        return int(dt.datetime.fromisoformat(str(row["finished_at"])).timestamp() * 1000)
    except (KeyError, ValueError):
        return None


class MlflowLogger:
    """Logs result rows as MLflow runs, one experiment per suite (see the module docstring)."""

    def __init__(self, uri: str | None = None, what: str = "--log mlflow") -> None:
        import_mlflow(what)
        from mlflow.tracking import MlflowClient

        self.uri = uri or tracking_uri()
        if "://" not in self.uri or self.uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            self.client = MlflowClient(tracking_uri=self.uri)  # a file store is opened (made) here
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise HarnessError(f"{what}: MLflow tracking URI {self.uri}: "
                               f"{type(e).__name__}: {first}") from None
        self.experiments: dict[str, str] = {}

    def experiment_id(self, suite: str) -> str:
        if suite not in self.experiments:
            exp = self.client.get_experiment_by_name(suite)
            if exp is None:
                try:
                    self.experiments[suite] = self.client.create_experiment(suite)
                except Exception:  # another process created it meanwhile
                    exp = self.client.get_experiment_by_name(suite)
                    if exp is None:
                        raise
            if exp is not None:
                self.experiments[suite] = exp.experiment_id
        return self.experiments[suite]

    def logged_ids(self, suite: str) -> set[str]:
        """The ``run_id`` tags of the runs already in a suite's experiment."""
        ids: set[str] = set()
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id(suite)], max_results=1000, page_token=token)
            ids.update(r.data.tags["run_id"] for r in page if "run_id" in r.data.tags)
            token = page.token
            if not token:
                return ids

    def log_row(self, row: dict[str, Any]) -> str:
        """One row as one finished MLflow run; returns MLflow's id of the run."""
        from mlflow.entities import Metric, Param

        when = _millis(row)
        train_s = row.get("train_s")
        start = when - int(1000 * float(train_s or 0)) if when is not None and _number(train_s) else when
        run = self.client.create_run(self.experiment_id(str(row.get("suite"))), start_time=start,
                                     tags=row_tags(row))
        rid, stamp = run.info.run_id, when or 0
        last = max((int(p.get("step", 0)) for p in row.get("curve") or []), default=0)
        params = [Param(k, v) for k, v in sorted(row_params(row).items())]
        metrics = [Metric(k, v, stamp, last) for k, v in sorted(row_metrics(row).items())]
        metrics += [Metric(k, v, stamp, step) for k, v, step in curve_metrics(row)]
        for i in range(0, len(params), MAX_PARAMS):
            self.client.log_batch(rid, params=params[i:i + MAX_PARAMS])
        for i in range(0, len(metrics), MAX_METRICS):
            self.client.log_batch(rid, metrics=metrics[i:i + MAX_METRICS])
        status = "FINISHED" if row.get("status") == "ok" else "FAILED"
        self.client.set_terminated(rid, status=status, end_time=when)
        return rid

    def hook(self, row: dict[str, Any]) -> None:
        """``harness run --log mlflow``: log a stored row; a tracker failure is a warning on stderr, not
        the end of the suite (the row is in the results file, ``harness export mlflow`` logs it later)."""
        try:
            self.log_row(row)
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0][:300]
            sys.stderr.write(f"harness: warning: MLflow did not take row {row.get('run_id')}: "
                             f"{type(e).__name__}: {first}\n")

    def export(self, rows: Iterable[dict[str, Any]]) -> tuple[int, int]:
        """Log every row whose run_id its suite's experiment lacks; returns (logged, already there)."""
        seen: dict[str, set[str]] = {}
        logged = already = 0
        for row in rows:
            suite, run_id = str(row.get("suite")), row.get("run_id")
            if suite not in seen:
                seen[suite] = self.logged_ids(suite)
            if run_id in seen[suite]:
                already += 1
                continue
            self.log_row(row)
            seen[suite].add(str(run_id))
            logged += 1
        return logged, already
