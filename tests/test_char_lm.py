"""char_lm: splits, windows, bpc arithmetic, the shipped corpus, load-time errors, one tiny run."""

from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_suites import write_suite

from harness.core.registry import TASKS
from harness.tasks.base import IGNORE

N_FILE = 200_000  # bytes of the enwik8-format file made below: 180000 train, 10000 valid, 10000 test
TRAIN_END, VALID_END = 180_000, 190_000

# sha256 of the shipped corpus: if this changes, every synthetic-corpus number changes with it
SYNTHETIC_SHA256 = "3d3c4141c231a32356ef6c5ab3f1501c4d4fbe3f6ed0ceba8d38814b49a64ef2"


def _text_file(path: Path) -> bytes:
    """Wiki-ish UTF-8 text of exactly N_FILE bytes, with multi-byte characters, never repeating."""
    rng = random.Random(7)
    words = ["the", "Zürich", "café", "naïve", "東京", "[[link]]", "<page>", "Ωmega", "data", "and"]
    parts, size = [], 0
    while size < N_FILE + 100:
        w = f"{rng.choice(words)}{rng.randrange(10**6)} "
        parts.append(w)
        size += len(w.encode("utf-8"))
    data = "".join(parts).encode("utf-8")[:N_FILE]
    path.write_bytes(data)
    return data


@pytest.fixture(scope="module")
def enwik(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    p = tmp_path_factory.mktemp("data") / "enwik_small"
    return p, _text_file(p)


def task(**cfg: Any) -> Any:
    entry = TASKS.get("char_lm")
    return entry.obj(entry.config(**cfg))


def test_split_bounds_standard_and_proportional(enwik: tuple[Path, bytes]) -> None:
    from harness.tasks.char_lm import split_bounds

    m = 10**6
    assert split_bounds(100 * m) == {
        "train": (0, 90 * m), "valid": (90 * m, 95 * m), "test": (95 * m, 100 * m),
    }
    path, data = enwik
    assert split_bounds(len(data)) == {
        "train": (0, TRAIN_END), "valid": (TRAIN_END, VALID_END), "test": (VALID_END, N_FILE),
    }
    t = task(path=str(path))
    assert bytes(t.split("train").tolist()) == data[:TRAIN_END]
    assert bytes(t.split("valid").tolist()) == data[TRAIN_END:VALID_END]
    assert bytes(t.split("test").tolist()) == data[VALID_END:]
    assert any(b > 127 for b in data[:1000])  # multi-byte UTF-8 really is in there, as bytes


def test_train_windows_come_from_the_train_split_and_are_seeded(enwik: tuple[Path, bytes]) -> None:
    path, data = enwik
    t = task(path=str(path), seq_len=32)
    a = t.train_batch(500, "lm", torch.Generator().manual_seed(1))
    b = t.train_batch(500, "lm", torch.Generator().manual_seed(1))
    c = t.train_batch(500, "lm", torch.Generator().manual_seed(2))
    assert torch.equal(a.inputs["x"], b.inputs["x"]) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.inputs["x"], c.inputs["x"])
    assert a.inputs["x"].shape == a.labels.shape == (500, 32) and a.n_tokens == 32
    assert torch.equal(a.inputs["x"][:, 1:], a.labels[:, :-1])  # labels are the inputs shifted by one
    starts = []
    for x, y in zip(a.inputs["x"], a.labels):
        window = bytes(x.tolist() + [int(y[-1])])
        at = data.find(window)
        assert at >= 0 and data.find(window, at + 1) == -1  # content never repeats: the offset is known
        starts.append(at)
    assert min(starts) >= 0 and max(starts) + 33 <= TRAIN_END
    assert max(starts) > 0.8 * TRAIN_END and min(starts) < 0.2 * TRAIN_END  # spread over the whole split


