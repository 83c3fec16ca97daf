"""Character-level language modelling: predict the next byte of a text, scored in bits per character.

Data. ``path:`` names a local file read as raw bytes (vocabulary: the 256 byte values, no special
tokens), e.g. the standard ``enwik8`` (first 10^8 bytes of an English Wikipedia XML dump) or ``text8``
(10^8 characters over ``a-z`` and space). Their usual splits are the first 90M / next 5M / last 5M
characters for train / valid / test; a file of any other size is split in the same proportions: the
last two twentieths (``n // 20`` bytes each) are valid and test, everything before them is train.
A relative ``path`` is taken from the working directory. ``path: null`` (the default) uses the
shipped corpus, ``synthetic`` (see :func:`synthetic_corpus`), built in memory on first use; it is
**not** enwik8, so its numbers compare variants with each other, never with the papers' bpc.

Metric. ``bpc`` = summed next-token cross-entropy in nats / (scored tokens x ln 2). Tokens are bytes,
so on UTF-8 text with non-ASCII characters this is bits per *byte*, which is what the enwik8
literature calls bpc; on text8 (pure ASCII) bytes and characters coincide. ``acc`` is next-byte
top-1 accuracy. Bounds: ``bpc`` floor 8 (uniform over 256 bytes), chance the entropy of the scored
bytes' distribution (a model that knows byte frequencies and no context), ceiling 0; ``acc`` floor
1/256, chance the most frequent scored byte's share, ceiling 1.

Batches (causal models only, io ``lm``): input ``x = w[:-1]``, labels ``w[1:]`` for a window ``w`` of
``seq_len + 1`` bytes. Training windows start at uniformly random offsets of the train split, drawn
from the job's generator. Evaluation scores the first ``eval_tokens`` bytes of ``eval_split``
(``eval_tokens: null``: the whole split), cut into consecutive non-overlapping windows of ``seq_len``
(the remainder in a last, shorter window); the same for every job and seed. ``train.eval_batch_size``
sets windows per batch; ``train.eval_batches`` does not apply (``eval_tokens`` fixes the amount).
Caveat: every evaluation window starts with an empty context, so its first tokens are predicted from
little history and bpc is somewhat higher than the papers' sliding or recurrent-memory evaluation,
which gives every token a long context.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from harness.core.config import positive
from harness.core.errors import HarnessError
from harness.core.registry import register_task
from harness.tasks.base import IGNORE, Batch, MetricBound, TaskBase, entropy_bits

VOCAB = 256  # byte values
SYNTHETIC_BYTES = 2_000_000
SYNTHETIC_SEED = 20200419  # any fixed integer; changing it changes every synthetic-corpus number


def split_bounds(n: int) -> dict[str, tuple[int, int]]:
    """[start, end) of train / valid / test for a file of ``n`` bytes: 90% / 5% / 5%.

    For the 10^8-byte enwik8 and text8 these are exactly the standard 90M / 5M / 5M splits.
    """
    held = n // 20
    return {"train": (0, n - 2 * held), "valid": (n - 2 * held, n - held), "test": (n - held, n)}


def _size_problem(n: int, seq_len: int) -> str | None:
    b = split_bounds(n)
    train = b["train"][1] - b["train"][0]
    if train < seq_len + 1:
        return f"the train split has {train} bytes, fewer than seq_len + 1 ({seq_len + 1})"
    if b["test"][1] - b["test"][0] < 2:
        return f"the file ({n} bytes) is too small for a valid and a test split of >= 2 bytes each"
    return None


@dataclass
class CharLMConfig:
    path: str | None = None  # a local text file read as bytes; null: the shipped synthetic corpus
    seq_len: int = positive(128)  # training and evaluation window (tokens of model input)
    eval_split: Literal["valid", "test"] = "test"  # the papers' tables report test
    eval_tokens: int | None = positive(32768)  # tokens of eval_split scored; null: all of it

    def check(self) -> list[tuple[str, str]]:
        if self.path is None:
            problem = _size_problem(SYNTHETIC_BYTES, self.seq_len)
            return [("seq_len", f"too long for the synthetic corpus: {problem}")] if problem else []
        p = Path(self.path).expanduser()
        if not p.exists():
            return [("path", f"file not found: {self.path}")]
        if not p.is_file():
            return [("path", f"not a regular file: {self.path}")]
        problem = _size_problem(p.stat().st_size, self.seq_len)
        return [("path", f"{self.path}: {problem}")] if problem else []


# -- reading ---------------------------------------------------------------------------------------

_FILES: dict[tuple[str, int, int], torch.Tensor] = {}
_MAX_CACHED = 4


def load_bytes(path: str | None) -> torch.Tensor:
    """The file (or the synthetic corpus) as a uint8 tensor, read once per process.

    Cached by (resolved path, mtime, size), so a file changed on disk is read again.
    """
    if path is None:
        return _synthetic_tensor()
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise HarnessError(f"char_lm: file not found: {path}") from None
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _FILES:
        buf = bytearray(st.st_size)
        with open(p, "rb") as f:
            got = f.readinto(buf)
        if got != st.st_size:
            raise HarnessError(f"char_lm: {path}: read {got} of {st.st_size} bytes")
        while len(_FILES) >= _MAX_CACHED:
            _FILES.pop(next(iter(_FILES)))
        _FILES[key] = torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.empty(0, dtype=torch.uint8)
    return _FILES[key]


@functools.lru_cache(maxsize=1)
def _synthetic_tensor() -> torch.Tensor:
    return torch.frombuffer(bytearray(synthetic_corpus()), dtype=torch.uint8)


# -- the shipped corpus ----------------------------------------------------------------------------

_ONSETS = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "ch", "cl", "dr", "fr", "gl", "gr", "pl", "sh", "st", "th", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ea", "ou", "ie")
_CODAS = ("", "", "", "n", "r", "s", "l", "m", "nd", "st", "th", "rk", "ng")
_ACCENTS = {"a": "á", "e": "é", "o": "ö", "u": "ü", "i": "í", "n": "ñ", "c": "č", "s": "š"}
_PLACE_SUFFIX = ("ford", "heim", "ovo", "burg", "ia", "stad", "more", "port", "grad", "holm")
_DET = ("the", "the", "the", "a", "this", "that", "each", "every")
_PREP = ("of", "in", "on", "with", "from", "near", "under", "after", "before", "against", "for")
_CONJ = ("and", "but", "while", "because", "although", "so")
_SECTIONS = ("History", "Early life", "Geography", "Career", "Reception", "Legacy", "Works", "Etymology",
             "Politics", "Economy", "Culture", "Later years")


def _zipf_cum(n: int, s: float = 1.0) -> list[float]:
    acc, out = 0.0, []
    for r in range(n):
        acc += 1.0 / (r + 1) ** s
        out.append(acc)
    return out


class _Writer:
    """Wiki-like articles from a seeded stochastic grammar over an invented lexicon."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.taken: set[str] = set()  # membership only; never iterated (set order is not seeded)
        self.nouns = self._lexicon(1200, 1, 3)
        self.verbs = self._lexicon(400, 1, 2)
        self.adjs = self._lexicon(400, 1, 3)
        self.given = self._lexicon(300, 1, 2)
        self.family = self._lexicon(600, 2, 3)
        self.stems = self._lexicon(400, 1, 2)
        self.nw, self.vw, self.aw = (_zipf_cum(len(x)) for x in (self.nouns, self.verbs, self.adjs))
        self.page_id = 0

    def _lexicon(self, n: int, lo: int, hi: int) -> list[str]:
        rng = self.rng
        out: list[str] = []
        while len(out) < n:
            syllables = range(rng.randint(lo, hi))
            w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in syllables)
            if w not in self.taken and 2 < len(w) < 12:
                self.taken.add(w)
                out.append(w)
        return out

    def person(self) -> str:
        rng = self.rng
        last = rng.choice(self.family)
        if rng.random() < 0.3:  # non-ASCII letters (2-byte UTF-8), as in enwik8's foreign names
            i = rng.randrange(len(last))
            last = last[:i] + _ACCENTS.get(last[i], last[i]) + last[i + 1:]
        return f"{rng.choice(self.given).capitalize()} {last.capitalize()}"

    def place(self) -> str:
        return (self.rng.choice(self.stems) + self.rng.choice(_PLACE_SUFFIX)).capitalize()

    def article(self) -> str:
        rng = self.rng
        self.page_id += rng.randint(1, 40)  # ids increase through the file, as in a dump
        self.people = [self.person() for _ in range(rng.randint(2, 5))]
        self.places = [self.place() for _ in range(rng.randint(1, 4))]
        self.subject = self.people[0] if rng.random() < 0.6 else self.places[0]
        self.ents = self.people + self.places
        self.mentioned: list[str] = []
        self.year = rng.randint(1500, 1990)  # dates only move forward within an article
        self.past = rng.random() < 0.8  # one tense per article: verb forms must stay consistent
        out = [f"  <page>\n    <title>{self.subject}</title>\n    <id>{self.page_id}</id>\n    <text>"]
        out.append(self.paragraph(lead=True))
        for sec in rng.sample(_SECTIONS, rng.randint(1, 4)):
            out.append(f"\n\n== {sec} ==\n\n")
            out.append("\n\n".join(self.paragraph() for _ in range(rng.randint(1, 3))))
        links = [e for i, e in enumerate(self.mentioned) if e != self.subject and e not in self.mentioned[:i]]
        if links:  # copies names linked earlier in the article
            out.append("\n\n== See also ==\n")
            out.extend(f"\n* [[{e}]]" for e in links)
        out.append("</text>\n  </page>\n")
        return "".join(out)

    def paragraph(self, lead: bool = False) -> str:
        rng = self.rng
        sents = []
        if lead:
            s = f"'''{self.subject}'''"
            if self.subject in self.people:
                end = self.year + rng.randint(25, 90)
                what = f"was a {self.adj()} {self.noun()} from [[{rng.choice(self.places)}]]"
                sents.append(f"{s} ({self.year}–{end}) {what}.")
            else:
                sents.append(f"{s} is a {self.adj()} {self.noun()} {rng.choice(_PREP)} the {self.noun()}.")
            self.mentioned.append(self.subject)
        sents.extend(self.sentence() for _ in range(rng.randint(2, 6)))
        return " ".join(sents)

    def noun(self) -> str:
        return self.rng.choices(self.nouns, cum_weights=self.nw)[0]

    def adj(self) -> str:
        return self.rng.choices(self.adjs, cum_weights=self.aw)[0]

    def entity(self) -> str:
        rng = self.rng
        e = rng.choice(self.ents) if rng.random() < 0.7 else self.subject
        if e in self.mentioned:
            # a later mention of a person is often the surname alone: who it is lies far back
            short = e.split(" ")[-1]
            return short if rng.random() < 0.6 or short == e else f"[[{e}|{short}]]"
        self.mentioned.append(e)
        if e in self.people and rng.random() < 0.4:
            self.year += rng.randint(0, 6)
            return f"[[{e}]] (born {self.year} in [[{rng.choice(self.places)}]])"
        return f"[[{e}]]"

    def np(self, depth: int) -> tuple[str, bool]:
        """(noun phrase, is plural)."""
        rng = self.rng
        if rng.random() < 0.3:
            return self.entity(), False
        plural = rng.random() < 0.3
        words = ["the" if plural else rng.choice(_DET)]
        if rng.random() < 0.5:
            words.append(self.adj())
        words.append(self.noun() + ("s" if plural else ""))
        if depth < 2 and rng.random() < 0.3:
            words += [rng.choice(_PREP), self.np(depth + 1)[0]]
        return " ".join(words), plural

    def vp(self, plural: bool, depth: int) -> str:
        rng = self.rng
        v = rng.choices(self.verbs, cum_weights=self.vw)[0]
        if self.past:
            verb = v + ("d" if v.endswith("e") else "ed")
        else:  # subject-verb agreement
            verb = v if plural else v + ("es" if v.endswith(("s", "sh", "ch")) else "s")
        r = rng.random()
        if r < 0.15:
            be = ("were" if plural else "was") if self.past else ("are" if plural else "is")
            return f"{be} {self.adj()}"
        tail = f"{verb} {self.np(depth + 1)[0]}"
        if r > 0.85:
            self.year += rng.randint(1, 9)
            tail += f" in {self.year}"
        elif r > 0.7 and depth < 1:
            tail += f" ({self.clause(depth + 1)})"  # brackets that must be closed
        elif r > 0.6 and depth < 1:
            tail += f', "{self.clause(depth + 1)}"'
        return tail

    def clause(self, depth: int = 0) -> str:
        subj, plural = self.np(depth)
        return f"{subj} {self.vp(plural, depth)}"

    def sentence(self) -> str:
        s = self.clause()
        if self.rng.random() < 0.3:
            s += f", {self.rng.choice(_CONJ)} {self.clause(1)}"
        return s[0].upper() + s[1:] + "."


