"""Every registered task: deterministic generation, correct targets, layouts and scoring."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from harness.core.registry import TASKS
from harness.tasks.algorithmic import BLANK, N_SPECIAL, SEP, SeqTask
from harness.tasks.base import BOUNDS_DRAW, BOUNDS_SEED, IGNORE, Batch, Task, metric_bounds

IOS = ["lm", "masked", "seq2seq"]
# source -> target tasks; char_lm has its own tests (tests/test_char_lm.py)
SEQ_TASKS = [n for n in TASKS.names() if issubclass(TASKS.get(n).obj, SeqTask)]


def make(name: str, **cfg):  # noqa: ANN201
    entry = TASKS.get(name)
    return entry.obj(entry.config(**cfg))


# --- the Task contract, for every registered task and every model io it accepts ---------------------

# small configs so that each task builds and draws batches quickly; a task not listed uses its defaults
SMALL: dict[str, dict] = {
    "listops": {"seq_len": 64, "max_depth": 3, "max_args": 3},
    "char_lm": {"seq_len": 16, "eval_tokens": 64},
    "digits": {"image_size": 8},
    "shapes": {"image_size": 16},
    "ref_sr": {"image_size": 16, "canvas": 20, "eval_images": 8},
    "scenes": {"image_size": 16, "max_objects": 3, "eval_images": 8},
}
CASES = [(name, io) for name in TASKS.names() for io in TASKS.get(name).obj.ios]


def _classes(task: Task) -> int:
    keys = task.model_keys()
    return keys["vocab_size"] if "vocab_size" in keys else keys["n_classes"]


def _same(a: Batch, b: Batch) -> bool:
    return a.inputs.keys() == b.inputs.keys() and torch.equal(a.labels, b.labels) and all(
        torch.equal(a.inputs[k], b.inputs[k]) for k in a.inputs)


def test_every_registered_task_is_covered() -> None:
    assert {name for name, _ in CASES} == set(TASKS.names())
    assert {io for _, io in CASES} >= {"lm", "masked", "seq2seq", "image"}


@pytest.mark.parametrize(("name", "io"), CASES, ids=[f"{n}-{io}" for n, io in CASES])
def test_task_contract(name: str, io: str) -> None:
    """Batches are seeded and well formed for the io, the profile batch has the asked size, the
    evaluation sets are fixed, and perfect logits get the best headline metric."""
    task = make(name, **SMALL.get(name, {}))
    assert isinstance(task, Task)
    assert isinstance(task.metric, str) and isinstance(task.higher_is_better, bool)
    assert task.check_model(None, object) is None or isinstance(task.check_model(None, object), str)
    a = task.train_batch(4, io, torch.Generator().manual_seed(3))
    assert _same(a, task.train_batch(4, io, torch.Generator().manual_seed(3)))
    assert not _same(a, task.train_batch(4, io, torch.Generator().manual_seed(4)))
    if io == "sr":  # regression: the target is an image; its own tests are tests/test_ttsr.py
        _sr_contract(task, a)
        return
    if io == "detect":  # boxes and classes; the perfect-prediction check is tests/test_detr.py's
        _detect_contract(task, a)
        return
    if io == "lanes":  # lane x per row; its own tests are tests/test_lstr.py
        _lanes_contract(task, a)
        return
    k = _classes(task)
    scored = a.labels[a.labels != IGNORE]
    assert a.batch_size == 4 and scored.numel() > 0 and 0 <= int(scored.min()) and int(scored.max()) < k
    longest = task.longest_batch(2, io, torch.Generator().manual_seed(0))
    assert longest.batch_size == 2
    for n in (8, 12):
        p = task.profile_batch(n, 2, io, torch.Generator().manual_seed(0))
        assert p.batch_size == 2 and p.seq_len == (n if io in ("image", "gan") else len(p.inputs) * n)
        # each input is n long (images: n wide; a GAN's class labels are one per image)
        assert all(t.shape[-1] == n for t in p.inputs.values() if io != "gan" or t.dim() == 4)
    sets = task.eval_sets(2, 3, io, seed=0)
    again = task.eval_sets(2, 3, io, seed=0)
    assert "" in sets and sets[""] and all(_same(x, y) for x, y in zip(sets[""], again[""]))
    batch = sets[""][0]
    if io == "gan":  # evaluation labels are the real images: generating exactly them is perfect
        assert abs(task.metrics(task.score(batch.labels, batch.labels), "")[task.metric]) < 1e-3
        return
    logits = torch.zeros(*batch.labels.shape, k)
    logits.scatter_(-1, batch.labels.clamp(min=0)[..., None], 50.0)
    value = task.metrics(task.score(logits, batch.labels), "")[task.metric]
    assert value == 1.0 if task.higher_is_better else value < 1e-6


def _detect_contract(task: Task, a: Batch) -> None:
    """Detection (io 'detect'): labels (B, M, 6) with classes in range, fixed evaluation sets, and the
    profile batch's images have the asked side."""
    k = _classes(task)
    cls = a.labels[..., 1]
    assert a.batch_size == 4 and (cls >= 0).any() and int(cls.max()) < k and int(cls.min()) >= -1
    for n in (8, 12):
        p = task.profile_batch(n, 2, "detect", torch.Generator().manual_seed(0))
        assert p.batch_size == 2 and p.seq_len == n
    sets, again = task.eval_sets(2, 3, "detect", seed=0), task.eval_sets(2, 3, "detect", seed=0)
    assert sets[""] and all(_same(x, y) for x, y in zip(sets[""], again[""]))


