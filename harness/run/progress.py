"""The progress display of a suite run, on stderr."""

from __future__ import annotations

import sys
import time
from typing import Any

from harness.suite.jobs import Job


class ProgressPrinter:
    """Jobs done/total with ETA, and the current job's step, loss and speed, on stderr."""

    def __init__(self, total: int, stream: Any = sys.stderr) -> None:
        self.total, self.stream = total, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.done, self.t0, self.label = 0, time.perf_counter(), ""
        self.last_line = 0.0

    def _eta(self) -> str:
        if self.done == 0:
            return "ETA ?"
        left = (time.perf_counter() - self.t0) / self.done * (self.total - self.done)
        return f"ETA {int(left // 60)}m{int(left % 60):02d}s"

    def start(self, job: Job, show: bool = True) -> None:
        """Name the job whose steps and end come next; ``show=False`` for a row that has already
        arrived from a parallel worker (its line is printed by :meth:`finish`)."""
        what = f"seed={job.seed}" if job.kind == "train" else f"profile n={job.seq_len}"
        self.label = f"[{self.done + 1}/{self.total} {self._eta()}] {job.variant} {job.task_name} {what}"
        if show:
            self._emit(self.label, final=False)

    def step(self, step: int, total: int, loss: float, tok_s: float) -> None:
        now = time.perf_counter()
        if not self.tty and step != total and now - self.last_line < 10:
            return  # in logs, one line per 10 s is enough
        self.last_line = now
        self._emit(f"{self.label}: step {step}/{total} loss {loss:.4f} {tok_s:,.0f} tok/s", final=False)

    def finish(self, row: dict[str, Any]) -> None:
        self.done += 1
        value = row.get("value")
        tail = f"{row['metric']}={value:.4f}" if isinstance(value, float) else ""
        err = f" ({row['error']})" if row.get("error") else ""
        self._emit(f"{self.label}: {row['status']} {tail}{err}".rstrip(), final=True)

    def _emit(self, text: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        elif final or text:
            self.stream.write(text + "\n")
        self.stream.flush()
