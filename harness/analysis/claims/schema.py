"""The claims of ``harness/literature.yaml`` as typed data, each refused with file:line:key when malformed.

Beside each paper, ``claims:`` lists what the paper (or its official code, or the research notes) says
that this harness can test. A claim has an ``id``, who makes it (``by``: ``paper``, ``code`` or
``notes``: the notes' own opinions are marked as the notes'), ``source`` (table, section, README),
``text`` in English and Chinese, optionally ``about`` (the config keys the comparison is about, where
both arms have them: ``[norm]`` for post-LN against pre-LN; see ``harness.suite.differ`` for the rule),
and ``test``, whose ``kind`` chooses one of:

- ``metric``: a paired comparison over seeds of ``variant`` with ``reference`` on (suite, task, metric);
  ``expect`` ``higher`` / ``lower`` (the difference, beyond seed noise), ``same`` (within ``margin``),
  ``not_higher`` / ``not_lower`` (non-inferiority: worse by less than ``margin``). ``reference_task``
  compares one variant across two tasks (ACT's ponder steps on an easy and a hard task).
- ``cost_ratio``: ``quantity`` of ``variant`` over each of ``references`` at one size ``at`` of a cost
  sweep, below ``below``; the first reference is the paper's own baseline and decides the verdict, the
  others say whether the claim also holds against them.
- ``exponent``: the fitted k of ``quantity ∝ x^k`` over ``range`` (``x``: ``seq_len`` or a dotted
  config key such as ``model.n_layers``), at most ``max`` and at least ``min``.
- ``count``: exact counts (``params``, ``params_applied``, ``flops_fwd``) of ``variant`` against
  ``reference`` (``less`` with a ``ratio`` bound, ``equal``, ``greater``) or against a printed ``value``
  (``about``, within ``tolerance``).
- ``layout``: the shape of a train x eval table (Reformer's Table 2): the drop of ``metric`` from eval
  mode ``high`` to ``low`` is larger for the ``fragile`` variants than for the ``robust`` ones.
- ``none``: not testable with what this harness builds; ``needs`` says what it would take.

Verdicts are computed from result rows (``harness.analysis.claims.verdicts``), never written here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.core.config import build
from harness.core.errors import InputError
from harness.core.yamlio import load as load_yaml

__all__ = [
    "CLAIM_KINDS", "CLAIMS_PATH", "Claim", "CostRatioTest", "CountCheck", "CountTest", "ExponentTest",
    "LayoutTest", "MetricTest", "NoTest", "Reference", "Text", "load_claims",
]

CLAIMS_PATH = Path(__file__).resolve().parents[2] / "literature.yaml"
Quantity = Literal["step_ms", "act_bytes", "mem_bytes", "tokens_per_s"]


@dataclass
class Text:
    en: str
    zh: str

    def get(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


@dataclass
class MetricTest:
    kind: Literal["metric"]
    suite: str
    task: str
    variant: str
    reference: str
    expect: Literal["higher", "lower", "same", "not_higher", "not_lower"]
    metric: str | None = None  # default: the rows' headline metric
    reference_task: str | None = None  # compare the variant on two tasks (paired by seed)
    margin: float = field(default=0.0, metadata={"min": 0.0})

    def check(self) -> list[tuple[str, str]]:
        if self.variant == self.reference and self.reference_task in (None, self.task):
            return [("reference", "must differ from variant (or give a reference_task)")]
        return []


@dataclass
class Reference:
    variant: str
    what: Any  # Text: what the reference is, in words ("materialised attention")


@dataclass
class CostRatioTest:
    kind: Literal["cost_ratio"]
    suite: str
    quantity: Quantity
    variant: str
    references: list[Any]  # Reference
    at: int = field(metadata={"min": 1})
    below: float = field(default=1.0, metadata={"min": 0.0})
    task: str | None = None  # the cost sweep's task (default: any)

    def check(self) -> list[tuple[str, str]]:
        return [] if self.references else [("references", "at least one reference")]


@dataclass
class ExponentTest:
    kind: Literal["exponent"]
    suite: str
    quantity: Quantity
    variant: str
    range: list[float]
    max: float | None = None
    min: float | None = None
    task: str | None = None
    x: str = "seq_len"  # or a dotted config key of the rows (model.n_layers)

    def check(self) -> list[tuple[str, str]]:
        if len(self.range) != 2 or not self.range[0] < self.range[1]:
            return [("range", f"must be [lo, hi] with lo < hi, got {self.range}")]
        if self.max is None and self.min is None:
            return [("max", "give max, min or both")]
        return []


@dataclass
class CountCheck:
    quantity: Literal["params", "params_applied", "flops_fwd"]
    expect: Literal["less", "equal", "greater", "about"]
    ratio: float | None = None  # less: variant / reference below this; greater: above it
    value: float | None = None  # about: the printed number
    tolerance: float = field(default=0.01, metadata={"min": 0.0})  # equal, about: relative

    def check(self) -> list[tuple[str, str]]:
        if self.expect == "about" and self.value is None:
            return [("value", "expect: about needs the printed value")]
        return []


@dataclass
class CountTest:
    kind: Literal["count"]
    suite: str
    variant: str
    checks: list[Any]  # CountCheck
    reference: str | None = None
    task: str | None = None  # counts depend on the task's vocabulary: default every row of the variant

    def check(self) -> list[tuple[str, str]]:
        if not self.checks:
            return [("checks", "at least one check")]
        if self.reference is None and any(c.expect != "about" for c in self.checks):
            return [("reference", "less/equal/greater compare with a reference variant")]
        return []


@dataclass
class LayoutTest:
    kind: Literal["layout"]
    suite: str
    task: str
    metric: str
    robust: list[str]
    fragile: list[str]
    high: str  # eval mode where every model does well
    low: str  # eval mode where the fragile ones should drop

    def check(self) -> list[tuple[str, str]]:
        return [] if self.robust and self.fragile else [("robust", "robust and fragile may not be empty")]


@dataclass
class NoTest:
    kind: Literal["none"]
    needs: Any  # Text


Test = MetricTest | CostRatioTest | ExponentTest | CountTest | LayoutTest | NoTest
CLAIM_KINDS: dict[str, type] = {"metric": MetricTest, "cost_ratio": CostRatioTest, "exponent": ExponentTest,
                                "count": CountTest, "layout": LayoutTest, "none": NoTest}
_NESTED: dict[tuple[type, str], type] = {(CostRatioTest, "references"): Reference,
                                         (CountTest, "checks"): CountCheck}


@dataclass
class Claim:
    """One testable claim of one paper; ``paper`` is the paper's id in literature.yaml."""

    id: str
    by: Literal["paper", "code", "notes"]
    source: str
    text: Any  # Text
    test: Any  # one of the test classes above
    # the keys the claim is about, beyond the model itself and the keys only one arm's model has: a
    # model key (``norm``) or a train key (``train.steps``); any other key in which the arms differ is
    # shown as a confound (harness.suite.differ)
    about: list[str] = field(default_factory=list)
    paper: str = ""