def _lanes_contract(task: Task, a: Batch) -> None:
    """Lanes (io 'lanes'): profile images n wide, fixed evaluation sets, and the GT lanes as set-layout
    predictions score TuSimple accuracy 1."""
    from harness.tasks.lane_set import gt_bounds

    for n in (8, 12):
        p = task.profile_batch(n, 2, "lanes", torch.Generator().manual_seed(0))
        assert p.batch_size == 2 and p.seq_len == n
    sets = task.eval_sets(2, 3, "lanes", seed=0)
    again = task.eval_sets(2, 3, "lanes", seed=0)
    assert "" in sets and all(_same(x, y) for x, y in zip(sets[""], again[""]))
    lab = sets[""][0].labels
    y = (task.rows.float() + 0.5) / task.h
    valid, lo, up = gt_bounds(lab, y)
    pred = torch.cat([torch.stack([-valid.any(-1).float(), valid.any(-1).float()], -1), lo[..., None],
                      up[..., None], torch.where(valid, lab / task.w, -1.0)], -1)
    assert task.metrics(task.score(pred, lab), "")[task.metric] == 1.0


def _sr_contract(task: Task, a: Batch) -> None:
    """Super-resolution (io 'sr'): the profile batch's size is the HR side, the evaluation sets are
    fixed, and the exact target scores the best PSNR (inf)."""
    assert a.batch_size == 4 and a.labels.is_floating_point()
    for n in (8, 12):
        p = task.profile_batch(n, 2, "sr", torch.Generator().manual_seed(0))
        assert p.batch_size == 2 and p.seq_len == n and p.labels.shape[-1] == n
    sets = task.eval_sets(2, 3, "sr", seed=0)
    again = task.eval_sets(2, 3, "sr", seed=0)
    assert "" in sets and all(_same(x, y) for x, y in zip(sets[""], again[""]))
    batch = sets[""][0]
    assert task.metrics(task.score(batch.labels, batch.labels), "")[task.metric] == float("inf")


@pytest.mark.parametrize("name", SEQ_TASKS)
@pytest.mark.parametrize("io", IOS)
def test_deterministic_and_well_formed(name: str, io: str) -> None:
    task = make(name, seq_len=6, vocab=5)
    a = task.train_batch(4, io, torch.Generator().manual_seed(3))
    b = task.train_batch(4, io, torch.Generator().manual_seed(3))
    c = task.train_batch(4, io, torch.Generator().manual_seed(4))
    assert all(torch.equal(a.inputs[k], b.inputs[k]) for k in a.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)
    for t in a.inputs.values():
        assert int(t.min()) >= 0 and int(t.max()) < task.vocab_size
    scored = a.labels[a.labels != IGNORE]
    assert scored.numel() > 0 and int(scored.min()) >= N_SPECIAL
    need = task.model_keys()
    assert need["vocab_size"] == task.vocab_size
    assert max(t.shape[1] for t in a.inputs.values()) <= need["max_len"]


