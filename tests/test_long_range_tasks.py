"""ListOps (LRA) and the RSE binary addition / multiplication tasks: targets, lengths, layouts."""

from __future__ import annotations

import collections
import random
import statistics
from typing import Any

import pytest
import torch

from harness.core.registry import TASKS
from harness.tasks.algorithmic import BLANK, BOS, N_SPECIAL, PAD, SEP
from harness.tasks.base import IGNORE
from harness.tasks.long_range import (
    CLOSE,
    DIGIT0,
    BinaryAddition,
    BinaryMultiplication,
    draw_listops,
    listops_decode,
    listops_encode,
    listops_max_len,
    listops_value,
)

IOS = ["lm", "masked", "seq2seq"]


def make(name: str, **cfg):
    entry = TASKS.get(name)
    return entry.obj(entry.config(**cfg))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- ListOps ----------------------------------------------------------------------------------------


def reference_value(text: str) -> int:
    """A second, recursive evaluator over the text (LRA's semantics: int(median), sum mod 10)."""
    toks = text.split()

    def expr(i: int) -> tuple[int, int]:
        if toks[i].isdigit():
            return int(toks[i]), i + 1
        op, i, args = toks[i], i + 1, []
        while toks[i] != "]":
            v, i = expr(i)
            args.append(v)
        med = int(statistics.median(args))
        return {"[MIN": min(args), "[MAX": max(args), "[MED": med, "[SM": sum(args) % 10}[op], i + 1

    value, end = expr(0)
    assert end == len(toks)
    return value


HAND = [
    ("[MAX 2 9 ]", 9),
    ("[MIN 4 7 1 ]", 1),
    ("[MED 5 1 9 ]", 5),
    ("[MED 1 2 ]", 1),  # even count: mean of the middle two, rounded down
    ("[MED 8 9 ]", 8),
    ("[MED 3 4 7 8 ]", 5),
    ("[MED 9 0 9 0 ]", 4),
    ("[SM 7 8 9 ]", 4),  # 24 mod 10
    ("[SM 0 0 ]", 0),
    ("[MAX 2 [MIN 4 7 ] 0 ]", 4),
    ("[SM [MAX 9 9 ] [MED 0 9 ] 3 ]", 6),  # 9 + 4 + 3 = 16
    ("[MIN [MAX 1 [SM 5 5 ] ] 3 ]", 1),
    ("[MED [MIN 9 8 ] [MAX 0 1 ] [SM 3 3 ] [MED 2 3 ] ]", 4),  # median of 8 1 6 2 -> (2+6)//2
]


@pytest.mark.parametrize("text,value", HAND)
def test_listops_evaluator_on_hand_examples(text: str, value: int) -> None:
    ids = listops_encode(text)
    assert listops_value(ids) == value == reference_value(text)
    assert listops_value(ids + [PAD, PAD]) == value  # trailing padding is ignored
    assert listops_decode(ids + [PAD]) == text


@pytest.mark.parametrize("text", ["[MAX 1 2", "1 2", "]", "[MAX ]", "[SM 1 2 ] 3"])
def test_listops_evaluator_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        listops_value(listops_encode(text))


@pytest.mark.parametrize("seq_len,lo", [(64, 16), (2000, 500)])
def test_listops_lengths_and_labels(seq_len: int, lo: int) -> None:
    task = make("listops", seq_len=seq_len)
    src, ans = task.make(seq_len, 16, gen(0))
    lengths = (src != PAD).sum(1)
    assert int(lengths.min()) >= lo and int(lengths.max()) <= seq_len
    assert src.shape[1] == int(lengths.max())  # padded to the batch's longest, on the right
    for row, a in zip(src, ans[:, 0]):
        n = int((row != PAD).sum())
        assert (row[n:] == PAD).all() and int(row[n - 1]) == CLOSE
        assert int(a) - DIGIT0 == reference_value(listops_decode(row))


def test_listops_early_abort_is_exact() -> None:
    """A tree is abandoned only if it would exceed hi: the same draws give the full tree at hi = its
    length and None at its length - 1 (so rejection sampling keeps LRA's length distribution)."""
    seen = 0
    for seed in range(300):
        full = draw_listops(random.Random(seed), 6, 5, 10**9)
        assert full is not None and listops_value(full) >= 0
        if len(full) < 4:
            continue
        seen += 1
        assert draw_listops(random.Random(seed), 6, 5, len(full)) == full
        assert draw_listops(random.Random(seed), 6, 5, len(full) - 1) is None
    assert seen > 30


