"""The over-training table (harness/report/curves.py): steps shared by every seed, thinned evenly with the
last kept, mean ± CI per step, and nothing when fewer than two variants or three points."""

from __future__ import annotations

from typing import Any

from harness.analysis.report.curves import MAX_STEPS, curve_section, curve_steps
from harness.analysis.report.doc import Table, markdown_lines
from harness.results.rows import migrate


def _row(variant: str, seed: int, curve: list[dict[str, Any]], status: str = "ok") -> Any:
    return migrate({
        "suite": "s", "job": "train", "task": "t", "variant": variant, "seed": seed, "status": status,
        "metric": "acc", "higher_is_better": True, "value": curve[-1]["acc"] if curve else None,
        "curve": curve, "run_id": f"{variant}-{seed}", "finished_at": "2026-12-02T00:00:00+00:00",
    })


def _curve(values: list[float], every: int = 100) -> list[dict[str, Any]]:
    return [{"step": every * (i + 1), "loss": 1.0, "acc": v} for i, v in enumerate(values)]


def test_steps_are_each_variants_thinned_with_the_last_kept() -> None:
    curves = {"a": [{s: 0.0 for s in range(10, 210, 10)}] * 2, "b": [{s: 0.0 for s in range(20, 410, 20)}]}
    steps = curve_steps(curves)
    assert len(steps) == MAX_STEPS and 200 in steps and steps[-1] == 400 and steps[0] == 10
    assert steps == sorted(set(steps))
    # a step only some seeds of a variant evaluated at is not one of its steps
    assert curve_steps({"a": [{1: 0.0, 2: 0.0}, {2: 0.0}], "b": [{2: 0.0, 3: 0.0}]}) == [2, 3]


def test_table_holds_mean_and_interval_per_step() -> None:
    rows = [_row("base", 0, _curve([0.1, 0.2, 0.3])), _row("base", 1, _curve([0.3, 0.4, 0.5])),
            _row("new", 0, _curve([0.5, 0.6, 0.7])), _row("new", 1, _curve([0.5, 0.6, 0.7])),
            _row("broken", 0, _curve([0.9, 0.9, 0.9]), status="error")]
    blocks = curve_section(rows, "s", "t", "acc", ["base", "new"], "en")
    table = next(b for b in blocks if isinstance(b, Table))
    text = "\n".join(markdown_lines(blocks))
    assert "step 100" in text and "step 300" in text
    cells = {row[0]: row[1:] for row in table.rows}
    assert list(cells) == ["base", "new"]  # the failed variant has no curve here
    assert cells["base"][0].startswith("0.2000 ± ") and cells["new"][2] == "0.7000 ± 0.0000"
    longer = [*rows, _row("long", 0, _curve([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], every=50))]
    table = next(b for b in curve_section(longer, "s", "t", "acc", ["base"], "en") if isinstance(b, Table))
    cells = {row[0]: row[1:] for row in table.rows}
    assert table.headers[1:] == tuple(f"step {s}" for s in (50, 100, 150, 200, 250, 300))
    assert cells["base"][0] == "—" and cells["long"][0] == "0.1000 (no CI, n=1)"


def test_nothing_for_one_variant_or_short_curves() -> None:
    one = [_row("base", s, _curve([0.1, 0.2, 0.3])) for s in (0, 1)]
    assert curve_section(one, "s", "t", "acc", ["base"], "en") == []
    short = [_row(v, 0, _curve([0.1, 0.2])) for v in ("base", "new")]
    assert curve_section(short, "s", "t", "acc", ["base", "new"], "en") == []
    assert curve_section(short, "s", "t", None, ["base", "new"], "en") == []