@pytest.mark.parametrize("name", SEQ_TASKS)
def test_perfect_logits_score_one(name: str) -> None:
    task = make(name, seq_len=5, vocab=6)
    batch = task.train_batch(3, "lm", torch.Generator().manual_seed(0))
    logits = torch.zeros(*batch.labels.shape, task.vocab_size)
    target = batch.labels.clamp(min=0)
    logits.scatter_(-1, target[..., None], 1.0)
    m = task.metrics(task.score(logits, batch.labels), "")
    assert m == {"tok_acc": 1.0, "seq_acc": 1.0}
    logits[0, (batch.labels[0] != IGNORE).nonzero()[0, 0]] = 0  # one wrong token in sequence 0
    logits[0, (batch.labels[0] != IGNORE).nonzero()[0, 0], 0] = 1
    rt, nt, rs, ns = task.score(logits, batch.labels)
    assert (rt, rs) == (nt - 1, ns - 1)


def _digits(row: torch.Tensor) -> int:
    return int("".join(str(int(d) - N_SPECIAL) for d in row))


def test_addition_targets_are_exact_sums() -> None:
    task = make("addition", seq_len=7)
    src, tgt = task.make(7, 50, torch.Generator().manual_seed(1))
    for s, t in zip(src, tgt):
        a, b = _digits(s[:7]), _digits(s[8:])
        assert int(s[7]) == N_SPECIAL + 10  # '+'
        assert _digits(t) == a + b


def test_targets_of_copy_reverse_sort_duplication() -> None:
    g = torch.Generator().manual_seed(2)
    src, tgt = make("copy").make(5, 4, g)
    assert torch.equal(src, tgt)
    src, tgt = make("reverse").make(5, 4, g)
    assert torch.equal(src.flip(1), tgt)
    src, tgt = make("sort").make(5, 4, g)
    assert torch.equal(src.sort(1).values, tgt) and (tgt.diff(dim=1) >= 0).all()
    src, tgt = make("duplication").make(5, 4, g)
    assert (src[:, 0] == SEP).all() and torch.equal(src[:, 1:], tgt)


def test_layouts() -> None:
    task = make("reverse", seq_len=3, vocab=4)
    src = torch.tensor([[4, 5, 6]])
    tgt = src.flip(1)
    lm = task.layout(src, tgt, "lm")
    assert lm.inputs["x"].tolist() == [[4, 5, 6, SEP, 6, 5]]
    assert lm.labels.tolist() == [[IGNORE, IGNORE, IGNORE, 6, 5, 4]]
    mk = task.layout(src, tgt, "masked")
    assert mk.inputs["x"].tolist() == [[4, 5, 6, SEP, BLANK, BLANK, BLANK]]
    assert mk.labels.tolist() == [[IGNORE] * 4 + [6, 5, 4]]
    s2s = task.layout(src, tgt, "seq2seq")
    assert s2s.inputs["y"][0, 1:].tolist() == [6, 5] and s2s.labels.tolist() == [[6, 5, 4]]


def test_eval_sets_fixed_and_at_test_length() -> None:
    task = make("copy", seq_len=4, test_len=9)
    a = task.eval_sets(2, 3, "lm", seed=0)
    b = task.eval_sets(2, 3, "lm", seed=0)
    assert set(a) == {"", "_train_len"}
    assert torch.equal(a[""][1].inputs["x"], b[""][1].inputs["x"])
    assert (a[""][0].labels != IGNORE).sum(1).tolist() == [9, 9, 9]
    assert (a["_train_len"][0].labels != IGNORE).sum(1).tolist() == [4, 4, 4]


def test_variable_training_lengths() -> None:
    task = make("copy", seq_len=8, min_len=2)
    g = torch.Generator().manual_seed(0)
    lens = {int((task.train_batch(2, "lm", g).labels[0] != IGNORE).sum()) for _ in range(40)}
    assert min(lens) >= 2 and max(lens) <= 8 and len(lens) > 3


