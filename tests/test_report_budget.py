"""The report's budget lines (which budget a comparison holds, budget-matched pairs) and accuracy against
cost (the Pareto front with intervals), from hand-made rows."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.report import ablation, write_report
from harness.analysis.report.budget import budget_lines, held_budgets, matched_pairs
from harness.analysis.report.doc import markdown_lines
from harness.analysis.report.pareto import ParetoPoint, beats, pareto_points
from harness.results.rows import ResultRow

# variant -> (metric per seed, step_ms, mem_bytes, params, params_applied, flops_fwd)
VARIANTS: dict[str, tuple[list[float], float, int, int, int, int]] = {
    "base": ([0.50, 0.52, 0.51], 100.0, 40 << 20, 1000, 1000, 10_000),
    "cheap-good": ([0.80, 0.81, 0.79], 50.0, 20 << 20, 950, 1000, 10_500),  # beats base on both axes
    "dear-best": ([0.95, 0.96, 0.94], 300.0, 90 << 20, 3000, 3000, 30_000),  # better, costs more
    "noisy": ([0.20, 0.90, 0.55], 40.0, 10 << 20, 300, 1200, 9_800),  # wide interval
    "matched": ([0.70, 0.71, 0.69], 60.0, 30 << 20, 3100, 3100, 31_000),
}
MATCH = {"to": "dear-best", "budget": "params", "key": "d_model", "value": 48, "target": 3000,
         "achieved": 3100, "rel": 0.033333, "tolerance": 0.1}


def _row(variant: str, seed: int, **kw: Any) -> dict[str, Any]:
    vals, step, mem, params, applied, flops = VARIANTS[variant]
    row = {
        "run_id": f"{variant}-{seed}", "suite": "s", "variant": variant, "model": "vanilla", "task": "t",
        "seed": seed, "job": "train", "status": "ok", "params": params, "params_applied": applied,
        "flops_fwd": flops, "mem_bytes": mem, "mem_kind": "cpu_estimate", "step_ms": step,
        "metric": "acc", "value": vals[seed], "higher_is_better": True, "metrics": {"acc": vals[seed]},
        "baseline": "base", "device": "cpu", "finished_at": f"2026-01-01T00:00:0{seed}+00:00",
        "config": {"train": {"steps": 10, "batch_size": 4}, "task": {"seq_len": 8},
                   **({"match": MATCH} if variant == "matched" else {})},
    }
    row.update(kw)
    return row


def _rows(**kw: Any) -> list[ResultRow]:
    return [ResultRow.from_dict(_row(v, s, **kw)) for v in VARIANTS for s in range(3)]


def _front(points: list[ParetoPoint]) -> dict[str, list[str]]:
    return {p.variant: p.beaten_by for p in points}


def test_pareto_front_takes_the_intervals_into_account() -> None:
    ts = ablation(_rows(), "s", "t")
    step = _front(pareto_points(ts, "step_ms"))
    assert step["base"] == ["cheap-good", "matched"]  # better beyond both intervals, and cheaper
    assert step["cheap-good"] == [] and step["dear-best"] == []  # dear-best is better but costs more
    assert step["noisy"] == []  # its interval overlaps everyone's: nothing beats it beyond noise
    assert step["matched"] == ["cheap-good"]
    mem = _front(pareto_points(ts, "mem_bytes"))
    assert mem["base"] == ["cheap-good", "matched"] and mem["dear-best"] == []


def test_pareto_lower_is_better_and_one_seed_has_no_interval() -> None:
    lower = ablation(_rows(higher_is_better=False), "s", "t")
    step = _front(pareto_points(lower, "step_ms"))
    assert step["cheap-good"] == [] and step["base"] == []  # base is lower (better) but costs more
    assert step["dear-best"] == ["base", "cheap-good", "matched"]  # now the worst, and the dearest
    one = [r for r in _rows() if r.seed == 0]
    single = _front(pareto_points(ablation(one, "s", "t"), "step_ms"))
    assert all(v == [] for v in single.values())


def test_beats_needs_no_more_cost_and_separated_intervals() -> None:
    a = ParetoPoint("a", 0.9, 0.01, 3, 10.0)
    b = ParetoPoint("b", 0.5, 0.01, 3, 10.0)
    assert beats(a, b, True) and not beats(b, a, True)  # equal cost counts as no more
    assert not beats(ParetoPoint("a", 0.9, 0.01, 3, 11.0), b, True)
    assert not beats(ParetoPoint("a", 0.9, 0.4, 3, 1.0), b, True)  # intervals overlap
    assert not beats(ParetoPoint("a", 0.9, math.nan, 1, 1.0), b, True)
    assert beats(b, a, False)


def test_held_budgets_and_budget_lines() -> None:
    rows = _rows()
    ts = ablation(rows, "s", "t")
    base = ts.get("base")
    ratios = held_budgets(ts.get("cheap-good"), base)
    assert ratios == pytest.approx({"params": 0.95, "params_applied": 1.0, "flops_fwd": 1.05})
    text = "\n".join(markdown_lines(budget_lines(ts, rows, "en")))
    assert "Budgets held against `base` (equal within 10%" in text
    assert "`cheap-good`: params, params_applied, flops_fwd" in text
    assert "`dear-best`: none (params ×3.00" in text
    assert "`noisy`: flops_fwd (params ×0.30, params_applied ×1.20" in text
    assert ("`matched` is matched to `dear-best` on params: d_model = 48 gives 3.1K against 3.0K (+3.3%"
            in text)
    assert "`dear-best` − `matched` (acc, paired by seed): +0.2500 ± 0.0000" in text
    zh = "\n".join(markdown_lines(budget_lines(ts, rows, "zh")))
    assert "相对 `base` 保持相同的预算" in zh and "`matched` 按 params 与 `dear-best` 对齐" in zh


def test_matched_pairs_read_the_rows_match() -> None:
    rows = _rows()
    (mp,) = matched_pairs(ablation(rows, "s", "t"), rows)
    assert mp.variant == "matched" and mp.match["to"] == "dear-best" and mp.n == 3
    assert mp.diff == pytest.approx(0.25)


def test_report_has_budget_line_pareto_table_and_figure(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    with (results / "s.jsonl").open("w") as f:
        for v in VARIANTS:
            for s in range(3):
                f.write(json.dumps(_row(v, s)) + "\n")
    for lang, heading, front in (("en", "Accuracy against cost", "| front"), ("zh", "精度与开销", "| 前沿")):
        md = write_report(results, tmp_path / lang, lang=lang).read_text()
        assert heading in md and front in md
        assert (tmp_path / lang / "figures" / "s-t-pareto.png").exists()
        line = next(x for x in md.splitlines() if x.startswith("| `base`") and "front" not in x
                    and "前沿" not in x)
        assert "`cheap-good`" in line


def _floor_row(variant: str, seed: int) -> dict[str, Any]:
    """A copy task on 8 symbols where nothing was learned: seq_acc 0 for every variant and seed."""
    row = _row(variant, seed, metric="seq_acc", value=0.0, metrics={"seq_acc": 0.0, "tok_acc": 0.125})
    row["config"] = {"train": {"steps": 10, "batch_size": 4},
                     "task": {"name": "copy", "seq_len": 8, "vocab": 8}}
    row["bounds"] = {m: {"floor": f, "chance": f, "ceiling": 1.0, "higher_is_better": True}
                     for m, f in (("tok_acc", 1 / 8), ("seq_acc", 8.0**-8))}  # as the copy task declares
    return row


def test_a_table_with_every_variant_at_the_floor_compares_costs_only(tmp_path: Path) -> None:
    rows = [ResultRow.from_dict(_floor_row(v, s)) for v in VARIANTS for s in range(3)]
    ts = ablation(rows, "s", "t")
    assert ts.all_at == "floor" and ts.bound is not None and ts.bound.worst == 0.0
    assert all(s.verdict == "floor" for s in ts.variants if not s.is_baseline)
    results = tmp_path / "results"
    results.mkdir()
    (results / "s.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows))
    write_report(results, tmp_path / "report")
    text = (tmp_path / "report" / "tables.md").read_text()
    assert "Uninformative at this scale: every variant's seq_acc sits at the metric's floor (0)" in text
    figures = {p.name for p in (tmp_path / "report" / "figures").glob("*.png")}
    assert not any(name.startswith("s-t-") for name in figures), figures  # no metric or pareto figure
    # one variant above the floor: the table compares again
    learned = {**_floor_row("base", 0), "value": 0.5, "metrics": {"seq_acc": 0.5}}
    rows[0] = ResultRow.from_dict(learned)
    again = ablation(rows, "s", "t")
    assert again.bound is not None and again.all_at is None