def _locator(locs: dict[tuple[Any, ...], str], src: str) -> Any:
    def locate(dotted: str) -> str:
        parts: list[Any] = []
        for p in re.split(r"\.|\[(\d+)\]", dotted):
            if p:
                parts.append(int(p) if p.isdigit() else p)
        while parts and tuple(parts) not in locs:
            parts.pop()
        return locs.get(tuple(parts), src)
    return locate


def _build_test(data: Any, prefix: str, locate: Any) -> Any:
    kind = data.get("kind") if isinstance(data, dict) else None
    cls = CLAIM_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        key = f"{prefix}.kind"
        raise InputError(locate(key), key, f"must be one of {', '.join(sorted(CLAIM_KINDS))}, got {kind!r}")
    values = dict(data)
    for (owner, name), inner in _NESTED.items():
        if owner is cls and name in values:
            if not isinstance(values[name], list):
                raise InputError(locate(f"{prefix}.{name}"), f"{prefix}.{name}", "expected a list")
            values[name] = [build(inner, _texts(v, inner, f"{prefix}.{name}.{i}", locate),
                                  f"{prefix}.{name}.{i}", locate, what=name)
                            for i, v in enumerate(values[name])]
    values = _texts(values, cls, prefix, locate)
    test = build(cls, values, prefix, locate, what=f"a {kind} test")
    return test


def _texts(data: Any, cls: type, prefix: str, locate: Any) -> Any:
    """Build the {en, zh} mappings of ``data`` (``what``, ``needs``, ``text``) into :class:`Text`."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for key in ("what", "needs", "text"):
        if key in out and key in getattr(cls, "__dataclass_fields__", {}):
            out[key] = build(Text, out[key], f"{prefix}.{key}", locate, what="a text {en, zh}")
    return out


def _build_claim(data: Any, prefix: str, paper: str, locate: Any) -> Claim:
    if not isinstance(data, dict):
        raise InputError(locate(prefix), prefix, "a claim is a mapping")
    values = _texts(data, Claim, prefix, locate)
    if "test" in values:
        values["test"] = _build_test(values["test"], f"{prefix}.test", locate)
    if "paper" in values:
        raise InputError(locate(f"{prefix}.paper"), f"{prefix}.paper", "set by the paper the claim is under")
    claim = build(Claim, values, prefix, locate, what="a claim")
    claim.paper = paper
    return claim


def load_claims(path: Path | None = None) -> list[Claim]:
    """Every claim of literature.yaml, in the file's order; a malformed one raises :class:`InputError`."""
    path = Path(path or CLAIMS_PATH)
    data, locs = load_yaml(path, display=path.name if path == CLAIMS_PATH else str(path))
    locate = _locator(locs, str(path))
    papers = data.get("papers", []) if isinstance(data, dict) else []
    claims: list[Claim] = []
    seen: dict[str, str] = {}
    for i, paper in enumerate(papers):
        raw = paper.get("claims") if isinstance(paper, dict) else None
        if raw is None:
            continue
        prefix = f"papers.{i}.claims"
        if not isinstance(raw, list):
            raise InputError(locate(prefix), prefix, "claims is a list")
        for j, c in enumerate(raw):
            claim = _build_claim(c, f"{prefix}.{j}", str(paper.get("id")), locate)
            if claim.id in seen:
                key = f"{prefix}.{j}.id"
                first = seen[claim.id]
                raise InputError(locate(key), key, f"duplicate claim id {claim.id!r} (first at {first})")
            seen[claim.id] = locate(f"{prefix}.{j}.id")
            claims.append(claim)
    return claims