@functools.lru_cache(maxsize=2)
def synthetic_corpus(n_bytes: int = SYNTHETIC_BYTES, seed: int = SYNTHETIC_SEED) -> bytes:
    """The shipped corpus ``synthetic``: ``n_bytes`` of wiki-like UTF-8 text from a seeded grammar.

    Deterministic (pure Python ``random.Random(seed)``, no hashing or set order), built in memory in
    about a second, never written to disk. It imitates enwik8's format rather than its content: a
    MediaWiki XML dump of articles (``<page>``, ``<title>``, increasing ``<id>``, ``'''bold'''``,
    ``== headings ==``, ``[[links|aliases]]``) whose prose comes from a stochastic grammar over an
    invented Zipf-distributed lexicon (about 3,000 words with regular plural and past-tense endings)
    and accented names (about 0.4% of the bytes are non-ASCII, in multi-byte UTF-8 characters).

    Why it is a fair CPU-scale stand-in: like real text it rewards both local modelling (spelling of
    a fixed lexicon, morphology, subject-verb agreement, one tense per article) and long context:
    each article names its own people and places and refers back to them (often by surname alone),
    brackets, quotes and link markup must be closed, dates only increase within an article, and a
    closing "See also" list repeats the article's links in order of first mention. A model that uses
    more context or depth therefore scores lower bpc, which is what the comparisons need. For scale,
    ``xz -9`` compresses it to about 1.7 bits per byte and ``zlib -9`` to about 2.2 (measured here).
    It is not enwik8: its absolute bpc says nothing about the papers' numbers.
    """
    w = _Writer(random.Random(seed))
    parts, size = ["<mediawiki>\n"], 12
    while size < n_bytes:
        parts.append(w.article())
        size += len(parts[-1].encode("utf-8"))
    return "".join(parts).encode("utf-8")[:n_bytes]


