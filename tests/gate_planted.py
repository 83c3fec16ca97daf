"""Subjects for tests/test_gate_counting.py, built inside the valgrind child that counts them
(``harness.cli.gate.counting`` loads this file and calls :func:`subjects`).

``post`` and ``pre`` are two variants of a tiny suite, as the gate profiles them; ``post-again`` is
``post`` once more (built afresh, counted a second time); ``post-slower`` is a copy of ``post`` whose
forward does ``EXTRA_MULS`` more elementwise multiplications of its logits (and so as many more in
backward): a slowdown of about 3% of the training step, planted in the model's forward.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from harness.cli.gate.subjects import suite_subjects
from harness.models.vanilla import Vanilla
from harness.suite.load import load_suite

EXTRA_MULS = 6

SUITE = """\
name: planted
seeds: [0]
baseline: post
train: {steps: 1, batch_size: 8}
model: {d_model: 32, n_heads: 2, d_ff: 64, n_layers: 2, dropout: 0.0}
tasks:
  - {task: copy, seq_len: 8, vocab: 8}
variants:
  - {name: post, model: vanilla, norm: post}
  - {name: pre, model: vanilla, norm: pre}
profile: {seq_lens: [16], batch_size: 8}
"""


class Slower(Vanilla):
    """Vanilla with extra elementwise work at the end of its forward."""

    def forward(self, x: Any, y: Any = None) -> Any:
        out = super().forward(x, y)
        logits = out.logits
        for _ in range(EXTRA_MULS):
            logits = logits * 1.0
        return dataclasses.replace(out, logits=logits)


def suite_file(folder: Path) -> Path:
    path = folder / "planted.yaml"
    path.write_text(SUITE)
    return path


def subjects() -> tuple[list[Any], str]:
    with tempfile.TemporaryDirectory() as tmp:
        found, reference = suite_subjects(load_suite(suite_file(Path(tmp))))
    post = next(s for s in found if s.name == "post")

    def slower(build: Any = post.build) -> Any:
        model = build()
        model.__class__ = Slower  # the same module, parameters and seed; only the forward differs
        return model

    again = dataclasses.replace(post, name="post-again")
    return [*found, again, dataclasses.replace(post, name="post-slower", build=slower)], reference