def test_eval_windows_fixed_consecutive_and_non_overlapping(enwik: tuple[Path, bytes]) -> None:
    path, data = enwik
    t = task(path=str(path), seq_len=32, eval_tokens=1000)
    sets = t.eval_sets(3, 8, "lm", seed=0)
    again = task(path=str(path), seq_len=32, eval_tokens=1000).eval_sets(99, 8, "lm", seed=5)
    assert list(sets) == [""]
    batches = sets[""]
    assert [b.labels.shape for b in batches] == [(8, 32)] * 3 + [(7, 32), (1, 8)]  # 31 full windows + 8
    for b, b2 in zip(batches, again[""]):
        assert torch.equal(b.inputs["x"], b2.inputs["x"]) and torch.equal(b.labels, b2.labels)
    xs = torch.cat([b.inputs["x"].reshape(-1) for b in batches]).tolist()
    ys = torch.cat([b.labels.reshape(-1) for b in batches]).tolist()
    test = data[VALID_END:]
    assert bytes(xs) == test[:1000] and bytes(ys) == test[1:1001]  # targets tile the split exactly once
    assert t.eval_windows()[:2] == [(0, 32), (32, 32)] and t.eval_windows()[-1] == (992, 8)

    whole = task(path=str(path), seq_len=100, eval_tokens=None, eval_split="valid")
    ys = torch.cat([b.labels.reshape(-1) for b in whole.eval_sets(1, 64, "lm", 0)[""]]).tolist()
    assert bytes(ys) == data[TRAIN_END + 1 : VALID_END]  # every scoreable byte of the valid split


def test_bpc_uniform_is_eight_and_perfect_is_zero(enwik: tuple[Path, bytes]) -> None:
    path, _ = enwik
    t = task(path=str(path), seq_len=16, eval_tokens=300)
    batches = t.eval_sets(1, 4, "lm", 0)[""]
    counts = [0, 0, 0, 0]
    for b in batches:
        counts = [x + y for x, y in zip(counts, t.score(torch.zeros(*b.labels.shape, 256), b.labels))]
    m = t.metrics(tuple(counts), "")
    assert counts[1] == 300
    assert m["bpc"] == pytest.approx(8.0, abs=1e-12)
    b = batches[0]
    perfect = torch.full((*b.labels.shape, 256), -30.0)
    perfect.scatter_(-1, b.labels[..., None], 30.0)
    m = t.metrics(t.score(perfect, b.labels), "_x")
    assert set(m) == {"bpc_x", "acc_x"} and m["acc_x"] == 1.0 and 0 <= m["bpc_x"] < 1e-20
    labels = b.labels.clone()
    labels[:, :5] = IGNORE  # ignored positions are not counted
    _, n, _, _ = t.score(perfect, labels)
    assert n == labels.numel() - 5 * labels.shape[0]
    assert t.metric == "bpc" and t.higher_is_better is False


def test_model_keys_layouts_and_profile_batch(enwik: tuple[Path, bytes]) -> None:
    t = task(path=str(enwik[0]), seq_len=48)
    assert t.model_keys() == {"vocab_size": 256, "max_len": 48} and t.vocab_size == 256
    p = t.profile_batch(77, 3, "lm", torch.Generator().manual_seed(0))
    assert p.inputs["x"].shape == (3, 77) and p.labels.shape == (3, 77) and p.n_tokens == 77
    with pytest.raises(ValueError, match="causal"):
        t.train_batch(2, "masked", torch.Generator().manual_seed(0))


def test_file_read_once_and_reread_when_changed(tmp_path: Path) -> None:
    from harness.tasks.char_lm import load_bytes

    p = tmp_path / "f.txt"
    p.write_bytes(b"abc" * 100)
    a = load_bytes(str(p))
    assert load_bytes(str(p)) is a and bytes(a.tolist()) == b"abc" * 100
    p.write_bytes(b"xyz" * 200)
    assert bytes(load_bytes(str(p)).tolist()) == b"xyz" * 200


def test_config_check_names_the_problem(tmp_path: Path) -> None:
    from harness.tasks.char_lm import CharLMConfig

    missing = tmp_path / "none.txt"
    assert CharLMConfig(path=str(missing)).check() == [("path", f"file not found: {missing}")]
    assert CharLMConfig(path=str(tmp_path)).check()[0][0] == "path"
    small = tmp_path / "small.txt"
    small.write_bytes(b"x" * 100)  # 90 train bytes
    assert "fewer than seq_len + 1" in CharLMConfig(path=str(small), seq_len=128).check()[0][1]
    assert CharLMConfig(path=str(small), seq_len=64).check() == []
    assert CharLMConfig().check() == [] and CharLMConfig(seq_len=5_000_000).check()[0][0] == "seq_len"


