"""Long-sequence reasoning tasks: ListOps (LRA) and RSE's binary addition and multiplication.

``listops``: Long Range Arena's ListOps (Tay et al., "Long Range Arena: A Benchmark for Efficient
Transformers", ICLR 2021, arXiv 2011.04006), after the ListOps of Nangia & Bowman ("ListOps: A
Diagnostic Dataset for Latent Tree Learning", NAACL SRW 2018, arXiv 1804.06028). A nested
expression of the operators MAX, MIN, MED (median) and SM (sum modulo 10) over the digits 0-9 is
classified into its value (10 classes).

- Generator (as LRA's released ``lra_benchmarks/data/listops.py``): a node at depth ``d`` (the root is
  depth 1) is an operator with probability 0.25 if ``d < max_depth``, else a uniform digit; an operator
  is uniform over the four and takes a uniform number of arguments in ``[2, max_args]``. Trees are
  drawn until their token count lies in ``[min_len, seq_len]`` (rejection sampling; a tree is
  abandoned as soon as it provably exceeds ``seq_len``, which leaves the accepted distribution
  unchanged). Defaults are LRA's: ``seq_len`` 2000, ``min_len`` 500 (= ``seq_len // 4``),
  ``max_depth`` 10 and ``max_args`` 10 (the generator's flag default; with ``max_args`` 5 and depth
  10 the expected tree is tiny and 500+ tokens practically never occur: 0 in 2 million draws).
  Evaluation at ``test_len`` draws lengths in ``[test_len * min_len // seq_len, test_len]`` (the same
  proportion), so a longer ``test_len`` measures length generalisation.
- Tokens (after the 4 specials PAD, SEP, BLANK, BOS): digits ``0``-``9`` (ids 4-13), ``[MIN``,
  ``[MAX``, ``[MED``, ``[SM`` (14-17) and ``]`` (18); vocabulary 19. The token count is LRA's
  ``length``: one per digit, operator and ``]``. LRA's files also hold the ``(`` ``)`` of its binary
  tree form, and its input pipeline (``tfds`` ``Tokenizer``, alphanumeric only) drops every bracket,
  so ``]`` never reaches the LRA model; here ``]`` is kept (without it an expression is ambiguous) and
  no parentheses are added. ``vocab`` is ignored.
- Semantics (LRA's ``to_value``): MED of an even count is ``int(np.median)``, i.e. the mean of the two
  middle values rounded down (``[MED 1 2 ]`` = 1, ``[MED 3 4 7 8 ]`` = 5); SM is the sum mod 10.
  Labels come from :func:`listops_value`, a stack evaluator over the tokens, not from the generator.
- Labels are not balanced (neither are LRA's; we do not rebalance). At the defaults, 2000 drawn
  expressions gave 0: 17%, 9: 17%, 1: 10%, 2-8: 7-9% each (MAX and MIN of many arguments pull
  towards 9 and 0), so always answering 0 scores about 17%; ``tests/test_long_range_tasks.py``
  prints the measured distribution. That majority share is the task's declared chance level (its
  floor is the uniform 1/10), drawn from the generator at the evaluation length (harness/tasks/base.py;
  suites/long_range.yaml's listops: 0.151).
- Layouts (the expression right-padded with PAD to the batch's longest, answer = one digit token):
  ``lm``: ``expr PAD.. SEP ans``, only ``ans`` scored; ``masked``: ``expr PAD.. SEP BLANK``, the answer
  at the blank; ``seq2seq``: source ``expr PAD..``, target ``ans``. With one scored token,
  ``seq_acc`` = ``tok_acc`` = classification accuracy (the task's metric is ``seq_acc``).
  Simplification vs LRA: LRA's encoders classify from a pooled representation; here the class is
  read at one position (the last one for causal models), so every model io gets the same task.

``binary_addition`` / ``binary_multiplication``: as in the Neural Shuffle-Exchange and RSE generators
(Freivalds, Ozoliņš, Šostaks, "Neural Shuffle-Exchange Networks", NeurIPS 2019, arXiv 1907.07897;
Draguns et al., "Residual Shuffle-Exchange Networks for Fast Processing of Long Sequences", AAAI 2021,
arXiv 2004.04662; tasks ``badd`` and ``bmul`` of their ``task.py``, itself after the Neural GPU).

- For length ``n`` both operands have ``k = (n - 1) // 2`` uniform random bits (leading zeros
  allowed); input ``a op b`` has ``L = 2k + 1`` tokens; the output has the same ``L`` tokens.
- Bit order: least significant bit first, in input and output, as in RSE. Then output position ``i``
  holds the bit of weight 2^i, as does input position ``i`` (operand ``a``; ``b``'s is ``k + 1 + i``),
  which suits the in-place layout, and a left-to-right decoder emits bits in the order carries
  propagate.
- Output (as RSE): addition writes the sum's bits without leading zeros (the value 0 as ``0``) and
  fills the rest with the output pad ``_``; multiplication writes the product zero-filled to ``L``
  bits (RSE's ``to_base(a*b, 2, 2k+1)``), so it has no ``_``.
- Tokens: ``0`` ``1`` (ids 4, 5), the operator (6: ``+`` or ``*``), ``_`` (7); vocabulary 8.
- Layouts: ``masked`` is **in place** (what the equal-length, bidirectional shuffle-exchange network
  needs): ``x`` = the input, labels = the output at the same positions, no SEP or blanks. ``lm``
  (``src SEP tgt``) and ``seq2seq`` are SeqTask's.
- Scored positions: all ``L`` output positions, the ``_`` padding included (the model must say where
  the result ends). ``seq_acc`` (every position right) is then exactly RSE's sequence accuracy (its
  ``accuracy`` counts a position when target or prediction is non-pad, and pad-pad is always right).
  ``tok_acc`` counts the pad-pad positions too, so it is higher than RSE's per-character accuracy.
- Targets are exact (Python integers), for operands of any length.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harness.core.config import bounded, positive
from harness.core.errors import HarnessError
from harness.core.registry import register_task
from harness.tasks.algorithmic import N_SPECIAL, PAD, SeqTask, SeqTaskConfig
from harness.tasks.base import Batch

# ---------------------------------------------------------------------------------------------------
# ListOps

DIGIT0 = N_SPECIAL  # token id of digit 0; digit d is DIGIT0 + d
OP_MIN, OP_MAX, OP_MED, OP_SM = range(N_SPECIAL + 10, N_SPECIAL + 14)
CLOSE = N_SPECIAL + 14
SPECIAL_TOKENS = ["<pad>", "<sep>", "<blank>", "<bos>"]
LISTOPS_TOKENS = [*SPECIAL_TOKENS, *map(str, range(10)), "[MIN", "[MAX", "[MED", "[SM", "]"]
OP_PROB = 0.25  # LRA's VALUE_P: a node below max_depth is an operator when random() <= 0.25
MIN_EXPR = 4  # the shortest expression: "[OP d d ]"


def listops_encode(text: str) -> list[int]:
    """Whitespace-separated ListOps text -> token ids."""
    index = {t: i for i, t in enumerate(LISTOPS_TOKENS)}
    try:
        return [index[t] for t in text.split()]
    except KeyError as e:
        raise ValueError(f"unknown ListOps token {e.args[0]!r}") from None


def listops_decode(ids: Sequence[int]) -> str:
    """Token ids -> text; PAD tokens are dropped."""
    return " ".join(LISTOPS_TOKENS[int(i)] for i in ids if int(i) != PAD)


def _apply(op: int, args: list[int]) -> int:
    if op == OP_MIN:
        return min(args)
    if op == OP_MAX:
        return max(args)
    if op == OP_SM:
        return sum(args) % 10
    s = sorted(args)  # OP_MED; an even count takes int(mean of the two middle values), as np.median + int
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) // 2


def listops_value(ids: Sequence[int]) -> int:
    """Value (0-9) of a ListOps expression given as token ids (trailing PAD ignored); ValueError if
    malformed. Independent of the generator: a left-to-right stack machine."""
    frames: list[list[int]] = []  # each open operator: [op, arg, arg, ...]
    result: int | None = None
    for t in ids:
        t = int(t)
        if t == PAD:
            break
        if result is not None:
            raise ValueError("tokens after a complete expression")
        if DIGIT0 <= t < DIGIT0 + 10:
            v = t - DIGIT0
        elif OP_MIN <= t <= OP_SM:
            frames.append([t])
            continue
        elif t == CLOSE:
            if not frames or len(frames[-1]) < 2:
                raise ValueError("']' without an open operator with arguments")
            frame = frames.pop()
            v = _apply(frame[0], frame[1:])
        else:
            raise ValueError(f"token id {t} is not a ListOps token")
        if frames:
            frames[-1].append(v)
        else:
            result = v
    if frames or result is None:
        raise ValueError("incomplete expression")
    return result


def listops_max_len(max_depth: int, max_args: int) -> int:
    """Longest expression the generator can draw: operators at depths 1..max_depth-1, all full."""
    n = 1
    for _ in range(max_depth - 1):
        n = 2 + max_args * n
    return n


def draw_listops(rng: random.Random, max_depth: int, max_args: int, hi: int) -> list[int] | None:
    """One LRA-style tree as token ids in prefix order, or None once it must exceed ``hi`` tokens."""
    toks: list[int] = []
    todo: list[int] = []  # arguments still to draw for each open operator (depth = len(todo) + 1)
    need = 0  # fewest tokens still to come: one per missing argument, one ']' per open operator
    while True:
        if len(todo) + 1 < max_depth and rng.random() <= OP_PROB:
            n_args = rng.randint(2, max_args)
            toks.append(OP_MIN + rng.randrange(4))
            todo.append(n_args)
            need += n_args + (1 if len(todo) == 1 else 0)  # this operator fills one of its parent's
            if len(toks) + need > hi:  # only an operator raises the bound; leaves and ']' keep it
                return None
        else:
            toks.append(DIGIT0 + rng.randrange(10))
            if todo:
                need -= 1
            while todo:  # a finished argument; close every operator it completes
                todo[-1] -= 1
                if todo[-1]:
                    break
                todo.pop()
                toks.append(CLOSE)
                need -= 1
            if not todo:
                return toks


@dataclass
class ListOpsConfig(SeqTaskConfig):
    seq_len: int = positive(2000)  # longest expression in tokens (LRA: 2000)
    min_len: int | None = None  # shortest training expression (default seq_len // 4, at least 4; LRA: 500)
    test_len: int | None = None  # longest evaluation expression (default seq_len)
    max_depth: int = bounded(10, lo=2)  # tree depth, root = 1 (LRA: 10)
    max_args: int = bounded(10, lo=2)  # arguments per operator, at least 2 (LRA generator default: 10)

    def check(self) -> list[tuple[str, str]]:
        errors = super().check()
        if errors:
            return errors
        if self.seq_len < MIN_EXPR:
            return [("seq_len", f"must be >= {MIN_EXPR} (the shortest expression is '[OP d d ]')")]
        if self.test_len is not None and self.test_len < MIN_EXPR:
            return [("test_len", f"must be >= {MIN_EXPR} (the shortest expression is '[OP d d ]')")]
        longest = listops_max_len(self.max_depth, self.max_args)
        lo = self.min_len or self.seq_len // 4
        for key, n in (("min_len", lo), ("test_len", (self.test_len or self.seq_len) * lo // self.seq_len)):
            if n > longest:
                limits = f"max_depth {self.max_depth} and max_args {self.max_args}"
                return [(key, f"needs {n}+ token expressions but {limits} allow at most {longest}")]
        return []


@register_task("listops", config=ListOpsConfig)
class ListOps(SeqTask):
    """ListOps (LRA): the value 0-9 of a nested MAX/MIN/MED/SUM_MOD expression of up to seq_len tokens."""

    MAX_TRIES = 50_000  # consecutive rejected trees before giving up
    cfg: ListOpsConfig  # set by SeqTask.__init__

    def __init__(self, cfg: ListOpsConfig) -> None:
        super().__init__(cfg)
        self.min_len = max(MIN_EXPR, cfg.min_len or cfg.seq_len // 4)

    def alphabet(self) -> int:
        return 15  # 10 digits, 4 operators, ']'

    def target_symbols(self) -> int:
        return 10  # the value's digit

    def lengths(self, n: int) -> tuple[int, int]:
        return n, 1

    def bounds(self, n: int) -> tuple[int, int]:
        """Token-count range of expressions drawn for maximum length n (same proportion as training)."""
        if n == self.cfg.seq_len:
            return self.min_len, n
        return max(MIN_EXPR, min(n, n * self.min_len // self.cfg.seq_len)), n

    def expressions(self, n: int, batch: int, gen: torch.Generator) -> list[list[int]]:
        """``batch`` expressions (token ids) with token counts in :meth:`bounds` (n)."""
        lo, hi = self.bounds(n)
        rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=gen)))
        out: list[list[int]] = []
        tries = 0
        while len(out) < batch:
            toks = draw_listops(rng, self.cfg.max_depth, self.cfg.max_args, hi)
            if toks is not None and len(toks) >= lo:
                out.append(toks)
                tries = 0
            else:
                tries += 1
                if tries > self.MAX_TRIES:
                    raise HarnessError(
                        f"listops: no expression of {lo}-{hi} tokens in {self.MAX_TRIES} draws; raise "
                        f"max_depth ({self.cfg.max_depth}) or max_args ({self.cfg.max_args}) or lower min_len"
                    )
        return out

    def make(self, n: int, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        exprs = self.expressions(n, batch, gen)
        width = max(len(e) for e in exprs)
        src = torch.full((batch, width), PAD, dtype=torch.long)
        for i, e in enumerate(exprs):
            src[i, : len(e)] = torch.tensor(e, dtype=torch.long)
        ans = torch.tensor([DIGIT0 + listops_value(e) for e in exprs], dtype=torch.long)
        return src, ans[:, None]

    def train_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        return self.layout(*self.make(self.cfg.seq_len, batch_size, gen), io)

    def longest_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        """A training batch padded to the full ``seq_len`` (the runner profiles the worst case)."""
        src, ans = self.make(self.cfg.seq_len, batch_size, gen)
        full = torch.full((batch_size, self.cfg.seq_len), PAD, dtype=torch.long)
        full[:, : src.shape[1]] = src
        return self.layout(full, ans, io)


# ---------------------------------------------------------------------------------------------------
# Binary addition and multiplication (RSE)

BIT0, BIT1, BIN_OP, OUT_PAD = range(N_SPECIAL, N_SPECIAL + 4)


@dataclass
class BinaryConfig(SeqTaskConfig):
    seq_len: int = positive(16)  # longest training input: operands of (seq_len - 1) // 2 bits
    min_len: int | None = None  # shortest training input; each batch draws one length in between
    test_len: int | None = None  # evaluation input length (default seq_len)

    def check(self) -> list[tuple[str, str]]:
        errors = super().check()
        for key in ("seq_len", "min_len", "test_len"):
            v = getattr(self, key)
            if not errors and v is not None and v < 3:
                errors.append((key, f"must be >= 3 (the shortest input is 'a op b'), got {v}"))
        return errors


class BinaryArithmetic(SeqTask):
    """Base of the RSE binary tasks: input ``a op b``, output the result, both LSB first, equal length."""

    op_text = "+"

    def alphabet(self) -> int:
        return 4  # '0', '1', the operator, the output pad '_'

    def target_symbols(self) -> int:
        return 3  # '0', '1' and the output pad '_'

    def lengths(self, n: int) -> tuple[int, int]:
        k = (n - 1) // 2
        return 2 * k + 1, 2 * k + 1

    def compute(self, a: int, b: int) -> int:
        raise NotImplementedError

    def result_bits(self, c: int, width: int) -> str:
        """The result's output row as text over '0', '1', '_' (LSB first)."""
        raise NotImplementedError

    def make(self, n: int, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        k = (n - 1) // 2
        width = 2 * k + 1
        bits = torch.randint(0, 2, (batch, 2, k), generator=gen)
        op = torch.full((batch, 1), BIN_OP, dtype=torch.long)
        src = torch.cat([bits[:, 0] + BIT0, op, bits[:, 1] + BIT0], dim=1)
        code = {"0": BIT0, "1": BIT1, "_": OUT_PAD}
        rows = []
        for a_bits, b_bits in bits.tolist():
            a = int("".join(map(str, reversed(a_bits))), 2)  # LSB first -> int
            b = int("".join(map(str, reversed(b_bits))), 2)
            text = self.result_bits(self.compute(a, b), width)
            assert len(text) == width
            rows.append([code[ch] for ch in text])
        return src, torch.tensor(rows, dtype=torch.long).reshape(batch, width)

    def layout(self, src: torch.Tensor, tgt: torch.Tensor, io: str) -> Batch:
        if io == "masked":  # in place: output position i answers input position i
            return Batch.of_tokens({"x": src}, tgt.clone())
        return super().layout(src, tgt, io)


@register_task("binary_addition", config=BinaryConfig)
class BinaryAddition(BinaryArithmetic):
    """Binary addition as in RSE: ``a + b`` -> sum, LSB first, padded with '_' to the input's length."""

    op_text = "+"

    def compute(self, a: int, b: int) -> int:
        return a + b

    def result_bits(self, c: int, width: int) -> str:
        return format(c, "b")[::-1].ljust(width, "_")


@register_task("binary_multiplication", config=BinaryConfig)
class BinaryMultiplication(BinaryArithmetic):
    """Binary multiplication as in RSE: ``a * b`` -> product, LSB first, zero-filled to the input's length."""

    op_text = "*"

    def target_symbols(self) -> int:
        return 2  # '0' and '1': the product is zero-filled, never padded

    def compute(self, a: int, b: int) -> int:
        return a * b

    def result_bits(self, c: int, width: int) -> str:
        return format(c, "b")[::-1].ljust(width, "0")