# --- the sizes a batch carries ---------------------------------------------------------------------


def _read_off(batch: Batch) -> tuple[int, int]:
    """The sizes ``Batch`` once guessed from its tensors (float 4-d inputs: images, pixels per image;
    any other input of rank >= 2: its length; the size: the first image's side, else the tokens). The
    tasks now state them; they must state the same numbers for every batch they build."""
    images = [t for t in batch.inputs.values() if t.is_floating_point() and t.dim() == 4]
    n = sum(int(t.shape[-2] * t.shape[-1]) if t.is_floating_point() and t.dim() == 4 else int(t.shape[1])
            for t in batch.inputs.values() if t.dim() >= 2)
    return n, (int(images[0].shape[-1]) if images else n)


@pytest.mark.parametrize(("name", "io"), CASES, ids=[f"{n}-{io}" for n, io in CASES])
def test_batch_sizes_are_stated_and_unchanged(name: str, io: str) -> None:
    """Every batch constructor of every task states n_tokens and seq_len, equal to the old guess, and
    ``to()`` keeps them."""
    task = make(name, **SMALL.get(name, {}))
    gen = torch.Generator().manual_seed(5)
    batches = [task.train_batch(3, io, gen), task.longest_batch(2, io, gen),
               task.profile_batch(8, 2, io, gen), task.profile_batch(12, 2, io, gen)]
    batches += [b for s in task.eval_sets(2, 3, io, seed=0).values() for b in s[:2]]
    for b in batches:
        assert isinstance(b.n_tokens, int) and isinstance(b.seq_len, int)
        assert (b.n_tokens, b.seq_len) == _read_off(b)
        moved = b.to("cpu")
        assert (moved.n_tokens, moved.seq_len) == (b.n_tokens, b.seq_len)


def test_batch_sizes_by_hand() -> None:
    g = torch.Generator().manual_seed(0)

    def sizes(b: Batch) -> tuple[int, int]:
        return b.n_tokens, b.seq_len

    copy = make("copy", seq_len=5)  # src SEP tgt: lm drops the last token, masked keeps all 11
    assert [sizes(copy.train_batch(2, io, g)) for io in IOS] == [(10, 10), (11, 11), (10, 10)]
    assert sizes(copy.profile_batch(8, 2, "seq2seq", g)) == (16, 16)
    assert sizes(make("binary_addition", seq_len=9).train_batch(2, "masked", g)) == (9, 9)  # in place
    assert sizes(make("digits", image_size=8).train_batch(2, "image", g)) == (64, 8)
    sr = make("ref_sr", image_size=16, canvas=24, ref_size=20, eval_images=4)
    assert sizes(sr.train_batch(2, "sr", g)) == (20 * 20 + 4 * 4, 20)  # reference and LR pixels
    assert sizes(sr.eval_sets(1, 3, "sr", 0)["_unrel"][1]) == (416, 20)  # a slice keeps them
    lanes = make("lanes", image_size=32, image_height=16, row_start=8)
    assert sizes(lanes.train_batch(2, "lanes", g)) == (16 * 32, 32)  # a row records the width
    assert sizes(lanes.profile_batch(12, 2, "lanes", g)) == (6 * 12, 12)
    gan = make("gan_digits")
    assert sizes(gan.train_batch(2, "gan", g)) == (64, 8)
    assert sizes(gan.eval_sets(1, 4, "gan", 0)[""][0]) == (0, 0)  # classes and noise seeds only


# --- metric bounds ---------------------------------------------------------------------------------

# every case of the contract (ListOps at lengths its small trees reach often: its chance is drawn from
# 16,384 expressions), plus a second evaluation length (suffix _train_len) and the modes with other
# metrics or other data
BOUND_SMALL = {**SMALL, "listops": {"seq_len": 32, "min_len": 8, "max_depth": 4}}
BOUND_CASES = [(n, io, BOUND_SMALL.get(n, {}), f"{n}-{io}") for n, io in CASES] + [
    ("copy", "lm", {"seq_len": 5, "test_len": 9}, "copy-test_len"),
    ("shapes", "image", {"image_size": 16, "mode": "classify"}, "shapes-classify"),
    ("pixels", "image", {"source": "shapes", "image_size": 16}, "pixels-shapes"),
]