def test_causality_is_decided_without_building() -> None:
    import harness
    from harness.core.registry import MODELS
    from harness.tasks.char_lm import model_is_causal

    entry = MODELS.get("vanilla")
    for arch, want in (("decoder", True), ("encoder", False), ("encdec", False)):
        assert model_is_causal(entry.config(arch=arch), entry.obj) is want
        m = harness.build_model("vanilla", arch=arch, d_model=16, n_heads=2, d_ff=32, n_layers=1)
        assert (m.io == "lm") is want
    assert task().check_model(entry.config(arch="decoder"), entry.obj) is None

    class Cfg:
        causal = False

    assert model_is_causal(Cfg(), object) is False
    assert model_is_causal(object(), type("M", (), {"io": "lm"})) is True
    assert model_is_causal(object(), object) is None


def test_shipped_corpus_is_large_deterministic_and_quick(counted_random: Any) -> None:
    """Quick in work, not seconds: the build is pure Python driven by one seeded generator, so its cost
    is its draws (about 1 s on one core for these)."""
    from harness.tasks import char_lm
    from harness.tasks.char_lm import SYNTHETIC_BYTES, synthetic_corpus

    made = counted_random(char_lm)
    a = synthetic_corpus.__wrapped__()  # uncached: a real build, its generator counted
    (rng,) = made
    b = synthetic_corpus()  # the cached build that the task reads
    assert a == b and len(a) == SYNTHETIC_BYTES >= 10**6
    assert hashlib.sha256(a).hexdigest() == SYNTHETIC_SHA256, "the shipped corpus changed"
    assert rng.draws == 650_104  # the work of one build, the same on every machine
    assert rng.draws < SYNTHETIC_BYTES / 2  # under one draw per two bytes written
    text = a.decode("utf-8")
    assert text.count("<page>") > 300 and "== See also ==" in text and any(ord(c) > 127 for c in text)
    t = task(seq_len=64)
    assert t.corpus == "synthetic" and len(t.split("train")) == SYNTHETIC_BYTES - 2 * (SYNTHETIC_BYTES // 20)


# the train mapping is one YAML line (the tests name line numbers), written in two pieces here
TRAIN = "{{steps: 20, batch_size: 8, lr: 1.0e-2, eval_every: 20, eval_batch_size: 16, " + \
    "profile_steps: 1, profile_warmup: 0}}"
SUITE = """\
name: lm
seeds: [0]
train: """ + TRAIN + """
model: {{d_model: 16, n_heads: 2, d_ff: 32, n_layers: 1, dropout: 0.0}}
tasks:
  - {{task: char_lm, seq_len: 32, eval_tokens: 2048{task_extra}}}
variants:
  - {{name: a, model: vanilla{variant_extra}}}
"""


def _run_bad(refused_suite, **extra: str) -> str:  # noqa: ANN001
    text = SUITE.format(task_extra=extra.get("task", ""), variant_extra=extra.get("variant", ""))
    return refused_suite(text)


def test_missing_file_exits_2_naming_the_key(tmp_path: Path, refused_suite) -> None:  # noqa: ANN001
    line = _run_bad(refused_suite, task=f", path: {tmp_path / 'enwik8'}")
    assert "bad.yaml:6:" in line and "tasks[0].path" in line and "file not found" in line


def test_non_causal_model_exits_2(refused_suite) -> None:  # noqa: ANN001
    line = _run_bad(refused_suite, variant=", arch: encoder")
    assert "bad.yaml:8:" in line and "variants[0].model" in line and "causal" in line and "encoder" in line


def test_tiny_run_end_to_end(tmp_path: Path) -> None:
    from harness.run.execute import execute
    from harness.suite.load import load_suite

    p = write_suite(tmp_path / "lm.yaml", SUITE.format(task_extra="", variant_extra=", arch: decoder"))
    (job,) = load_suite(p).jobs
    assert job.model_cfg["vocab_size"] == 256 and job.model_cfg["max_len"] == 32
    row = execute(job)
    assert row["status"] == "ok", row["error"]
    assert row["metric"] == "bpc" and row["higher_is_better"] is False and row["seq_len"] == 32
    assert set(row["metrics"]) == {"bpc", "acc"} and row["value"] == row["metrics"]["bpc"]
    assert math.isfinite(row["value"]) and row["value"] < 8
    assert row["config"]["task"]["path"] is None  # null: the shipped synthetic corpus