def test_listops_never_longer_than_seq_len() -> None:
    task = make("listops", seq_len=6)
    src, _ = task.make(6, 400, gen(0))
    lengths = (src != PAD).sum(1)
    assert int(lengths.min()) >= 4 and int(lengths.max()) <= 6 and set(lengths.tolist()) == {4, 5, 6}


def test_listops_eval_lengths_scale_with_test_len() -> None:
    task = make("listops", seq_len=64, min_len=20, test_len=128)
    sets = task.eval_sets(1, 8, "seq2seq", seed=0)
    assert set(sets) == {"", "_train_len"}
    long = (sets[""][0].inputs["x"] != PAD).sum(1)
    short = (sets["_train_len"][0].inputs["x"] != PAD).sum(1)
    assert int(long.min()) >= 40 and int(long.max()) <= 128  # 128 * 20 // 64 = 40
    assert int(short.min()) >= 20 and int(short.max()) <= 64
    assert task.model_keys()["max_len"] == 128 + 2


def test_listops_layouts() -> None:
    task = make("listops", seq_len=32)
    src, ans = task.make(32, 5, gen(1))
    w = src.shape[1]
    lm = task.layout(src, ans, "lm")
    assert lm.inputs["x"].shape == (5, w + 1) and (lm.inputs["x"][:, w] == SEP).all()
    assert (lm.labels[:, :w] == IGNORE).all() and torch.equal(lm.labels[:, w], ans[:, 0])
    mk = task.layout(src, ans, "masked")
    assert mk.inputs["x"].shape == (5, w + 2)
    assert (mk.inputs["x"][:, w] == SEP).all() and (mk.inputs["x"][:, w + 1] == BLANK).all()
    assert (mk.labels[:, : w + 1] == IGNORE).all() and torch.equal(mk.labels[:, w + 1], ans[:, 0])
    s2s = task.layout(src, ans, "seq2seq")
    assert torch.equal(s2s.inputs["x"], src) and s2s.inputs["y"].tolist() == [[BOS]] * 5
    assert torch.equal(s2s.labels, ans)
    for io in IOS:
        b = task.train_batch(4, io, gen(2))
        assert int((b.labels != IGNORE).sum()) == 4  # one scored token per example
        assert max(t.shape[1] for t in b.inputs.values()) <= task.model_keys()["max_len"]
        assert all(int(t.max()) < task.vocab_size for t in b.inputs.values())
        p = task.profile_batch(48, 2, io, gen(0))
        assert p.inputs["x"].shape == (2, 48)
        longest = task.longest_batch(3, io, gen(0))
        assert longest.inputs["x"].shape[1] == {"lm": 33, "masked": 34, "seq2seq": 32}[io]


def test_listops_metrics_are_accuracy() -> None:
    task = make("listops", seq_len=16)
    b = task.train_batch(6, "masked", gen(0))
    logits = torch.zeros(*b.labels.shape, task.vocab_size)
    logits.scatter_(-1, b.labels.clamp(min=0)[..., None], 1.0)
    logits[0, -1] = 0
    logits[0, -1, DIGIT0 + (int(b.labels[0, -1]) - DIGIT0 + 1) % 10] = 1  # example 0 answered wrong
    m = task.metrics(task.score(logits, b.labels), "")
    assert m["seq_acc"] == m["tok_acc"] == pytest.approx(5 / 6) and task.metric in m


def test_listops_deterministic_and_seed_dependent() -> None:
    task = make("listops", seq_len=128)
    a, b, c = (task.train_batch(8, "lm", gen(s)) for s in (5, 5, 6))
    assert torch.equal(a.inputs["x"], b.inputs["x"]) and torch.equal(a.labels, b.labels)
    assert a.inputs["x"].shape != c.inputs["x"].shape or not torch.equal(a.inputs["x"], c.inputs["x"])
    g = gen(7)  # consecutive batches of one stream differ (nothing cached)
    assert not torch.equal(task.make(128, 4, g)[0][:, :20], task.make(128, 4, g)[0][:, :20])