# -- the task --------------------------------------------------------------------------------------


_ARCHS = ("decoder", "encoder", "encdec")


def model_is_causal(cfg: Any, model_cls: type) -> bool | None:
    """Whether a model config describes a causal LM, decided without building the model.

    A vanilla-style ``arch`` decides first (only ``decoder`` is causal; ``encdec`` is seq2seq whatever
    its ``causal`` says); else an explicit ``causal`` key; else a class-level ``io``. ``None``: cannot
    tell here, and the batch layout refuses a non-causal model at run time.
    """
    arch = getattr(cfg, "arch", None)
    if arch in _ARCHS:
        return arch == "decoder"
    causal = getattr(cfg, "causal", None)
    if isinstance(causal, bool):
        return causal
    io = getattr(model_cls, "io", None)
    return io == "lm" if isinstance(io, str) else None


@register_task("char_lm", config=CharLMConfig)
class CharLM(TaskBase):
    """Character-level (byte) language modelling on enwik8/text8-format files, bits per character."""

    metric = "bpc"
    higher_is_better = False
    ios = ("lm",)
    vocab_size = VOCAB

    def __init__(self, cfg: CharLMConfig) -> None:
        self.cfg = cfg
        self._data: torch.Tensor | None = None  # read on first use: suite loading never touches it

    @property
    def corpus(self) -> str:
        """``synthetic`` for the shipped corpus, else the file's path."""
        return "synthetic" if self.cfg.path is None else self.cfg.path

    def data(self) -> torch.Tensor:
        if self._data is None:
            self._data = load_bytes(self.cfg.path)
            problem = _size_problem(len(self._data), self.cfg.seq_len)
            if problem:
                raise HarnessError(f"char_lm: {self.corpus}: {problem}")
        return self._data

    def split(self, name: Literal["train", "valid", "test"]) -> torch.Tensor:
        lo, hi = split_bounds(len(self.data()))[name]
        return self.data()[lo:hi]

    # -- harness API -------------------------------------------------------------------------------
    def model_keys(self) -> dict[str, int]:
        return {"vocab_size": VOCAB, "max_len": self.cfg.seq_len}

    def check_model(self, cfg: Any, model_cls: type) -> str | None:
        if model_is_causal(cfg, model_cls) is False:
            arch = getattr(cfg, "arch", None)
            what = (f"arch '{arch}' (use arch: decoder)" if arch in _ARCHS
                    else "causal: false (set causal: true)")
            return f"char_lm needs a causal language model (next-token prediction); this one is {what}"
        return super().check_model(cfg, model_cls)

    def make(self, n: int, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch`` training windows of ``n`` inputs at uniform random offsets: (inputs, next bytes)."""
        train = self.split("train")
        if len(train) < n + 1:
            raise HarnessError(f"char_lm: the train split ({len(train)} bytes) is shorter than {n + 1}")
        starts = torch.randint(0, len(train) - n, (batch,), generator=gen)
        w = train[starts[:, None] + torch.arange(n + 1)].long()  # (B, n+1)
        return w[:, :-1], w[:, 1:]

    def layout(self, x: torch.Tensor, y: torch.Tensor, io: str) -> Batch:
        if io != "lm":
            raise ValueError(f"char_lm needs a causal language model (io 'lm'), got io '{io}'")
        return Batch.of_tokens({"x": x}, y.clone())

    def train_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        return self.layout(*self.make(self.cfg.seq_len, batch_size, gen), io)

    def eval_windows(self) -> list[tuple[int, int]]:
        """(offset in the eval split, length) of each evaluation window; their targets tile the
        first ``eval_tokens`` scoreable bytes without overlap."""
        n_split = len(self.split(self.cfg.eval_split))
        scored = n_split - 1 if self.cfg.eval_tokens is None else min(self.cfg.eval_tokens, n_split - 1)
        step = self.cfg.seq_len
        return [(s, min(step, scored - s)) for s in range(0, scored, step)]

    def eval_sets(self, n_batches: int, batch_size: int, io: str, seed: int) -> dict[str, list[Batch]]:
        """The same windows for every job and seed (``n_batches`` and ``seed`` do not apply)."""
        split = self.split(self.cfg.eval_split)
        wins = self.eval_windows()
        full = [s for s, n in wins if n == self.cfg.seq_len]
        batches: list[Batch] = []
        for i in range(0, len(full), batch_size):
            starts = torch.tensor(full[i : i + batch_size])
            w = split[starts[:, None] + torch.arange(self.cfg.seq_len + 1)].long()  # (b, L+1)
            batches.append(self.layout(w[:, :-1], w[:, 1:], io))
        if wins and wins[-1][1] < self.cfg.seq_len:  # the remainder, a shorter window of its own
            s, n = wins[-1]
            w = split[s : s + n + 1].long()[None]
            batches.append(self.layout(w[:, :-1], w[:, 1:], io))
        return {"": batches}

    def profile_batch(self, seq_len: int, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        """Random bytes, exactly ``seq_len`` inputs: cost does not depend on content, and the
        corpus is not read."""
        x = torch.randint(0, VOCAB, (batch_size, seq_len), generator=gen)
        labels = torch.randint(0, VOCAB, (batch_size, seq_len), generator=gen)
        if io == "seq2seq":
            y = torch.randint(0, VOCAB, (batch_size, seq_len), generator=gen)
            return Batch({"x": x, "y": y}, labels, n_tokens=2 * seq_len, seq_len=2 * seq_len)
        return Batch({"x": x}, labels, n_tokens=seq_len, seq_len=seq_len)

    @staticmethod
    def score(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int, int, int]:
        """(summed nats, scored tokens, right top-1 predictions, scored tokens); sums over batches
        add up. Float64, so that a uniform model gives exactly log2(256) = 8 bits."""
        mask = labels != IGNORE
        flat = logits.reshape(-1, logits.shape[-1]).double()
        nats = F.cross_entropy(flat, labels.reshape(-1), ignore_index=IGNORE, reduction="sum")
        right = ((logits.argmax(-1) == labels) & mask).sum()
        n = int(mask.sum())
        return float(nats), n, int(right), n

    def metrics(self, counts: tuple[float, int, int, int], suffix: str) -> dict[str, float]:
        nats, n, right, _ = counts
        return {f"bpc{suffix}": nats / max(n, 1) / math.log(2), f"acc{suffix}": right / max(n, 1)}

    def metric_bounds(self) -> dict[str, MetricBound]:
        """From the bytes evaluation scores: the targets of :meth:`eval_windows`, which tile the
        evaluation split's bytes 1 .. (scored tokens)."""
        scored = sum(n for _, n in self.eval_windows())
        counts = torch.bincount(self.split(self.cfg.eval_split)[1 : scored + 1].long(), minlength=VOCAB)
        return {"bpc": MetricBound(math.log2(VOCAB), entropy_bits(counts), 0.0, higher_is_better=False),
                "acc": MetricBound(1 / VOCAB, float(counts.max()) / scored, 1.0)}