def _some_logits(task: Task, io: str, batch: Batch) -> torch.Tensor:
    """Model outputs of the io's layout (their values do not matter: only the metric names do)."""
    b = batch.batch_size
    if io in ("gan", "sr"):
        return batch.labels
    if io == "detect":  # one decoder layer, 3 queries, classes + "no object" + a box
        return torch.full((b, 1, 3, task.n_classes + 1 + 4), 0.5)
    if io == "lanes":
        return torch.zeros(b, task.cfg.max_lanes, 4 + len(task.rows))
    logits = torch.zeros(*batch.labels.shape, _classes(task))
    return logits.scatter_(-1, batch.labels.clamp(min=0)[..., None], 1.0)


@pytest.mark.parametrize(("name", "io", "cfg"), [c[:3] for c in BOUND_CASES], ids=[c[3] for c in BOUND_CASES])
def test_every_metric_a_task_reports_has_declared_bounds(name: str, io: str, cfg: dict) -> None:
    """The contract: bounds for exactly the metric names the task reports over its evaluation sets,
    each with floor, chance and ceiling (a finite float, or None where undefined) and a direction that
    agrees with them; the same every time."""
    task = make(name, **cfg)
    declared = metric_bounds(task)
    reported: set[str] = set()
    for suffix, batches in task.eval_sets(1, 3, io, seed=0).items():
        batch = batches[0]
        reported |= set(task.metrics(task.score(_some_logits(task, io, batch), batch.labels), suffix))
    assert set(declared) == reported and task.metric in declared
    for metric, d in declared.items():
        assert set(d) == {"floor", "chance", "ceiling", "higher_is_better"}, metric
        assert isinstance(d["higher_is_better"], bool)
        floor, chance, ceiling = d["floor"], d["chance"], d["ceiling"]
        assert all(v is None or (type(v) is float and math.isfinite(v)) for v in (floor, chance, ceiling))
        if floor is not None and ceiling is not None:
            assert (ceiling > floor) == d["higher_is_better"], metric
            if chance is not None:  # a guess from the labels: no worse than a uniform one, short of perfect
                assert min(floor, ceiling) <= chance <= max(floor, ceiling), metric
                assert chance == floor or (chance > floor) == d["higher_is_better"], metric
    assert metric_bounds(task) == declared


def test_listops_chance_is_its_majority_class_frequency() -> None:
    """Exactly the most frequent answer's share in the fixed draw (counted here from the expressions'
    values, not from the answers the task lays out), close to that share in the evaluation sets, and
    well above the uniform 1/10 (MIN and MAX of many arguments pull towards 0 and 9)."""
    from harness.tasks.long_range import listops_value

    task = make("listops", seq_len=48, min_len=16, max_depth=6)  # suites/long_range.yaml's listops
    b = metric_bounds(task)
    src, _ = task.make(task.test_len, BOUNDS_DRAW, torch.Generator().manual_seed(BOUNDS_SEED))
    answers = Counter(listops_value(row.tolist()) for row in src)
    assert b["seq_acc"]["chance"] == b["tok_acc"]["chance"] == max(answers.values()) / BOUNDS_DRAW
    assert b["seq_acc"]["floor"] == 0.1 and 0.14 < b["seq_acc"]["chance"] < 0.17
    labels = torch.cat([x.labels for x in task.eval_sets(16, 256, "seq2seq", seed=0)[""]])
    assert abs(b["seq_acc"]["chance"] - float(torch.bincount(labels[:, 0]).max()) / len(labels)) < 0.02


