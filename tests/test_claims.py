"""The claims ledger on hand-made result rows: every verdict, its evidence, durability, cost claims held
against two references, the committed literature.yaml's claims, and malformed claims refused."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.claims import VERDICTS, evaluate, evaluate_claims, load_claims
from harness.analysis.claims.schema import (
    Claim,
    CostRatioTest,
    CountCheck,
    CountTest,
    ExponentTest,
    LayoutTest,
    MetricTest,
    NoTest,
    Reference,
    Text,
)
from harness.analysis.report.claims import claims_section, evidence_text, verdict_tally
from harness.analysis.report.doc import markdown_lines
from harness.core.errors import InputError
from harness.results.rows import ResultRow
from harness.results.store import load_rows

# eight seeds: the exact two-sided sign-flip test cannot go below 2 / 2**n (0.0625 at five, 0.0078 at eight)
SEEDS = [0, 1, 2, 3, 4, 5, 6, 7]
NOISE = [0.010, -0.020, 0.015, -0.005, 0.000, 0.005, -0.010, 0.020]  # shared by a seed's variants
COPY = {"name": "copy", "vocab": 8, "seq_len": 8}


def accuracy_bounds(floor: float, chance: float) -> dict[str, Any]:
    return {"floor": floor, "chance": chance, "ceiling": 1.0, "higher_is_better": True}


# what the copy task declares at vocab 8, seq_len 8 (harness/tasks/algorithmic.py), and duplication at 16
COPY_BOUNDS = {"tok_acc": accuracy_bounds(1 / 8, 1 / 8), "seq_acc": accuracy_bounds(8.0**-8, 8.0**-8)}
DUP_BOUNDS = {"tok_acc": accuracy_bounds(1 / 16, 1 / 16), "seq_acc": accuracy_bounds(16.0**-8, 16.0**-8)}


def train(variant: str, seed: int, value: float, *, metric: str = "tok_acc", task: str = "copy",
          suite: str = "s", task_cfg: dict[str, Any] | None = None, curve: list[dict[str, Any]] | None = None,
          bounds: dict[str, Any] | None = COPY_BOUNDS, **extras: Any) -> ResultRow:
    row = ResultRow(run_id=f"{suite}-{task}-{variant}-{seed}", suite=suite, variant=variant, task=task,
                    seed=seed, job="train", status="ok", metric=metric, value=value,
                    higher_is_better=metric != "bpc", bounds=bounds, metrics={metric: value},
                    curve=curve or [],
                    device="cpu", device_name="Test CPU (2 threads)",
                    config={"task": dict(task_cfg or COPY), "train": {"steps": 400, "batch_size": 16}},
                    finished_at="2026-01-01T00:00:00Z", baseline="ref")
    row.update(extras)
    return row


def profile(variant: str, n: int, suite: str = "s", status: str = "ok", **cost: Any) -> ResultRow:
    return ResultRow(run_id=f"p-{variant}-{n}", suite=suite, variant=variant, task="copy", seed=0,
                     job="profile", status=status, seq_len=n, batch_size=1,
                     device_name="Test CPU (2 threads)",
                     config={"task": dict(COPY), "model": {"n_layers": 1}}, **cost)


def claim(test: Any, cid: str = "c") -> Claim:
    return Claim(id=cid, by="paper", source="Table 1", text=Text(en="a claim", zh="一个论断"), test=test,
                 paper="p")


def metric_test(expect: str = "higher", margin: float = 0.0, **kw: Any) -> MetricTest:
    args = {"kind": "metric", "suite": "s", "task": "copy", "variant": "v", "reference": "ref",
            "metric": "tok_acc", "expect": expect, "margin": margin, **kw}
    return MetricTest(**args)


def pair_rows(delta: list[float], base: float = 0.6, **kw: Any) -> list[ResultRow]:
    rows = []
    for i, s in enumerate(SEEDS):
        rows.append(train("ref", s, base + NOISE[i], **kw))
        rows.append(train("v", s, base + NOISE[i] + delta[i], **kw))
    return rows


CLEAR = [0.20, 0.201, 0.199, 0.202, 0.198, 0.200, 0.203, 0.197]
MIXED = [0.010, -0.012, 0.004, -0.006, 0.000, 0.008, -0.007, 0.002]


# ------------------------------------------------------------------------------------------ verdicts
def test_supported_with_evidence() -> None:
    v = evaluate(claim(metric_test("higher")), pair_rows(CLEAR))
    assert v.verdict == "supported"
    c = v.comparison
    assert c is not None and c.n == 8 and abs(c.diff - 0.2) < 1e-3 and c.p < 0.05
    assert c.p_perm == pytest.approx(2 / 2**8) and c.superiority == 1.0
    assert v.scale["steps"] == [400] and v.scale["device_name"] == ["Test CPU (2 threads)"]
    assert v.suite == "s" and v.task == "copy" and v.metric == "tok_acc"
    text = evidence_text(v, "en")
    assert "Δ tok_acc (v − ref) = +0.2000" in text and "n=8" in text


def test_contradicted() -> None:
    v = evaluate(claim(metric_test("lower")), pair_rows(CLEAR))
    assert v.verdict == "contradicted"
    assert evaluate(claim(metric_test("same")), pair_rows(CLEAR)).verdict == "contradicted"


def test_not_separable_gives_the_detectable_effect() -> None:
    v = evaluate(claim(metric_test("higher")), pair_rows(MIXED))
    assert v.verdict == "not separable"
    c = v.comparison
    assert c is not None and c.lo < 0 < c.hi
    assert math.isfinite(c.detectable) and c.detectable > abs(c.diff)
    assert c.seeds_needed is None or c.seeds_needed > 5
    text = evidence_text(v, "en")
    assert "could detect ±" in text and "80% power" in text
    assert "可检测" in evidence_text(v, "zh")


def test_five_seeds_never_pass_the_sign_flip_test() -> None:
    """At five seeds the exact sign-flip p is at least 0.0625: a clear t-test alone is not enough."""
    five = [r for r in pair_rows(CLEAR) if r.seed < 5]
    v = evaluate(claim(metric_test("higher")), five)
    assert v.verdict == "not separable"
    c = v.comparison
    assert c is not None and c.p < 1e-6 and c.p_perm == pytest.approx(0.0625)


def test_the_ledger_is_one_family_and_a_shared_comparison_is_tested_once() -> None:
    rows = pair_rows(CLEAR) + [train("w", s, 0.6 + NOISE[i] + MIXED[i]) for i, s in enumerate(SEEDS)]
    claims = [claim(metric_test("higher"), "a"), claim(metric_test("higher"), "b"),
              claim(metric_test("higher", variant="w"), "c"),
              claim(metric_test("not_lower", margin=0.05), "d")]
    va, vb, vc, vd = evaluate_claims(claims, rows)
    ca, cb, cc, cd = (v.comparison for v in (va, vb, vc, vd))
    assert ca is not None and cb is not None and cc is not None and cd is not None
    # three distinct tests (a and b read one; d reads a's data against a margin), two of them two-sided
    assert ca.family == cc.family == cd.family == 3
    assert ca.shared_with == ["b"] and cb.shared_with == ["a"] and cc.shared_with == []
    assert ca.p_holm == cb.p_holm and ca.p_holm >= ca.p
    # Holm among the two directional ones, scaled by m / d = 3 / 2 (their share of alpha)
    from harness.analysis.stats import holm
    assert [ca.p_holm, cc.p_holm] == pytest.approx([min(1, 1.5 * p) for p in holm([ca.p, cc.p])])
    alone_d = evaluate(claims[3], rows).comparison
    assert alone_d is not None and cd.conf == pytest.approx(1 - 0.05 / 3) and alone_d.conf == 0.95
    assert cd.half_width > alone_d.half_width  # the interval shown is the wider one the verdict used
    assert va.verdict == vb.verdict == "supported" and vc.verdict == "not separable"
    # alone, a claim is a family of one
    alone = evaluate(claims[0], rows).comparison
    assert alone is not None and alone.family == 1 and alone.conf == pytest.approx(0.95)


def test_uninformative_at_floor_names_the_chance_level() -> None:
    chance = [0.125 + x / 10 for x in NOISE]  # within a point of 1/8
    rows = [train(n, s, chance[i] + (0.002 if n == "v" else 0.0))
            for i, s in enumerate(SEEDS) for n in ("v", "ref")]
    v = evaluate(claim(metric_test("higher")), rows)
    assert v.verdict == "uninformative" and v.bound == "floor"
    assert v.bound_value == pytest.approx(0.125) and v.bound_chance
    assert "all at floor (tok_acc chance 0.125)" in evidence_text(v, "en")


def test_uninformative_at_ceiling() -> None:
    rows = [train(n, s, 1.0, metric="seq_acc") for s in SEEDS for n in ("v", "ref")]
    v = evaluate(claim(metric_test("higher", metric="seq_acc")), rows)
    assert v.verdict == "uninformative" and v.bound == "ceiling" and v.bound_value == 1.0


def test_either_arm_at_its_floor_is_uninformative() -> None:
    """A reference that learned nothing is beaten by anything; one arm at the ceiling is not enough."""
    floor_ref = [train("v", s, 1.0, metric="seq_acc") for s in SEEDS] + [
        train("ref", s, 0.0, metric="seq_acc") for s in SEEDS]
    v = evaluate(claim(metric_test("higher", metric="seq_acc")), floor_ref)
    assert v.verdict == "uninformative" and v.bound == "floor"
    one_ceiling = [train("v", s, 1.0) for s in SEEDS] + [train("ref", s, 0.6 + NOISE[i])
                                                         for i, s in enumerate(SEEDS)]
    assert evaluate(claim(metric_test("higher")), one_ceiling).verdict == "supported"


def test_not_measured() -> None:
    v = evaluate(claim(metric_test("higher")), [])
    assert v.verdict == "not measured" and v.reason == "no_rows"
    only_ref = [r for r in pair_rows(CLEAR) if r.variant == "ref"]
    assert evaluate(claim(metric_test("higher")), only_ref).verdict == "not measured"
    none = claim(NoTest(kind="none", needs=Text(en="a GAN", zh="GAN")))
    v = evaluate(none, pair_rows(CLEAR))
    assert v.verdict == "not measured" and "not testable here: a GAN" in evidence_text(v, "en")


def test_margins_same_and_non_inferiority() -> None:
    small = [0.001, -0.001, 0.002, 0.0, -0.002, 0.001, -0.001, 0.0]
    assert evaluate(claim(metric_test("same", margin=0.05)), pair_rows(small)).verdict == "supported"
    assert evaluate(claim(metric_test("not_lower", margin=0.05)), pair_rows(small)).verdict == "supported"
    worse = [-x for x in CLEAR]
    assert evaluate(claim(metric_test("not_lower", margin=0.05)), pair_rows(worse)).verdict == "contradicted"
    assert evaluate(claim(metric_test("not_higher", margin=0.05)), pair_rows(CLEAR)).verdict == "contradicted"
    unsure = evaluate(claim(metric_test("not_lower", margin=0.005)), pair_rows(MIXED))
    assert unsure.verdict == "not separable"


def test_one_variant_across_two_tasks() -> None:
    rows = [train("act", s, 1.2 + NOISE[i], ponder_steps=1.2 + NOISE[i]) for i, s in enumerate(SEEDS)]
    rows += [train("act", s, 2.1, task="addition", ponder_steps=2.1 + NOISE[i] / 2)
             for i, s in enumerate(SEEDS)]
    spec = metric_test("lower", variant="act", reference="act", reference_task="addition",
                       metric="ponder_steps")
    v = evaluate(claim(spec), rows)
    assert v.verdict == "supported" and set(v.means) == {"copy", "addition"}


# ---------------------------------------------------------------------------------------- durability
def test_durability_growing_and_early_effects() -> None:
    def curve(mid: float) -> list[dict[str, Any]]:
        return [{"step": 100, "tok_acc": 0.3}, {"step": 200, "tok_acc": mid}, {"step": 400, "tok_acc": 0.0}]

    growing, early = [], []
    for i, s in enumerate(SEEDS):
        growing += [train("ref", s, 0.6 + NOISE[i], curve=curve(0.5 + NOISE[i])),
                    train("v", s, 0.8 + NOISE[i] + MIXED[i] / 10,
                          curve=curve(0.55 + NOISE[i] + MIXED[i] / 10))]
        early += [train("ref", s, 0.6 + NOISE[i], curve=curve(0.5 + NOISE[i])),
                  train("v", s, 0.6 + NOISE[i] + MIXED[i], curve=curve(0.7 + NOISE[i] + MIXED[i] / 10))]
    d = evaluate(claim(metric_test("higher")), growing).durability
    assert d is not None and d.mid_step == 200 and d.trend == "growing" and not d.early
    d = evaluate(claim(metric_test("higher")), early).durability
    assert d is not None and d.trend == "shrinking" and d.early


# ------------------------------------------------------------------------------------------ cost claims
def cost_rows() -> list[ResultRow]:
    rows = []
    for n in (16, 32, 64):
        rows.append(profile("lam", n, act_bytes=100.0 * n**2, step_ms=1.0 * n**2))
        rows.append(profile("sdpa", n, act_bytes=80.0 * n**2, step_ms=0.1 * n**3))
        rows.append(profile("math", n, act_bytes=1.0 * n**4, step_ms=0.2 * n**3))
    rows.append(profile("math", 128, status="skipped"))
    rows.append(profile("lam", 128, act_bytes=100.0 * 128**2, step_ms=128.0**2))
    return rows


def ratio_test(refs: list[str], at: int = 64) -> CostRatioTest:
    what = {"math": Text(en="materialised attention", zh="显式注意力"),
            "sdpa": Text(en="fused SDPA", zh="SDPA")}
    return CostRatioTest(kind="cost_ratio", suite="s", quantity="act_bytes", variant="lam", at=at, below=0.5,
                         references=[Reference(variant=r, what=what[r]) for r in refs])


def test_cost_ratio_holds_against_one_reference_not_the_other() -> None:
    v = evaluate(claim(ratio_test(["math", "sdpa"])), cost_rows())
    assert v.verdict == "supported"
    assert [(r.reference, r.holds) for r in v.ratios] == [("math", True), ("sdpa", False)]
    text = evidence_text(v, "en")
    assert "holds against materialised attention (`math`)" in text
    assert "not against fused SDPA (`sdpa`)" in text
    # the first reference is the paper's own and decides
    assert evaluate(claim(ratio_test(["sdpa", "math"])), cost_rows()).verdict == "contradicted"


def test_cost_ratio_where_the_reference_could_not_run() -> None:
    v = evaluate(claim(ratio_test(["math"], at=128)), cost_rows())
    assert v.verdict == "supported" and v.ratios[0].ref_failed and v.ratios[0].ratio is None
    assert evaluate(claim(ratio_test(["math"], at=256)), cost_rows()).verdict == "not measured"


def test_exponent() -> None:
    def spec(**kw: Any) -> ExponentTest:
        return ExponentTest(**{"kind": "exponent", "suite": "s", "quantity": "act_bytes", "variant": "lam",
                               "range": [16, 128], **kw})

    v = evaluate(claim(spec(max=2.2)), cost_rows())
    assert v.verdict == "supported" and v.exponent == pytest.approx(2.0) and v.fit_points == 4
    assert evaluate(claim(spec(max=1.3)), cost_rows()).verdict == "contradicted"
    assert evaluate(claim(spec(min=1.7, variant="math")), cost_rows()).verdict == "supported"
    depth = spec(max=0.3, x="model.n_layers", range=[1, 12])
    assert evaluate(claim(depth), cost_rows()).verdict == "not measured"


def test_counts() -> None:
    rows = [train("shared", 0, 0.5, params=100, params_applied=400, flops_fwd=1000),
            train("full", 0, 0.5, params=400, params_applied=400, flops_fwd=1000)]

    def spec(*checks: CountCheck, reference: str | None = "full") -> Claim:
        return claim(CountTest(kind="count", suite="s", variant="shared", reference=reference,
                               checks=list(checks)))

    ok = spec(CountCheck("params", "less", ratio=0.5), CountCheck("params_applied", "equal"),
              CountCheck("flops_fwd", "equal"))
    assert evaluate(ok, rows).verdict == "supported"
    assert evaluate(spec(CountCheck("flops_fwd", "less")), rows).verdict == "contradicted"
    assert evaluate(spec(CountCheck("params", "about", value=102, tolerance=0.05), reference=None),
                    rows).verdict == "supported"
    assert evaluate(spec(CountCheck("params", "less"), reference="absent"), rows).verdict == "not measured"


def test_layout_reformer_table_2() -> None:
    def dup(variant: str, seed: int, high: float, low: float) -> ResultRow:
        r = train(variant, seed, high, task="dup", task_cfg={"name": "duplication", "vocab": 16},
                  bounds=DUP_BOUNDS)
        r.metrics.update({"tok_acc@lsh-8": high, "tok_acc@lsh-1": low})
        return r

    spec = LayoutTest(kind="layout", suite="s", task="dup", metric="tok_acc", fragile=["full"],
                      robust=["lsh4"], high="lsh-8", low="lsh-1")
    paper = [dup("full", s, 0.95 + NOISE[i] / 10, 0.52 + NOISE[i]) for i, s in enumerate(SEEDS)]
    paper += [dup("lsh4", s, 1.0, 0.92 + NOISE[i] / 2) for i, s in enumerate(SEEDS)]
    v = evaluate(claim(spec), paper)
    assert v.verdict == "supported" and v.means["full"] > v.means["lsh4"]
    same = [dup(n, s, 1.0, 0.9 + NOISE[i] + (MIXED[i] if n == "full" else 0)) for i, s in enumerate(SEEDS)
            for n in ("full", "lsh4")]
    assert evaluate(claim(spec), same).verdict == "not separable"
    ceiling = [dup(n, s, 1.0, 1.0) for s in SEEDS for n in ("full", "lsh4")]
    assert evaluate(claim(spec), ceiling).verdict == "uninformative"


# ---------------------------------------------------------------------------------- the committed ledger
def test_committed_claims_cover_the_notes_papers(results_dir: Path = Path("results")) -> None:
    claims = load_claims()
    papers = {c.paper for c in claims}
    assert len(claims) >= 20 and len(papers) >= 10
    assert len({c.id for c in claims}) == len(claims)
    assert any(c.by == "notes" for c in claims)
    assert all(c.text.en and c.text.zh and c.source for c in claims)
    repo = Path(__file__).resolve().parent.parent
    verdicts = evaluate_claims(claims, load_rows(repo / "results"))
    assert len(verdicts) == len(claims) and all(v.verdict in VERDICTS for v in verdicts)
    for v in verdicts:  # a claim with no test here is never given a verdict, one with a test always is
        assert (v.verdict == "not measured") == (v.claim.test.kind == "none") or v.claim.paper in (
            "reformer", "detr", "deformable_detr", "lane_transformer"), v.claim.id
    for pid in ("image_transformer", "sagan", "ttsr"):  # the generation suite measures all their claims
        assert "not measured" not in {v.verdict for v in verdicts if v.claim.paper == pid}, pid
    section = "\n".join(markdown_lines([claims_section(verdicts, "en")]))
    assert section.count("\n| ") == len(claims) + 1  # header row and one row per claim
    assert "## 论断" in "\n".join(markdown_lines([claims_section(verdicts, "zh")]))
    json.dumps([v.to_json() for v in verdicts], allow_nan=False)


def test_verdict_tally() -> None:
    vs = [evaluate(claim(metric_test("higher")), pair_rows(CLEAR)),
          evaluate(claim(metric_test("higher")), [])]
    assert verdict_tally(vs, "en") == "1 supported, 1 not measured"
    assert verdict_tally([], "en") == "—"


BAD = """version: 1
papers:
  - id: p
    claims:
      - id: c1
        by: paper
        source: Table 1
        text: {en: a, zh: b}
        test: {kind: metric, suite: s, task: t, variant: v, reference: r, expect: higher}
      - id: c2
        by: paper
        source: Table 2
        text: {en: a, zh: b}
        test: {kind: metric, suite: s, task: t, variant: v, reference: r, expect: lower}
