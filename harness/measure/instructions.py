"""Instructions a training step executes, counted by valgrind's callgrind: a measure of speed that does
not depend on what else the machine is doing.

A process started by :func:`callgrind_command` runs under ``valgrind --tool=callgrind
--instr-atstart=no``: nothing is instrumented while it imports torch and builds its models. Inside it,
:class:`Callgrind` sends callgrind's client requests through the small C extension that pytest-codspeed
ships (``pytest_codspeed/instruments/hooks/dist_instrument_hooks``, MIT licence; loaded from its file,
without importing pytest-codspeed's pytest plugin): :meth:`Callgrind.begin` switches instrumentation on
once (switching it costs a flush of every translation valgrind made, so it stays on from then on), and
:meth:`Callgrind.count` dumps what ran so far under a throwaway name, runs the function and dumps
again under the count's name (``CALLGRIND_DUMP_STATS_AT``; a dump starts the counts afresh). What runs
between two counts (model building, warm-up steps) is counted and thrown away. :func:`read_counts`
reads each dump's total instruction count (``Ir``) back by name.

The counts are deterministic given the code, the libraries, the CPU valgrind presents and the pinned
environment of :data:`COUNT_ENV` (one thread everywhere, a fixed string-hash seed): torch and Python take
the same paths in every run.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HOOKS_DIST = "pytest-codspeed"
HOOKS_PACKAGE = "pytest_codspeed"
HOOKS_MODULE = "dist_instrument_hooks"  # the extension's module name (its PyInit_ symbol)
# one thread in every library and a fixed hash seed: the same work, the same way, in every run
COUNT_ENV = {"PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "OPENBLAS_NUM_THREADS": "1"}
VALGRIND_ARGS = ("--tool=callgrind", "--instr-atstart=no")
TRIGGER = re.compile(r"^desc: Trigger: Client Request: (.*)$", re.M)
TOTALS = re.compile(r"^totals: (\d+)", re.M)
BEFORE = "(before) "  # the throwaway dump ahead of each count


def valgrind() -> str | None:
    """The valgrind executable on PATH, or None."""
    return shutil.which("valgrind")


@functools.cache
def valgrind_version() -> str | None:
    """``valgrind --version`` (e.g. ``valgrind-3.19.0``), or None without valgrind."""
    exe = valgrind()
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def hooks_path() -> Path | None:
    """The client-request extension's file in the installed pytest-codspeed, or None."""
    spec = importlib.util.find_spec(HOOKS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "instruments" / "hooks"
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if (folder / f"{HOOKS_MODULE}{suffix}").is_file():
            return folder / f"{HOOKS_MODULE}{suffix}"
    return None


def unavailable() -> str | None:
    """Why instructions cannot be counted here (None when they can)."""
    if valgrind() is None:
        return "valgrind is not installed (Debian: apt-get install valgrind)"
    if hooks_path() is None:
        return f"{HOOKS_DIST} is not installed (pip install -e '.[dev]')"
    return None


class Callgrind:
    """Callgrind's client requests, inside a process that runs under :func:`callgrind_command`."""

    def __init__(self) -> None:
        path = hooks_path()
        if path is None:
            raise RuntimeError(f"{HOOKS_DIST} is not installed: no callgrind client requests")
        spec = importlib.util.spec_from_file_location(HOOKS_MODULE, path)
        assert spec is not None and spec.loader is not None
        self.hooks: Any = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.hooks)
        self.handle = self.hooks.instrument_hooks_init()
        self.active = bool(self.hooks.instrument_hooks_is_instrumented(self.handle))

    def begin(self) -> None:
        """Switch instrumentation on, for the rest of the process."""
        self.hooks.callgrind_start_instrumentation()

    def dump(self, name: str) -> None:
        """Dump the counts since the last dump under ``name`` (ASCII, no newline), and start afresh."""
        self.hooks.instrument_hooks_set_executed_benchmark(self.handle, os.getpid(), name.encode("ascii"))

    def count(self, name: str, fn: Callable[[], Any]) -> None:
        """Count the instructions of ``fn()`` alone and dump them under ``name``.

        What ran before goes to a throwaway dump, ``(before) NAME``: a dump starts the counts afresh
        reliably, where ``CALLGRIND_ZERO_STATS`` did not (a tiny vanilla step counted after zeroing
        held 39 million instructions, after a dump 14 million)."""
        self.dump(f"{BEFORE}{name}")
        fn()
        self.dump(name)


def callgrind_command(argv: Sequence[str], out_file: Path) -> list[str]:
    """The command line that runs ``python argv...`` under callgrind, its dumps at ``out_file.N`` (``%p``
    in ``out_file``: the process id, one set of files per forked child)."""
    exe = valgrind()
    if exe is None:
        raise RuntimeError("valgrind is not installed")
    return [exe, *VALGRIND_ARGS, f"--callgrind-out-file={out_file}", sys.executable, *argv]


def count_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a counting process runs in: ``base`` (default this one's) with
    :data:`COUNT_ENV` over it."""
    return {**(os.environ if base is None else base), **COUNT_ENV}


def read_counts(out_file: Path) -> dict[str, int]:
    """Name -> instructions of every dump a counting process and its forked children wrote
    (``out_file.*``: with ``--callgrind-out-file=out_file.%p``, ``out_file.PID.N``)."""
    counts = {}
    for path in sorted(out_file.parent.glob(out_file.name + ".*")):
        text = path.read_text(encoding="utf-8", errors="replace")
        trigger, totals = TRIGGER.search(text), TOTALS.search(text)
        if trigger and totals and not trigger.group(1).startswith(BEFORE):
            counts[trigger.group(1)] = int(totals.group(1))
    return counts


__all__ = ["COUNT_ENV", "Callgrind", "callgrind_command", "count_env", "hooks_path", "read_counts",
           "unavailable", "valgrind", "valgrind_version"]