def test_chance_in_closed_form_agrees_with_a_draw() -> None:
    """Copy's chance is the uniform 1/vocab (its floor); addition's leading carry digit makes its chance
    (max(p_n, 1 - p_n) + n / 10) / (n + 1): both agree with the generator's labels."""
    from harness.tasks.base import majority_chance

    for name, cfg in (("copy", {"seq_len": 6, "vocab": 5}), ("addition", {"seq_len": 3}),
                      ("reverse", {"seq_len": 4, "vocab": 3}), ("duplication", {"seq_len": 4, "vocab": 4})):
        task = make(name, **cfg)
        tok, seq = task.guess_chance(task.test_len)
        _, tgt = task.make(task.test_len, 50_000, torch.Generator().manual_seed(1))
        drawn_tok, drawn_seq = majority_chance(tgt)
        assert abs(tok - drawn_tok) < 0.01 and abs(seq - drawn_seq) < 0.01, name
    assert make("copy", vocab=5).guess_chance(16)[0] == 0.2
    addition = make("addition", seq_len=1).guess_chance(1)
    assert addition == pytest.approx(((0.55 + 0.1) / 2, 0.1))  # 1 + 1-digit sums: carry in 45 of 100


def test_chance_of_a_label_distribution_is_what_a_model_of_it_scores() -> None:
    """A 'model' that predicts the evaluated labels' distribution and ignores its input scores exactly
    the declared chance: char_lm's bpc (the bytes' entropy) and pixels' bpd (each position's)."""
    lm = make("char_lm", seq_len=16, eval_tokens=640)
    batches = lm.eval_sets(1, 8, "lm", seed=0)[""]
    counts = torch.bincount(torch.cat([b.labels.flatten() for b in batches]), minlength=256).double()
    logits = counts.clamp_min(1e-300).log().float()
    sums = [lm.score(logits.expand(*b.labels.shape, 256), b.labels) for b in batches]
    bpc = lm.metrics(tuple(sum(c[i] for c in sums) for i in range(4)), "")
    assert bpc["bpc"] == pytest.approx(metric_bounds(lm)["bpc"]["chance"], rel=1e-5)
    assert bpc["acc"] == pytest.approx(metric_bounds(lm)["acc"]["chance"])
    px = make("pixels")
    (batch,) = [b for b in px.eval_sets(1, 1000, "image", seed=0)[""]]
    per_pos = torch.nn.functional.one_hot(batch.labels, px.levels).double().mean(0)  # (S, S, levels)
    logits = per_pos.clamp_min(1e-300).log().expand(*batch.labels.shape, px.levels)
    bpd = px.metrics(px.score(logits, batch.labels), "")["bpd"]
    assert bpd == pytest.approx(metric_bounds(px)["bpd"]["chance"], rel=1e-6)


def test_digits_chance_is_the_test_splits_largest_class() -> None:
    task = make("digits", image_size=8)
    labels = task.split().test_labels
    chance = float(torch.bincount(labels).max()) / len(labels)
    assert metric_bounds(task)["acc"] == {"floor": 0.1, "chance": chance, "ceiling": 1.0,
                                          "higher_is_better": True}


@dataclass
class _NoBoundsConfig:
    seq_len: int = 4


def test_a_task_without_bounds_is_refused(tmp_path: Path) -> None:
    """A task class that declares no metric bounds is refused by the suite loader, where it is named,
    and by metric_bounds."""
    from harness.core.errors import HarnessError, InputError
    from harness.core.registry import Entry
    from harness.suite.load import load_suite
    from harness.tasks.algorithmic import Copy

    class Unbounded:  # a Copy in all but its bounds
        def __init__(self, cfg: _NoBoundsConfig) -> None:
            self.inner = Copy(TASKS.get("copy").config(seq_len=cfg.seq_len))

        def __getattr__(self, key: str):  # noqa: ANN204
            if key == "metric_bounds":
                raise AttributeError(key)
            return getattr(self.inner, key)

    TASKS.add(Entry("unbounded_test", Unbounded, _NoBoundsConfig, "no bounds", __name__))
    try:
        path = tmp_path / "s.yaml"
        path.write_text("seeds: [0]\ntrain: {steps: 1, batch_size: 2}\n"
                        "tasks:\n  - {name: u, task: unbounded_test}\n"
                        "variants:\n  - {name: v, model: vanilla}\n")
        with pytest.raises(InputError, match=r"tasks\[0\]\.task.*declares no metric bounds"):
            load_suite(path)
        with pytest.raises(HarnessError, match="declares no metric bounds"):
            metric_bounds(Unbounded(_NoBoundsConfig()))
    finally:
        TASKS.entries.pop("unbounded_test")
