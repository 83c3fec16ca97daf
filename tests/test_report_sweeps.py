"""Report pieces for long-sequence suites: where a variant overtakes vanilla, and train x eval tables."""

from __future__ import annotations

import json
from pathlib import Path

from harness.analysis.report import overtake_length, write_report


def test_overtake_length() -> None:
    lengths = [256, 512, 1024, 2048]
    ref = {256: 1.0, 512: 2.0, 1024: 8.0, 2048: 32.0}
    assert overtake_length({256: 2.0, 512: 3.0, 1024: 4.0, 2048: 5.0}, ref, [], lengths) == 1024
    assert overtake_length({256: 0.5, 512: 1.0, 1024: 2.0, 2048: 4.0}, ref, [], lengths) == 256
    # cheaper once, then dearer again: the crossing that lasts counts
    assert overtake_length({256: 0.5, 512: 3.0, 1024: 4.0, 2048: 40.0}, ref, [], lengths) is None
    # the reference ran out of memory at 2048: a win there
    assert overtake_length({256: 2, 512: 3, 1024: 9, 2048: 50}, {k: v for k, v in ref.items() if k < 2048},
                           [2048], lengths) == 2048


def _first_cell(line: str) -> str | None:
    """The first cell of a markdown table row (tables are padded to their columns' widths)."""
    return line.split("|")[1].strip() if line.startswith("| ") else None


def _row(**kw: object) -> dict:
    base = {"suite": "lr", "job": "train", "status": "ok", "seed": 0, "task": "dup", "metric": "tok_acc",
            "higher_is_better": True}
    return {**base, **kw}


# the suite of the rows below; its report: key is the layout the report reads
LR_SUITE = """\
name: lr
train: {eval_modes: {full: {attention: full}, lsh-1: {attention: lsh, eval_n_hashes: 1}}}
tasks:
  - {name: dup, task: duplication, seq_len: 8}
  - {task: copy, seq_len: 8}
variants:
  - {name: "ref-{attention}", model: reformer, tasks: [dup], profile: false, sweep: {attention: [full]}}
  - {name: ref-lsh1, model: reformer, n_hashes: 1, tasks: [dup], profile: false}
  - {name: vanilla, model: vanilla, tasks: []}
  - {name: lsh, model: reformer, tasks: []}
profile: {seq_lens: [256, 512, 1024, 2048], task: copy}
report:
  fit_range: [512, 2048]
  ratio_at: 2048
  matrix:
    - {task: dup, metric: tok_acc, title: Duplication, paper: reformer.duplication, scale: 100,
       rows: {ref-full: Full, ref-lsh1: LSH-1}, columns: {full: Full, lsh-1: LSH-1}}
"""


def test_matrix_and_overtake_sections(tmp_path: Path) -> None:
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "lr.yaml").write_text(LR_SUITE)
    rows = []
    for seed in (0, 1, 2):
        for v, full, lsh in (("ref-full", 1.0, 0.5), ("ref-lsh1", 0.01, 0.8 + 0.01 * seed)):
            rows.append(_row(run_id=f"{v}{seed}", variant=v, model="reformer", seed=seed, value=full,
                             metrics={"tok_acc": full, "tok_acc@full": full, "tok_acc@lsh-1": lsh}))
    for v, model, k in (("vanilla", "vanilla", 2.0), ("lsh", "reformer", 1.0)):
        for n in (256, 512, 1024, 2048):
            rows.append(_row(run_id=f"p{v}{n}", job="profile", task="copy", variant=v, model=model, seq_len=n,
                             step_ms=(n / 256) ** k * (1 if v == "vanilla" else 3),
                             act_bytes=n * (4 if v == "vanilla" else 1),
                             mem_bytes=n))
    res = tmp_path / "results"
    res.mkdir()
    (res / "lr.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = write_report(res, tmp_path / "report", suites_dir=suites).read_text()
    assert "### Duplication" in text
    # seed values 0.80, 0.81, 0.82 -> 81.0 in percent, with the paper's 77.9 beside it
    line = next(ln for ln in text.splitlines() if ln.startswith("| LSH-1 (`ref-lsh1`)"))
    assert "81.0" in line and "[77.9]" in line and "[0.8]" in line
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("Length from which"))
    over = next(ln for ln in lines[start:] if _first_cell(ln) == "lsh")
    # lsh step time 3*(n/256) vs vanilla (n/256)^2: cheaper from n=1024 (3*4=12 < 16);
    # act_bytes from the start
    assert over.split("|")[2].strip() == "1024" and "from 256" in over.split("|")[3]
    assert "lengths 512 to 2048" in text
    start = next(i for i, ln in enumerate(lines)
                 if ln.startswith("Cost relative to each reference at n = 2048"))
    ratio = next(ln for ln in lines[start:] if _first_cell(ln) == "lsh").split("|")
    # step 3*8 = 24 vs 64 -> 0.375; act_bytes 2048 vs 8192 -> 0.250
    assert ratio[2].strip() == "0.375" and ratio[3].strip() == "0.250"
