"""Sample figures (issue 14): Task.samples -> the row's ``samples`` -> one figure per suite and task."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from harness.results.rows import ResultRow, migrate
from harness.results.store import ResultStore, load_rows

GREY = [[0, 255], [128, 7]]
RGB = [[[0, 0, 0], [255, 0, 0]], [[0, 255, 0], [0, 0, 255]]]


def test_rows_carry_samples_only_when_there_are_some(tmp_path: Path) -> None:
    with_samples = ResultRow(run_id="a", suite="s", job="train", status="ok",
                             samples={"generated": [GREY, GREY]})
    without = ResultRow(run_id="b", suite="s", job="train", status="ok")
    assert "samples" not in without.to_dict()
    assert with_samples.to_dict()["samples"] == {"generated": [GREY, GREY]}
    store = ResultStore(tmp_path / "s.jsonl")
    store.append(with_samples)
    store.append(without)
    assert load_rows(tmp_path) == [with_samples, without]
    assert migrate({"run_id": "c", "samples": {}}).samples is None  # empty reads as none
    assert migrate({"run_id": "d"}).samples is None  # rows from before the field


class _Task:
    def __init__(self, panels: dict) -> None:
        self.panels = panels

    def samples(self, model, device, seed):  # noqa: ANN001, ANN201
        assert not model.training and not torch.is_grad_enabled()
        return self.panels


@pytest.mark.parametrize("panels,why", [
    ({"g": [GREY] * 17}, "1 to 16 images"),
    ({"g": []}, "1 to 16 images"),
    ({"g": [[[0, 256]]]}, "ints 0..255"),
    ({"g": [[[0.5, 1]]]}, "ints 0..255"),
    ({"g": [[[0, 1], [2]]]}, "nested list"),
])
def test_malformed_samples_are_refused(panels: dict, why: str) -> None:
    from harness.run.train import task_samples

    with pytest.raises(ValueError, match=why):
        task_samples(torch.nn.Linear(1, 1), _Task(panels), torch.device("cpu"), 0)


def test_samples_are_taken_in_eval_mode_and_training_mode_comes_back() -> None:
    from harness.run.train import task_samples

    model = torch.nn.Linear(1, 1).train()
    assert task_samples(model, _Task({"lr": [GREY], "sr": [RGB]}), torch.device("cpu"), 0) == {
        "lr": [GREY], "sr": [RGB]}
    assert model.training
    assert task_samples(model, _Task({}), torch.device("cpu"), 0) is None


def test_task_base_gives_no_samples() -> None:
    from harness.core.registry import TASKS

    digits = TASKS.get("digits").obj(TASKS.get("digits").config(image_size=8))
    assert digits.samples(torch.nn.Linear(1, 1), torch.device("cpu"), 0) == {}


# the tiny suite on pixels (two image transformers) and reverse (vanilla), two steps a job
GEN = dict(
    name="gen",
    baseline={"px": "full", "rev": "a"},
    train={"steps": 2, "lr": None, "warmup_steps": None, "eval_every": 2, "profile_steps": None,
           "profile_warmup": None},
    tasks=[{"name": "px", "task": "pixels", "image_size": 8, "levels": 4},
           {"name": "rev", "task": "reverse", "seq_len": 4, "vocab": 4}],
    variants=[{"name": "full", "model": "image_transformer", "attention": "full", "tasks": ["px"]},
              {"name": "local", "model": "image_transformer", "attention": "local1d", "block": 8, "memory": 8,
               "tasks": ["px"]},
              {"name": "a", "model": "vanilla", "tasks": ["rev"]}],
    profile=None,
)


@pytest.mark.slow
def test_a_suite_run_stores_samples_and_the_report_draws_them(
    tmp_path: Path, tiny_suite: Callable[..., Path],
) -> None:
    from harness.cli.main import main

    suite = tiny_suite(GEN)
    results, report = tmp_path / "results", tmp_path / "report"
    assert main(["run", str(suite), "--results-dir", str(results),
                 "--report-dir", str(report)]) == 0
    rows = [json.loads(line) for line in (results / "gen.jsonl").read_text().splitlines()]
    px = [r for r in rows if r["task"] == "px" and r["job"] == "train"]
    assert len(px) == 4 and all(set(r["samples"]) == {"generated", "held-out"} for r in px)
    assert all(len(r["samples"]["generated"]) == 16 for r in px)
    assert all("samples" not in r for r in rows if r["task"] == "rev")  # the default: none
    figures = sorted(p.name for p in (report / "figures").glob("*samples*"))
    assert figures == ["gen-px-samples.png"]
    tables = (report / "tables.md").read_text()
    assert "![gen px samples](figures/gen-px-samples.png)" in tables
    first = (report / "figures" / "gen-px-samples.png").read_bytes()
    assert main(["report", "--results-dir", str(results), "--report-dir", str(report)]) == 0
    assert (report / "figures" / "gen-px-samples.png").read_bytes() == first  # same rows, same bytes


def test_the_figure_takes_grey_and_rgb_panels_of_different_sizes(tmp_path: Path) -> None:
    from harness.analysis.report.figures import samples_figure

    small = [[[10, 20], [30, 40]]]
    big = [[[[v, v, v] for v in range(4)] for _ in range(4)]]
    rows = [("a (seed 0)", {"lr": small, "hr": big}), ("b (seed 1)", {"hr": big})]
    samples_figure(rows, "t", tmp_path / "x.png")
    data = (tmp_path / "x.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    samples_figure(rows, "t", tmp_path / "y.png")
    assert (tmp_path / "y.png").read_bytes() == data  # deterministic bytes


def test_the_mosaic_tiles_images_in_rows_of_eight() -> None:
    from harness.analysis.report.figures import GUTTER, SAMPLE_COLS, mosaic

    images = [[[i, i], [i, i]] for i in range(10)]
    out = mosaic(images)
    assert SAMPLE_COLS == 8 and out.shape == (2 * 3 - 1, 8 * 3 - 1, 3)
    assert out[0, 0].tolist() == [0, 0, 0] and out[3, 3].tolist() == [9, 9, 9]  # second row, second tile
    assert out[2, 0].tolist() == list(GUTTER) and out[3, 6].tolist() == list(GUTTER)  # gutter; empty tile
