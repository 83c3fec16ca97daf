"""Comparing a measurement with the baseline: one :class:`Finding` per model and quantity, and the
table of what moved (the rules are in the module docstring of :mod:`harness.cli.gate`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.cli.gate.wallclock import EXACT, MEMORY

MEM_TOLERANCE = 0.0
CUDA_MEM_TOLERANCE = 0.02


@dataclass
class Finding:
    """One compared quantity of one model."""

    model: str
    quantity: str
    baseline: Any
    now: Any
    verdict: str  # same | ok | improved | new | gone | REGRESSION
    why: str = ""

    @property
    def regression(self) -> bool:
        return self.verdict == "REGRESSION"

    def change(self) -> str:
        b, n = self.baseline, self.now
        if isinstance(b, (int, float)) and isinstance(n, (int, float)) and not isinstance(b, bool) and b:
            digits = 2 if self.quantity == "instructions" else 1
            return f"{(n - b) / abs(b) * 100:+.{digits}f}%"
        return ""


def compare(
    baseline: dict[str, dict[str, Any]], now: dict[str, dict[str, Any]], *, time_tolerance: float,
    reference: str, instructions_tolerance: float | None = None, mem_tolerance: float = MEM_TOLERANCE,
) -> list[Finding]:
    """Findings for every model and quantity. ``instructions_tolerance`` None: the baseline's counts do
    not apply here (another machine or build), and instructions are not compared."""
    out: list[Finding] = []
    for name, cur in now.items():
        base = baseline.get(name)
        if base is None:
            out.append(Finding(name, "model", None, cur.get("model"), "new",
                               "not in the baseline (--update adds it)"))
            continue
        if base.get("shape") != cur.get("shape"):
            out.append(Finding(name, "shape", base.get("shape"), cur.get("shape"), "REGRESSION",
                               "profiled on another input, not comparable (--update if intended)"))
            continue
        for q in EXACT:
            same = base.get(q) == cur.get(q)
            out.append(Finding(name, q, base.get(q), cur.get(q), "same" if same else "REGRESSION",
                               "" if same else "changed (must be exact)"))
        out += [memory_finding(name, q, base, cur, mem_tolerance) for q in MEMORY]
        if instructions_tolerance is not None:
            out += instruction_findings(name, base, cur, instructions_tolerance)
        out += time_findings(name, base, cur, reference, time_tolerance)
    for name, base in baseline.items():
        if name not in now:
            out.append(Finding(name, "model", base.get("model"), None, "gone",
                               "in the baseline, not in the suite"))
    return out


def memory_finding(name: str, q: str, base: dict[str, Any], cur: dict[str, Any], tol: float) -> Finding:
    b, n = base.get(q), cur.get(q)
    if q == "mem_bytes" and base.get("mem_kind") != cur.get("mem_kind"):
        return Finding(name, q, base.get("mem_kind"), cur.get("mem_kind"), "REGRESSION",
                       "measured another way (mem_kind): use the baseline's device or --update")
    tol = CUDA_MEM_TOLERANCE if cur.get("mem_kind") == "cuda_allocated" else tol
    if b is None or n is None or n == b:
        return Finding(name, q, b, n, "same")
    if n > b * (1 + tol):
        return Finding(name, q, b, n, "REGRESSION", "more memory than the baseline")
    if n < b * (1 - tol):
        return Finding(name, q, b, n, "improved", "less memory (--update to keep it)")
    return Finding(name, q, b, n, "ok", f"within {tol:.0%}")


def instruction_findings(name: str, base: dict[str, Any], cur: dict[str, Any], tol: float) -> list[Finding]:
    """Instructions per training step: more than ``tol`` (a fraction) above the baseline fails."""
    b, n = base.get("instructions"), cur.get("instructions")
    if b is None or n is None:
        return []
    if n > b * (1 + tol):
        return [Finding(name, "instructions", b, n, "REGRESSION",
                        f"more instructions per training step than the baseline (tolerance {tol:.2%})")]
    if n < b * (1 - tol):
        return [Finding(name, "instructions", b, n, "improved",
                        "fewer instructions per training step (--update to keep it)")]
    return [Finding(name, "instructions", b, n, "same" if n == b else "ok", f"within ±{tol:.2%}")]


def time_findings(name: str, base: dict[str, Any], cur: dict[str, Any], reference: str,
                  tol: float) -> list[Finding]:
    """The step-time ratio: a regression only when the whole interval of this run lies more than ``tol``
    above the baseline's ratio (an improvement: the whole interval more than ``tol`` below)."""
    ref = cur.get("reference", reference)
    if name == ref:
        return []
    if base.get("reference", reference) != ref:
        return [Finding(name, "reference", base.get("reference", reference), ref, "REGRESSION",
                        "timed against another model, not comparable (--update if intended)")]
    b, n = base.get("time_rel"), cur.get("time_rel")
    if b is None or n is None:
        return []
    low, high = cur.get("time_rel_low", n), cur.get("time_rel_high", n)
    interval = f"interval {low:.3f}-{high:.3f}"
    if low > b * (1 + tol):
        return [Finding(name, "time_rel", b, n, "REGRESSION",
                        f"slower relative to {ref} by more than {tol:.0%} ({interval})")]
    if high < b * (1 - tol):
        return [Finding(name, "time_rel", b, n, "improved", f"faster relative to {ref} ({interval})")]
    return [Finding(name, "time_rel", b, n, "ok", f"within ±{tol:.0%} ({interval})")]


def fmt(v: Any, quantity: str) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if quantity == "time_rel":
        return f"{v:.3f}x"
    return f"{v:,}" if isinstance(v, int) else f"{v:.4g}"


def findings_table(findings: list[Finding], show_all: bool = False) -> str:
    """What moved (every time ratio and instruction count, and any other quantity not identical)."""
    from tabulate import tabulate

    shown = ("time_rel", "instructions")
    rows = [[f.model, f.quantity, fmt(f.baseline, f.quantity), fmt(f.now, f.quantity), f.change(),
             f.verdict + (f": {f.why}" if f.why else "")]
            for f in findings if show_all or f.verdict != "same" or f.quantity in shown]
    if not rows:
        return "nothing moved"
    return tabulate(rows, headers=["model", "quantity", "baseline", "now", "change", "verdict"])


__all__ = ["CUDA_MEM_TOLERANCE", "Finding", "MEM_TOLERANCE", "compare", "findings_table", "fmt",
           "instruction_findings", "memory_finding", "time_findings"]
