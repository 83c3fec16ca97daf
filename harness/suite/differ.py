"""How two resolved configs differ, key by key: what a variant changes against its baseline, and what
the two arms of a claim's comparison differ in besides what the claim is about.

An *arm* is a registered model's name with its resolved model config and the train config it ran
with (a job's, or a result row's ``config``), flattened to one mapping: ``model`` (the model's name),
each model key, and ``train.<key>`` for each train key. :func:`differences` lists the keys whose values
differ, each marked ``shared`` when both arms have the key (the same knob set two ways: a confound
unless the comparison is about it) or not (a key that only one arm's model has: what makes it that
model, such as sandwich's ``k`` or ALBERT's ``share``). :func:`confounds` applies the claims' rule
(docs/design.md, "The claims ledger"): the model's name, the keys only one arm has, the keys a claim
lists in ``about`` and the key a budget-matched arm was solved on are the comparison's own; every other
differing key is a confound. No torch here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MISSING", "KeyDiff", "arm", "confounds", "differences", "show_value"]


class _Missing:
    def __repr__(self) -> str:
        return "—"


MISSING: Any = _Missing()  # an arm without the key


@dataclass(frozen=True)
class KeyDiff:
    """One key in which an arm differs from the reference arm."""

    key: str
    value: Any  # this arm's (MISSING: its model has no such key)
    base: Any  # the reference's
    shared: bool  # both arms have the key

    def text(self, base_name: str = "") -> str:
        """``norm: pre vs post`` (``vs post (interleaved)`` with the reference's name)."""
        ref = f"{show_value(self.base)}" + (f" ({base_name})" if base_name else "")
        return f"{self.key}: {show_value(self.value)} vs {ref}"


def show_value(v: Any) -> str:
    """A config value as a suite file would write it (``true``, ``null``, ``[8, 16]``)."""
    if v is MISSING:
        return "—"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(show_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}: {show_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def arm(model: Any, model_cfg: Mapping[str, Any] | None, train: Mapping[str, Any] | None = None,
        skip_train: Iterable[str] = ("eval_modes",)) -> dict[str, Any]:
    """One arm as a flat mapping: ``model``, the model keys, ``train.<key>`` (``skip_train`` left out)."""
    out: dict[str, Any] = {"model": model}
    out.update(dict(model_cfg or {}))
    skipped = set(skip_train)
    out.update({f"train.{k}": v for k, v in dict(train or {}).items() if k not in skipped})
    return out


def differences(mine: Mapping[str, Any], base: Mapping[str, Any]) -> list[KeyDiff]:
    """The keys in which ``mine`` differs from ``base``: ``model`` first, then the model keys both have,
    then those only one has (``mine``'s order, then ``base``'s), then the train keys. A key one arm lacks
    and the other leaves at null tells nothing and is left out."""
    keys = list(dict.fromkeys([*mine, *base]))
    keys.sort(key=lambda k: (k != "model", k.startswith("train."), not (k in mine and k in base)))
    out = []
    for k in keys:
        a, b = mine.get(k, MISSING), base.get(k, MISSING)
        if _same(a, b) or {id(a), id(b)} == {id(MISSING), id(None)}:
            continue
        out.append(KeyDiff(k, a, b, shared=k in mine and k in base))
    return out


def confounds(diffs: Iterable[KeyDiff], about: Iterable[str] = (),
              matched: Iterable[str] = ()) -> list[KeyDiff]:
    """The differences a comparison is not about: keys both arms have, other than ``model``, the keys
    listed in ``about`` (a model key, or ``train.<key>``) and the keys a budget match solved
    (``matched``)."""
    own = {"model", *about, *matched}
    return [d for d in diffs if d.shared and d.key not in own]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)
