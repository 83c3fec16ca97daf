"""Small value helpers of the report: fixed number formats, total sort orders, robust reductions.

Every format is fixed (no locale, no repr of floats), so the same results give byte-identical text.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable
from typing import Any

__all__ = [
    "DASH", "finite", "fmt_bytes", "fmt_count", "fmt_diff", "fmt_gflops", "fmt_mean", "fmt_mfu", "fmt_ms",
    "fmt_p", "fmt_rate", "in_order", "median", "natural_key", "scalar_key", "sig", "slug", "uniq",
]

DASH = "—"  # a measured cell without a measurement


def finite(x: Any) -> bool:
    """A number (not a bool) with a finite float value."""
    if x is None or isinstance(x, bool):
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------------------ orders
def natural_key(s: Any) -> tuple[tuple[int, int, str], ...]:
    """Sort key putting ``k2`` before ``k10``."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", str(s)) if p)


def in_order(names: Iterable[Any], order: Iterable[str] = ()) -> list[str]:
    """``names`` in the order of ``order`` (a suite file's variants), the others after them in natural
    order."""
    rank = {str(n): i for i, n in enumerate(order)}
    return sorted({str(n) for n in names}, key=lambda n: (rank.get(n, len(rank)), natural_key(n)))


def scalar_key(x: Any) -> tuple[int, float, str]:
    """Total order over mixed scalars (None first, numbers by value, then strings)."""
    if x is None:
        return (0, 0.0, "")
    if finite(x):
        return (1, float(x), "")
    return (2, 0.0, str(x))


def median(values: Iterable[Any]) -> float | None:
    """Median of the finite values; None when there is none."""
    xs = sorted(float(v) for v in values if finite(v))
    return statistics.median(xs) if xs else None


def uniq(values: Iterable[Any]) -> list[Any]:
    """The distinct non-null values, in :func:`scalar_key` order."""
    return sorted({v for v in values if v is not None}, key=scalar_key)


def slug(*parts: Any) -> str:
    """A file-name-safe name joining ``parts`` with ``-``."""
    return "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", str(p)).strip("_") or "x" for p in parts)


# ----------------------------------------------------------------------------------------- numbers
def sig(x: float, n: int = 3) -> str:
    """``x`` rounded to ``n`` significant digits, written without an exponent."""
    if x == 0:
        return "0"
    r = float(f"{x:.{n}g}")
    if r == 0:
        return "0"
    decimals = max(0, n - 1 - math.floor(math.log10(abs(r))))
    return f"{r:.{decimals}f}"


def fmt_count(x: Any) -> str:
    """Parameter counts: 812, 12.3K, 63.1M, 1.20B."""
    if not finite(x):
        return DASH
    x = float(x)
    for div, suffix, decimals in ((1e9, "B", 2), (1e6, "M", 1), (1e3, "K", 1)):
        if round(abs(x) / div, decimals) >= 1:  # 999,960 prints as 1.0M, not 1000.0K
            return f"{x / div:.{decimals}f}{suffix}"
    return f"{x:.0f}"


def fmt_gflops(x: Any) -> str:
    """FLOPs as GFLOPs with 3 significant digits."""
    return sig(float(x) / 1e9) if finite(x) else DASH


def fmt_bytes(x: Any) -> str:
    """Bytes in binary units: 512 B, 3.5 KiB, 12.3 MiB, 1.25 GiB."""
    if not finite(x):
        return DASH
    x = float(x)
    if abs(x) >= 2**30:
        return f"{x / 2**30:.2f} GiB"
    if abs(x) >= 2**20:
        return f"{x / 2**20:.1f} MiB"
    if abs(x) >= 2**10:
        return f"{x / 2**10:.1f} KiB"
    return f"{x:.0f} B"


def fmt_rate(x: Any) -> str:
    """Throughput with 3 significant digits and a K/M suffix."""
    if not finite(x):
        return DASH
    x = float(x)
    for div, suffix in ((1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            return sig(x / div) + suffix
    return sig(x)


def fmt_ms(x: Any) -> str:
    """Milliseconds with 3 significant digits."""
    return sig(float(x)) if finite(x) else DASH


def fmt_mfu(x: Any) -> str:
    """A fraction of the peak as a percentage with 3 significant digits."""
    return sig(100.0 * float(x)) + "%" if finite(x) else DASH


def fmt_p(p: float) -> str:
    """A p value with 4 decimals, or ``<0.0001``."""
    if not finite(p):
        return DASH
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def fmt_mean(mean: float, hw: float, n: int) -> str:
    """``mean ± half width`` with 4 decimals (no interval for one value)."""
    if n == 0 or not finite(mean):
        return DASH
    return f"{mean:.4f} ± {hw:.4f}" if finite(hw) else f"{mean:.4f} (no CI, n=1)"


def fmt_diff(diff: float, hw: float) -> str:
    """A signed difference ``± half width`` with 4 decimals."""
    if not finite(diff):
        return DASH
    return f"{diff:+.4f} ± {hw:.4f}" if finite(hw) else f"{diff:+.4f}"