def test_listops_generation_is_fast_at_lra_length(
    counted_random: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fast in work, not seconds: rejection sampling stays cheap at LRA length because few trees miss
    the 500-2000 token window and a tree that must pass 2000 tokens stops at once. Counted: the trees
    drawn and the generator's draws for one batch of 32 (about half a second on one core)."""
    from harness.tasks import long_range

    made = counted_random(long_range)
    trees: list[bool] = []
    real_draw = long_range.draw_listops

    def draw(*args: Any) -> list[int] | None:
        toks = real_draw(*args)
        trees.append(toks is not None and len(toks) >= 500)
        return toks

    monkeypatch.setattr(long_range, "draw_listops", draw)
    task = make("listops")  # LRA defaults: 500-2000 tokens, depth 10, up to 10 arguments
    src, _ = task.make(2000, 32, gen(0))
    assert src.shape[0] == 32 and src.shape[1] <= 2000
    kept = int((src != PAD).sum())
    (rng,) = made
    assert (len(trees), sum(trees), kept, rng.draws) == (429, 32, 35_936, 112_381)  # the same everywhere
    assert len(trees) < 16 * 32 and rng.draws < 4 * kept  # under 16 trees and 4 draws per token kept


def test_listops_label_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    """Not balanced (as in LRA): 0 and 9 are the commonest answers (MIN/MAX of many arguments)."""
    task = make("listops", seq_len=200)
    _, ans = task.make(200, 600, gen(0))
    counts = collections.Counter((ans[:, 0] - DIGIT0).tolist())
    shares = {k: round(counts[k] / 600, 3) for k in range(10)}
    with capsys.disabled():
        print(f"\nlistops label shares (seq_len 200, 600 draws): {shares}")
    assert all(counts[k] > 0 for k in range(10))
    assert {k for k, _ in counts.most_common(2)} == {0, 9}
    assert max(shares.values()) < 0.35


def test_listops_config_checks() -> None:
    cfg = TASKS.get("listops").config
    assert cfg().check() == []
    assert cfg(seq_len=3).check()[0][0] == "seq_len"
    assert cfg(seq_len=64, max_depth=2, max_args=3).check()[0][0] == "min_len"  # at most 5 tokens
    assert cfg(seq_len=64, min_len=5, test_len=4096, max_depth=4, max_args=4).check()[0][0] == "test_len"
    assert listops_max_len(2, 3) == 5 and listops_max_len(3, 2) == 10  # [OP [OP d d ] [OP d d ] ]


def test_listops_generator_respects_depth_and_args() -> None:
    task = make("listops", seq_len=60, min_len=15, max_depth=4, max_args=3)
    src, _ = task.make(60, 20, gen(3))
    depths = []
    for row in src:
        depth = widest = 0
        stack: list[int] = []
        for t in row.tolist():
            if t == PAD:
                break
            if t == CLOSE:
                widest = max(widest, stack.pop())
            else:
                if stack:
                    stack[-1] += 1
                if t >= DIGIT0 + 10:
                    stack.append(0)
                    depth = max(depth, len(stack))
        assert depth <= 3 and widest <= 3  # operators at depths 1..max_depth-1
        depths.append(depth)
    assert max(depths) == 3


# -- binary addition / multiplication ----------------------------------------------------------------


def bits_to_int(row: list[int]) -> int:
    """LSB-first bit tokens -> int (independent of the task code)."""
    return sum((t - N_SPECIAL) << i for i, t in enumerate(row))


@pytest.mark.parametrize("name,op", [("binary_addition", "+"), ("binary_multiplication", "*")])
@pytest.mark.parametrize("n", [201, 202, 601])
def test_binary_targets_exact(name: str, op: str, n: int) -> None:
    task = make(name, seq_len=n)
    src, tgt = task.make(n, 12, gen(n))
    k = (n - 1) // 2  # 100 or 300 bits per operand
    assert src.shape == tgt.shape == (12, 2 * k + 1)
    assert (src[:, k] == N_SPECIAL + 2).all() and task.op_text == op
    for s, t in zip(src.tolist(), tgt.tolist()):
        a, b = bits_to_int(s[:k]), bits_to_int(s[k + 1 :])
        want = a + b if op == "+" else a * b
        digits = [x for x in t if x != N_SPECIAL + 3]  # drop the output pad '_'
        assert bits_to_int(digits) == want
        if op == "+":  # the sum's bits without leading zeros, then only '_'
            assert len(digits) == max(want.bit_length(), 1) and t[len(digits) :] == [N_SPECIAL + 3] * (
                len(t) - len(digits)
            )
        else:  # zero-filled to the full width, no '_'
            assert len(digits) == len(t)


def test_binary_result_rows_by_hand() -> None:
    add, mul = BinaryAddition.__new__(BinaryAddition), BinaryMultiplication.__new__(BinaryMultiplication)
    assert add.result_bits(0b111 + 0b111, 7) == "0111___"  # 14, LSB first, carry out kept
    assert add.result_bits(0, 7) == "0______"
    assert mul.result_bits(0b111 * 0b111, 7) == "1000110"  # 49 = 110001b
    assert mul.result_bits(0, 5) == "00000"


@pytest.mark.parametrize("name", ["binary_addition", "binary_multiplication"])
def test_binary_layouts(name: str) -> None:
    task = make(name, seq_len=9)
    src, tgt = task.make(9, 4, gen(0))
    ln = src.shape[1]
    mk = task.layout(src, tgt, "masked")  # in place: equal length, every position scored
    assert torch.equal(mk.inputs["x"], src) and torch.equal(mk.labels, tgt)
    assert mk.inputs["x"].shape == mk.labels.shape == (4, ln)
    assert not ((mk.inputs["x"] == SEP) | (mk.inputs["x"] == BLANK)).any()
    lm = task.layout(src, tgt, "lm")
    assert lm.inputs["x"].shape == (4, 2 * ln) and (lm.inputs["x"][:, ln] == SEP).all()
    assert (lm.labels[:, :ln] == IGNORE).all() and torch.equal(lm.labels[:, ln:], tgt)
    s2s = task.layout(src, tgt, "seq2seq")
    assert torch.equal(s2s.inputs["x"], src) and torch.equal(s2s.labels, tgt)
    assert (s2s.inputs["y"][:, 0] == BOS).all() and torch.equal(s2s.inputs["y"][:, 1:], tgt[:, :-1])
    assert task.model_keys() == {"vocab_size": N_SPECIAL + 4, "max_len": 2 * ln + 1}
    for io in IOS:
        assert task.profile_batch(16, 2, io, gen(0)).inputs["x"].shape == (2, 16)


def test_binary_padding_is_scored() -> None:
    task = make("binary_addition", seq_len=11)
    b = task.train_batch(8, "masked", gen(1))
    pad = N_SPECIAL + 3
    assert (b.labels == pad).any() and (b.labels != IGNORE).all()
    logits = torch.zeros(*b.labels.shape, task.vocab_size)
    logits.scatter_(-1, b.labels[..., None], 1.0)
    assert task.metrics(task.score(logits, b.labels), "") == {"tok_acc": 1.0, "seq_acc": 1.0}
    i, j = (b.labels == pad).nonzero()[0].tolist()
    logits[i, j] = 0
    logits[i, j, N_SPECIAL] = 1  # a '0' written after the end of the sum is an error
    rt, nt, rs, ns = task.score(logits, b.labels)
    assert (rt, nt, rs, ns) == (8 * 11 - 1, 8 * 11, 7, 8)


def test_binary_lengths_and_determinism() -> None:
    task = make("binary_multiplication", seq_len=20, min_len=5, test_len=41)
    g = gen(0)
    widths = {task.train_batch(2, "masked", g).labels.shape[1] for _ in range(40)}
    assert min(widths) >= 5 and max(widths) <= 19 and all(w % 2 for w in widths) and len(widths) > 3
    a = task.train_batch(3, "lm", gen(9))
    b = task.train_batch(3, "lm", gen(9))
    assert torch.equal(a.inputs["x"], b.inputs["x"]) and torch.equal(a.labels, b.labels)
    ev = task.eval_sets(1, 2, "masked", seed=0)
    assert ev[""][0].labels.shape[1] == 41 and ev["_train_len"][0].labels.shape[1] == 19
    assert task.model_keys()["max_len"] == 2 * 41 + 1


def test_binary_config_checks() -> None:
    cfg = TASKS.get("binary_addition").config
    assert cfg().check() == []
    assert cfg(seq_len=2).check()[0][0] == "seq_len"
    assert cfg(seq_len=8, min_len=2).check()[0][0] == "min_len"
    assert cfg(seq_len=8, test_len=1).check()[0][0] == "test_len"


def test_python_reference_sanity() -> None:
    """The test's own decoders agree with Python ints on a random long operand."""
    r = random.Random(0)
    x = r.getrandbits(100)
    row = [N_SPECIAL + ((x >> i) & 1) for i in range(100)]
    assert bits_to_int(row) == x
