"""Algorithmic sequence tasks, generated from the seed (nothing is downloaded).

Each task maps a source string to a target string over a small alphabet: ``copy``, ``reverse``,
``sort``, multi-digit decimal ``addition`` and Reformer's ``duplication`` (0w0w, Kitaev et al. 2020,
Sec. 5). Training uses lengths up to ``seq_len``; evaluation uses ``test_len`` (default: ``seq_len``),
so a longer ``test_len`` measures length generalisation as in the Universal Transformer's Table 4.

How a pair is laid out depends on the model (see harness.models.base):
- ``lm``:      ``src SEP tgt`` shifted by one; only target tokens are scored (teacher forcing).
- ``masked``:  ``src SEP BLANK..BLANK``; the model fills the blanks (bidirectional encoders).
- ``seq2seq``: source ``src``, decoder input ``BOS tgt[:-1]``, labels ``tgt``.
With teacher forcing, "every target token right" is exactly "greedy decoding reproduces the target",
so ``seq_acc`` equals greedy whole-sequence accuracy; ``tok_acc`` is per-token (char) accuracy.
``seq_acc`` is the headline unless the task config says ``metric: tok_acc``.

Bounds (harness/tasks/base.py), per evaluation length n with L target tokens over K target symbols:
``tok_acc`` floor 1/K, ``seq_acc`` floor (1/K)^L (a uniform guess), ceilings 1. Chance is the best
guess that ignores the source: each target position's most frequent symbol (``tok_acc``), the most
frequent whole target (``seq_acc``). Copy, reverse and duplication have uniform, independent targets
(chance = floor); addition's are known in closed form (:meth:`Addition.guess_chance`); sort's (order
statistics) and the long-range tasks' come from a fixed draw of the generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from harness.core.config import positive
from harness.core.registry import register_task
from harness.tasks.base import BOUNDS_DRAW, BOUNDS_SEED, IGNORE, Batch, MetricBound, TaskBase, majority_chance

PAD, SEP, BLANK, BOS = 0, 1, 2, 3
N_SPECIAL = 4
HEADLINE_METRICS = ("seq_acc", "tok_acc")  # what a task config's ``metric`` may choose


@dataclass
class SeqTaskConfig:
    seq_len: int = positive(16)  # longest training source (addition: digits per operand)
    min_len: int | None = None  # shortest training source; each batch draws one length in between
    test_len: int | None = None  # evaluation source length (default seq_len)
    vocab: int = positive(10)  # alphabet size (addition: fixed at 10 digits)
    # the headline metric (a row's ``metric``/``value``): seq_acc (the class default) or tok_acc, for
    # a setting where whole sequences stay at zero for every model (e.g. length generalisation at CPU
    # scale) but the token accuracy at the test length still tells the models apart
    metric: str | None = None

    def check(self) -> list[tuple[str, str]]:
        if self.metric is not None and self.metric not in HEADLINE_METRICS:
            return [("metric", f"must be one of {', '.join(HEADLINE_METRICS)}, got {self.metric!r}")]
        if self.min_len is not None and not 1 <= self.min_len <= self.seq_len:
            return [("min_len", f"must be between 1 and seq_len ({self.seq_len}), got {self.min_len}")]
        if self.test_len is not None and self.test_len < 1:
            return [("test_len", f"must be >= 1, got {self.test_len}")]
        return []


# chance levels drawn from a task's generator, by (task class, config, length): a draw costs seconds
# for long ListOps expressions, and every job of a suite asks for the same one
DRAWN_CHANCE: dict[tuple[str, str, int], tuple[float, float]] = {}


class SeqTask(TaskBase):
    """Base for source -> target tasks; subclasses implement :meth:`make`."""

    metric = "seq_acc"  # higher is better, every token io accepted (TaskBase)
    # every target position uniform over the target symbols and independent of the others
    uniform_targets: ClassVar[bool] = False

    def __init__(self, cfg: SeqTaskConfig) -> None:
        self.cfg = cfg
        if cfg.metric is not None:
            self.metric = cfg.metric
        self.test_len = cfg.test_len or cfg.seq_len
        self.vocab_size = N_SPECIAL + self.alphabet()

    # -- subclass API ------------------------------------------------------------------------------
    def alphabet(self) -> int:
        return self.cfg.vocab

    def make(self, n: int, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Source (batch, ls) and target (batch, lt) token ids for source length n."""
        raise NotImplementedError

    def lengths(self, n: int) -> tuple[int, int]:
        """(source, target) token counts for length n."""
        return n, n

    def target_symbols(self) -> int:
        """How many symbols a target token can be."""
        return self.alphabet()

    def guess_chance(self, n: int) -> tuple[float, float]:
        """(tok_acc, seq_acc) of the best guess that ignores the source, at source length ``n``: exact
        for uniform targets, else from a fixed draw of :data:`BOUNDS_DRAW` pairs."""
        if self.uniform_targets:
            k, lt = self.target_symbols(), self.lengths(n)[1]
            return 1 / k, (1 / k) ** lt
        key = (type(self).__qualname__, repr(self.cfg), n)
        if key not in DRAWN_CHANCE:
            _, tgt = self.make(n, BOUNDS_DRAW, torch.Generator().manual_seed(BOUNDS_SEED))
            DRAWN_CHANCE[key] = majority_chance(tgt)
        return DRAWN_CHANCE[key]

    # -- harness API -------------------------------------------------------------------------------
    def model_keys(self) -> dict[str, int]:
        ls, lt = self.lengths(max(self.cfg.seq_len, self.test_len))
        return {"vocab_size": self.vocab_size, "max_len": ls + 1 + lt}

    def symbols(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        return torch.randint(N_SPECIAL, N_SPECIAL + self.alphabet(), shape, generator=gen)

    def layout(self, src: torch.Tensor, tgt: torch.Tensor, io: str) -> Batch:
        b = tgt.shape[0]
        sep = torch.full((b, 1), SEP, dtype=torch.long)
        if io == "lm":
            seq = torch.cat([src, sep, tgt], dim=1)
            labels = seq[:, 1:].clone()
            labels[:, : src.shape[1]] = IGNORE  # positions that predict src tokens or SEP
            return Batch.of_tokens({"x": seq[:, :-1]}, labels)
        if io == "masked":
            blanks = torch.full_like(tgt, BLANK)
            ignore = torch.full((b, src.shape[1] + 1), IGNORE, dtype=torch.long)
            x = torch.cat([src, sep, blanks], dim=1)
            return Batch.of_tokens({"x": x}, torch.cat([ignore, tgt], dim=1))
        if io == "seq2seq":
            bos = torch.full((b, 1), BOS, dtype=torch.long)
            return Batch.of_tokens({"x": src, "y": torch.cat([bos, tgt[:, :-1]], dim=1)}, tgt.clone())
        raise ValueError(f"{type(self).__name__} cannot lay out a batch for model io '{io}'")

    def train_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        lo = self.cfg.min_len or self.cfg.seq_len
        n = int(torch.randint(lo, self.cfg.seq_len + 1, (1,), generator=gen)) if lo < self.cfg.seq_len else lo
        return self.layout(*self.make(n, batch_size, gen), io)

    def longest_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        """A training batch at ``seq_len``, the longest training length."""
        return self.layout(*self.make(self.cfg.seq_len, batch_size, gen), io)

    def eval_lengths(self) -> dict[str, int]:
        """Source length of each evaluation set, by metric suffix: '' at test_len (the headline),
        '_train_len' at seq_len if different."""
        lengths = {"": self.test_len}
        if self.test_len != self.cfg.seq_len:
            lengths["_train_len"] = self.cfg.seq_len
        return lengths

    def eval_sets(self, n_batches: int, batch_size: int, io: str, seed: int) -> dict[str, list[Batch]]:
        """Fixed evaluation batches at each of :meth:`eval_lengths`."""
        out: dict[str, list[Batch]] = {}
        for suffix, n in self.eval_lengths().items():
            gen = torch.Generator().manual_seed(1_000_003 * (seed + 1) + n)  # disjoint from training stream
            out[suffix] = [self.layout(*self.make(n, batch_size, gen), io) for _ in range(n_batches)]
        return out

    def profile_batch(self, seq_len: int, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        """A batch whose model input is exactly ``seq_len`` tokens (for cost-against-length)."""
        x = self.symbols((batch_size, seq_len), gen)
        labels = self.symbols((batch_size, seq_len), gen)
        if io == "seq2seq":
            y = self.symbols((batch_size, seq_len), gen)
            return Batch({"x": x, "y": y}, labels, n_tokens=2 * seq_len, seq_len=2 * seq_len)
        return Batch({"x": x}, labels, n_tokens=seq_len, seq_len=seq_len)

    @staticmethod
    def score(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int, int, int]:
        """(right tokens, scored tokens, right sequences, sequences)."""
        mask = labels != IGNORE
        right = (logits.argmax(-1) == labels) & mask
        seq_ok = (right | ~mask).all(dim=-1)
        return int(right.sum()), int(mask.sum()), int(seq_ok.sum()), int(labels.shape[0])

    def metrics(self, counts: tuple[int, int, int, int], suffix: str) -> dict[str, float]:
        rt, nt, rs, ns = counts
        return {f"tok_acc{suffix}": rt / max(nt, 1), f"seq_acc{suffix}": rs / max(ns, 1)}

    def metric_bounds(self) -> dict[str, MetricBound]:
        out = {}
        for suffix, n in self.eval_lengths().items():
            k, lt = self.target_symbols(), self.lengths(n)[1]
            tok, seq = self.guess_chance(n)
            out[f"tok_acc{suffix}"] = MetricBound(1 / k, tok, 1.0)
            out[f"seq_acc{suffix}"] = MetricBound((1 / k) ** lt, seq, 1.0)
        return out


@register_task("copy", config=SeqTaskConfig)
class Copy(SeqTask):
    """Copy the source string (UT paper, Table 4)."""

    uniform_targets = True

    profile_ios = ("lm", "masked", "seq2seq")  # harness profile's task for token models

    def make(self, n: int, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        src = self.symbols((batch, n), gen)
        return src, src.clone()


@register_task("reverse", config=SeqTaskConfig)
class Reverse(SeqTask):
    """Reverse the source string (UT paper, Table 4)."""

    uniform_targets = True

    def make(self, n: int, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        src = self.symbols((batch, n), gen)
        return src, src.flip(1)


@register_task("sort", config=SeqTaskConfig)
class Sort(SeqTask):
    """Sort the source symbols in ascending order."""

    def make(self, n: int, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        src = self.symbols((batch, n), gen)
        return src, src.sort(dim=1).values


@register_task("addition", config=SeqTaskConfig)
class Addition(SeqTask):
    """Add two n-digit decimal numbers, most significant digit first: ``a + b`` -> n+1 sum digits.

    Tokens: the ten digits, then '+'. ``vocab`` is ignored (the alphabet is decimal).
    """

    def alphabet(self) -> int:
        return 11  # 0-9 and '+'

    def target_symbols(self) -> int:
        return 10  # the sum's digits

    def lengths(self, n: int) -> tuple[int, int]:
        return 2 * n + 1, n + 1

    def guess_chance(self, n: int) -> tuple[float, float]:
        """Exact: the sum's digits are uniform; its leading digit is the carry out of n columns, 1 with
        probability p_n (p_0 = 0, p_k+1 = 0.45 + 0.1 p_k: a column carries in 45 of 100 digit pairs without
        a carry in, 55 with one), so that position's best guess is 0. The likeliest whole sum, 10^n - 1,
        has 10^n of the 100^n operand pairs."""
        p = 0.0
        for _ in range(n):
            p = 0.45 + 0.1 * p
        return (max(p, 1 - p) + 0.1 * n) / (n + 1), 0.1**n

    def make(self, n: int, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.randint(0, 10, (batch, n), generator=gen)
        b = torch.randint(0, 10, (batch, n), generator=gen)
        # column-wise addition from the least significant digit, carrying, gives exact big sums
        total = torch.zeros(batch, n + 1, dtype=torch.long)
        carry = torch.zeros(batch, dtype=torch.long)
        for i in range(n - 1, -1, -1):
            s = a[:, i] + b[:, i] + carry
            total[:, i + 1], carry = s % 10, s // 10
        total[:, 0] = carry
        plus = torch.full((batch, 1), N_SPECIAL + 10, dtype=torch.long)
        return torch.cat([a + N_SPECIAL, plus, b + N_SPECIAL], dim=1), total + N_SPECIAL


@register_task("duplication", config=SeqTaskConfig)
class Duplication(SeqTask):
    """Reformer's duplication task: sequences 0w0w; the second w is scored (Kitaev et al. 2020, Sec. 5).

    The separator token plays the paper's 0: the source is ``0 w`` and the layout appends ``0 w``.
    """

    uniform_targets = True

    def lengths(self, n: int) -> tuple[int, int]:
        return n + 1, n

    def make(self, n: int, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.symbols((batch, n), gen)
        zero = torch.full((batch, 1), SEP, dtype=torch.long)
        return torch.cat([zero, w], dim=1), w.clone()
