"""Budget-matched baselines (a variant's ``match:``): the solver, the suite key and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_suites import write_suite

from harness.core.errors import HarnessError
from harness.suite.match import scaled_keys, solve, start_value

# a wide variant b sized to the params of a: the same depth, so d_model (with d_ff in proportion) must
# come back to a's 16 (b without dropout: a different job from a all the same)
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
  - {name: b, model: vanilla, dropout: 0.0, d_model: 64, d_ff: 128,
     match: {to: a, budget: params, key: d_model, step: 2, scale: [d_ff]}}
"""
MATCH = "match: {to: a, budget: params, key: d_model, step: 2, scale: [d_ff]}"


# --- the solver ---------------------------------------------------------------------------------


def _solve(target: int, start: int, step: int = 1, f=lambda v: v * v) -> tuple[int, int]:  # noqa: ANN001
    s = solve(lambda v: v, f, target, start, step)
    return s.value, s.achieved


def test_solve_finds_the_closest_value_from_above_and_below() -> None:
    assert _solve(1000, start=4) == (32, 1024)  # 31^2 = 961 is farther
    assert _solve(1000, start=500) == (32, 1024)
    assert _solve(980, start=7) == (31, 961)  # 961 is closer than 1024


def test_solve_steps_by_multiples_and_ties_go_to_the_smaller() -> None:
    value, _ = _solve(1000, start=64, step=4)
    assert value % 4 == 0 and value == 32
    assert _solve(10, start=3, f=lambda v: 10 * v - 5) == (1, 5)  # 5 and 15 tie: the smaller width
    assert _solve(1, start=9) == (1, 1)  # down to the smallest multiple


def test_solve_refuses_a_budget_that_never_reaches_the_target() -> None:
    with pytest.raises(HarnessError, match="brackets"):
        solve(lambda v: v, lambda v: 7, 100, 4, 1)


def test_scaled_keys_keep_proportions_and_scale_lists() -> None:
    cfg = {"d_model": 64, "d_ff": 256, "widths": [16, 32, 64], "stem": 32}
    assert scaled_keys(cfg, "d_model", ["d_ff"], 36) == {"d_model": 36, "d_ff": 144}
    assert scaled_keys(cfg, "widths", [], 14) == {"widths": [14, 28, 56]}
    assert scaled_keys(cfg, "widths", ["stem"], 8) == {"widths": [8, 16, 32], "stem": 16}
    assert start_value([5, 10]) == 5
    with pytest.raises(HarnessError):
        start_value("wide")


# --- the suite key ------------------------------------------------------------------------------


def test_matched_variant_is_solved_at_load_and_hashes_the_solved_config(tmp_path: Path) -> None:
    from harness.suite.load import load_suite

    jobs = {j.variant: j for j in load_suite(write_suite(tmp_path / "s.yaml", GOOD)).jobs}
    a, b = jobs["a"], jobs["b"]
    assert (b.model_cfg["d_model"], b.model_cfg["d_ff"]) == (16, 32)
    target = b.match["target"]
    assert b.match == {"to": "a", "budget": "params", "key": "d_model", "value": 16, "target": target,
                       "achieved": target, "rel": 0.0, "tolerance": 0.1}
    assert b.config()["match"] == b.match and "match" not in a.config()
    # the run_id is that of the solved config written out by hand
    plain = write_suite(tmp_path / "plain.yaml",
                        GOOD.replace(f"d_model: 64, d_ff: 128,\n     {MATCH}", "d_model: 16, d_ff: 32"))
    assert {j.variant: j for j in load_suite(plain).jobs}["b"].run_id == b.run_id


def test_match_on_flops_and_applied_params(tmp_path: Path) -> None:
    from harness.suite.load import load_suite

    for budget in ("flops_fwd", "params_applied"):
        p = write_suite(tmp_path / "s.yaml", GOOD.replace("budget: params", f"budget: {budget}"))
        b = {j.variant: j for j in load_suite(p).jobs}["b"]
        assert b.match["budget"] == budget and abs(b.match["rel"]) <= 0.1
        assert b.model_cfg["d_model"] == 16


REFUSALS = {
    "unknown_target": (GOOD.replace("to: a,", "to: c,"), ["bad.yaml:11:", "variants[1].match.to", "'c'"]),
    "self_target": (GOOD.replace("to: a,", "to: b,"), ["variants[1].match.to", "unknown variant 'b'"]),
    "unknown_key": (GOOD.replace("key: d_model", "key: d_mdoel"),
                    ["variants[1].match.key", "Did you mean: d_model"]),
    "unknown_scale_key": (GOOD.replace("scale: [d_ff]", "scale: [dff]"),
                          ["variants[1].match.scale[0]", "dff"]),
    "bad_budget": (GOOD.replace("budget: params", "budget: tokens"),
                   ["variants[1].match.budget", "flops_fwd"]),
    "unknown_match_key": (GOOD.replace("step: 2", "stpe: 2"),
                          ["bad.yaml:11:", "variants[1].match.stpe", "did you mean 'step'"]),
    "zero_tolerance": (GOOD.replace("step: 2", "step: 2, tolerance: 0"), ["match.tolerance", "must be > 0"]),
    "missing_key": (GOOD.replace("key: d_model, ", ""), ["variants[1].match.key", "required"]),
    "with_sweep": (GOOD.replace("d_model: 64,", "sweep: {n_layers: [1, 2]}, d_model: 64,"),
                   ["variants[1].match", "cannot have a sweep"]),
    "refused_width": (GOOD.replace("step: 2", "step: 3"), ["variants[1].match.key", "refused", "match.step"]),
    "out_of_tolerance": (GOOD.replace("step: 2", "step: 64, tolerance: 0.01"),
                         ["variants[1].match", "within 0.01", "the closest"]),
    "chained": (GOOD + "  - {name: c, model: vanilla, match: {to: b, key: d_model, step: 2}}\n",
                ["variants[2].match.to", "matched itself"]),
    "target_not_on_task": (
        GOOD.replace("  - {name: a, model: vanilla}",
                     "  - {name: a, model: vanilla, tasks: [rev]}").replace(
            "vocab: 4}", "vocab: 4}\n  - {name: rev, task: reverse, seq_len: 4, vocab: 4}"),
        ["variants[1].match.to", "does not run on task 'copy'"]),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_bad_match_exits_2_with_one_line(case: str, refused_suite) -> None:  # noqa: ANN001
    text, fragments = REFUSALS[case]
    line = refused_suite(text)
    for frag in fragments:
        assert frag in line, (frag, line)
