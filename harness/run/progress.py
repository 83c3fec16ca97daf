"""The progress display of a suite run, on stderr.

On a terminal: one tqdm bar over the jobs (done / total, elapsed and remaining time) followed by the
running job (variant, task, seed or profiled length) and its step, loss and speed; a job that does not
end ``ok`` leaves one line above the bar, and the bar is gone when the run ends, so what stays on the
screen is the summary ``harness run`` prints. In a log (stderr not a terminal): one line per finished
job, and a line per running job at most every :data:`LOG_EVERY_S` seconds.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from harness.suite.jobs import Job

LOG_EVERY_S = 30.0  # a running job's step line in a log, at most this often
REFRESH_S = 0.2  # a terminal's bar, at most this often


class ProgressPrinter:
    """Jobs done of the total, and the running job's step, loss and speed (see the module docstring)."""

    def __init__(self, total: int, stream: Any = sys.stderr) -> None:
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.done, self.t0, self.label = 0, time.perf_counter(), ""
        self.last_line = 0.0
        self._total = total
        self._bar: Any = None

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, n: int) -> None:  # a job another process stored is no longer this run's
        self._total = n
        if self._bar is not None:
            self._bar.total = n
            self._bar.refresh()

    def _ensure_bar(self) -> Any:
        if self._bar is None and self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=self._total, file=self.stream, leave=False, dynamic_ncols=True,
                             unit="job", bar_format="{bar:20} {n_fmt}/{total_fmt} jobs "
                                                    "[{elapsed}<{remaining}] {desc}")
        return self._bar

    def start(self, job: Job, show: bool = True) -> None:
        """Name the job whose steps and end come next; ``show=False`` for a row that has already
        arrived from a parallel worker (its line is printed by :meth:`finish`)."""
        what = f"seed={job.seed}" if job.kind == "train" else f"profile n={job.seq_len}"
        self.label = f"{job.variant} {job.task_name} {what}"
        self.last_line = time.perf_counter()
        if show:
            self._show(self.label)

    def step(self, step: int, total: int, loss: float, tok_s: float) -> None:
        now = time.perf_counter()
        every = REFRESH_S if self.tty else LOG_EVERY_S
        if now - self.last_line < every and (step != total or not self.tty):
            return  # in a log the job's end is its finish line
        self.last_line = now
        text = f"{self.label}: step {step}/{total} loss {loss:.4f} {tok_s:,.0f} tok/s"
        if self.tty:
            self._show(text)
        else:
            self._line(f"[{self.done + 1}/{self.total}] {text}")

    def finish(self, row: dict[str, Any]) -> None:
        self.done += 1
        value = row.get("value")
        tail = f"{row['metric']}={value:.4f}" if isinstance(value, float) else ""
        err = f" ({row['error']})" if row.get("error") else ""
        text = f"{self.label}: {row['status']} {tail}{err}".rstrip()
        bar = self._ensure_bar()
        if bar is None:
            self._line(f"[{self.done}/{self.total}] {text}")
            return
        if row.get("status") != "ok":
            bar.write(text, file=self.stream)
        bar.update(1)
        if self.done >= self._total:
            self.close()

    def close(self) -> None:
        """Take the bar off the screen."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _show(self, text: str) -> None:
        bar = self._ensure_bar()
        if bar is not None:
            bar.set_description_str(text, refresh=True)

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