"""


@pytest.mark.parametrize("edit, where, key", [
    (("expect: lower", "expect: upward"), ":14", "papers.0.claims.1.test.expect"),
    (("expect: lower", "expect: lower, colour: red"), ":14", "papers.0.claims.1.test.colour"),
    (("kind: metric, suite: s, task: t, variant: v, reference: r, expect: lower", "kind: vibes"), ":14",
     "papers.0.claims.1.test.kind"),
    (("id: c2", "id: c1"), ":10", "papers.0.claims.1.id"),
    (("text: {en: a, zh: b}\n        test: {kind: metric, suite: s, task: t, variant: v, reference: r, "
      "expect: lower}", "text: just words\n        test: {kind: none, needs: {en: x, zh: y}}"), ":13",
     "papers.0.claims.1.text"),
])
def test_malformed_claims_are_refused_with_file_line_and_key(tmp_path: Path, edit: tuple[str, str],
                                                             where: str, key: str) -> None:
    path = tmp_path / "literature.yaml"
    path.write_text(BAD.replace(*edit), encoding="utf-8")
    (tmp_path / "ok.yaml").write_text(BAD, encoding="utf-8")
    assert len(load_claims(tmp_path / "ok.yaml")) == 2  # the file before the edit is fine
    with pytest.raises(InputError) as err:
        load_claims(path)
    assert f"literature.yaml{where}" in str(err.value) and key in str(err.value)


def test_cli_claims(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli.main import main

    assert main(["claims", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "[not measured]" in out and "claims over" in out
    assert main(["claims", "--json", "--results-dir", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) >= 20 and {d["verdict"] for d in data} == {"not measured"}


# ------------------------------------------------------------------------- power, floors, ablation wording
def test_power_of_the_paired_t_test() -> None:
    from harness.analysis.stats import detectable_effect, pairs_needed

    assert pairs_needed(1.0, 1.0) == 10  # dz = 1 at alpha 0.05, power 0.8: 10 pairs (G*Power)
    assert pairs_needed(0.5, 1.0) == 34
    assert pairs_needed(0.0, 1.0) is None and pairs_needed(1e-6, 1.0) is None  # beyond n_max
    d = detectable_effect(1.0, 10)
    assert 0.9 < d < 1.0 and detectable_effect(2.0, 10) == pytest.approx(2 * d)
    assert detectable_effect(1.0, 20) < d  # more seeds detect smaller effects
    assert math.isnan(detectable_effect(1.0, 1)) and detectable_effect(0.0, 5) == 0.0


def test_floors_come_from_the_rows_bounds() -> None:
    """The worst value is the declared chance, else the floor; one within the tolerance of zero is zero;
    no ceiling or no worst value, no bounds; an eval mode's suffix keeps the metric's bounds, an
    evaluation set's suffix is a metric of its own; rows without bounds have none."""
    from harness.analysis.floors import at_bound, bounds, row_bounds

    listops = {"seq_acc": accuracy_bounds(0.1, 0.1515), "seq_acc_train_len": accuracy_bounds(0.1, 0.17)}
    b = bounds(listops, "seq_acc")
    assert (b.worst, b.best, b.chance) == (0.1515, 1.0, True)  # the majority class, not 1/10
    assert bounds(listops, "seq_acc@full").worst == 0.1515
    assert bounds(listops, "seq_acc_train_len").worst == 0.17
    assert bounds(listops, "tok_acc") is None and bounds(None, "seq_acc") is None
    assert bounds(listops, None) is None
    assert bounds(COPY_BOUNDS, "tok_acc@lsh-1").worst == 0.125
    seq = bounds(COPY_BOUNDS, "seq_acc")  # (1/8)^8: a whole sequence by guessing is zero
    assert (seq.worst, seq.chance) == (0.0, False)
    assert at_bound(seq, [0.0, 0.0, 0.005]) == "floor" and at_bound(seq, [0.0, 1.0]) is None
    assert at_bound(seq, [0.995, 1.0]) == "ceiling"
    assert at_bound(seq, []) is None and at_bound(None, [0]) is None
    bpc = bounds({"bpc": {"floor": 8.0, "chance": 4.8, "ceiling": 0.0, "higher_is_better": False}}, "bpc")
    assert bpc.position(4.8) == "floor" and bpc.position(0.0) == "ceiling" and bpc.position(3.0) is None
    assert bpc.position(8.0) == "floor"  # worse than chance is at the floor too
    ap = bounds({"ap": {"floor": 0.0, "chance": None, "ceiling": 1.0, "higher_is_better": True}}, "ap")
    assert (ap.worst, ap.chance) == (0.0, False)
    nothing = {"fid_digits": {"floor": None, "chance": None, "ceiling": 0.0, "higher_is_better": False},
               "psnr": {"floor": None, "chance": None, "ceiling": None, "higher_is_better": True}}
    assert bounds(nothing, "fid_digits") is None and bounds(nothing, "psnr") is None
    old = ResultRow(task="copy", config={"task": dict(COPY)})  # written before rows carried bounds
    assert row_bounds([old], "tok_acc") is None
    assert row_bounds([old, train("v", 0, 0.5)], "tok_acc").worst == 0.125


def test_ablation_says_uninformative_at_the_floor_not_within_noise() -> None:
    from harness.analysis.report import ablation
    from harness.analysis.report.markdown import ablation_table

    chance = [train(n, s, 0.125 + NOISE[i] / 4) for i, s in enumerate(SEEDS) for n in ("ref", "v")]
    learned = [train("w", s, 0.9 + NOISE[i]) for i, s in enumerate(SEEDS)]
    ts = ablation(chance + learned, "s", "copy", baseline="ref")
    _, body = ablation_table(ts, "en")
    verdicts = {row[0]: row[6] for row in body}
    assert verdicts["v"] == "uninformative: all at floor (chance 0.125)"
    assert verdicts["w"] == "better beyond seed noise"
    _, zh = ablation_table(ts, "zh")
    assert "无信息：全部处于下限（随机水平 0.125）" in {row[6] for row in zh}
    perfect = [train(n, s, 1.0, metric="seq_acc") for s in SEEDS for n in ("ref", "v")]
    _, body = ablation_table(ablation(perfect, "s", "copy", baseline="ref"), "en")
    assert body[1][6] == "uninformative: all at ceiling (1)"
