"""The gate's baseline file: reading and writing it, what it was made from (commit, reason) and the
machine and build its instruction counts hold for."""

from __future__ import annotations

import datetime as dt
import json
import platform
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError

FORMAT = 2
# what an instruction count depends on besides the code: a baseline's counts apply where all of these
# are the same (the CPU valgrind presents follows the host's, and the libraries and Python take the paths)
MACHINE_KEYS = ("arch", "cpu", "cpu_capability", "counted_capability", "python", "valgrind", "libraries")


def machine_kind(counted_capability: str | None) -> dict[str, Any]:
    """This machine and build, as a baseline records it (``counted_capability``: the instruction set
    torch dispatched to under valgrind, which presents no AVX-512)."""
    from harness.core.device import machine
    from harness.measure.instructions import valgrind_version
    from harness.results.provenance import library_versions

    here = machine("cpu")
    return {"arch": platform.machine(), "cpu": here["cpu"], "cpu_capability": here["cpu_capability"],
            "counted_capability": counted_capability, "python": platform.python_version(),
            "valgrind": valgrind_version(), "libraries": library_versions()}


def does_not_apply(base: dict[str, Any] | None, here: dict[str, Any]) -> str | None:
    """Why a baseline's instruction counts do not hold on this machine and build (None: they do)."""
    if not base:
        return "the baseline has no instruction counts"
    diffs = []
    for key in MACHINE_KEYS:
        b, h = base.get(key), here.get(key)
        if key == "libraries" and isinstance(b, dict) and isinstance(h, dict):
            diffs += [f"{lib} {b.get(lib)} -> {h.get(lib)}" for lib in sorted({*b, *h})
                      if b.get(lib) != h.get(lib)]
        elif b != h:
            diffs.append(f"{key} {b} -> {h}")
    return "; ".join(diffs) or None


def provenance(device: Any) -> dict[str, Any]:
    import torch

    from harness.core.device import device_name
    from harness.core.version import __version__

    return {
        "device": device.type, "device_name": device_name(device.type), "torch_version": torch.__version__,
        "harness_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
    }


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"--baseline {path}: no such file "
                           "(make one with 'harness check --update --reason TEXT')") from None
    except (OSError, json.JSONDecodeError) as e:
        raise HarnessError(f"--baseline {path}: not a readable JSON file ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("models"), dict):
        raise HarnessError(f"--baseline {path}: not a harness check baseline (format {FORMAT}); "
                           "regenerate it with 'harness check --update --reason TEXT'")
    return data


def previous_baseline(path: Path, update: bool) -> dict[str, Any] | None:
    """The baseline to compare with; with ``--update`` it only supplies defaults and a comparison, and a
    missing or broken one is replaced."""
    if not update:
        return load_baseline(path)
    try:
        return load_baseline(path) if path.exists() else None
    except HarnessError:
        return None


def write_baseline(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


__all__ = ["FORMAT", "MACHINE_KEYS", "does_not_apply", "load_baseline", "machine_kind", "previous_baseline",
           "provenance", "write_baseline"]
