"""What every model returns, and the small contract the runner relies on.

Models know nothing of suites, stores or reports: they take tensors and return a
:class:`ModelOutput`. Each model class declares its ``io`` (:data:`IOFormat`), which tells a task how
to lay out its batch:

- ``"lm"``: one token stream ``x`` [B, T]; causal; logits [B, T, V] predict the next token's label.
- ``"masked"``: one token stream ``x`` [B, T] where target slots hold a blank token; bidirectional;
  logits [B, T, V] are read at the target slots.
- ``"seq2seq"``: source ``x`` [B, S] and shifted target ``y`` [B, T]; logits [B, T, V].
- ``"image"``: ``images`` [B, C, S, S]; logits [B, K] for a classifier, [B, S, S, K] per-pixel class
  scores for a segmenter. Which of the two is the config's ``head`` key (``classify`` or
  ``segment``), not the io.
- ``"sr"``: super-resolution with a reference: ``lr`` [B, C, S/r, S/r] and ``ref`` [B, C, S, S];
  the output image [B, C, S, S] goes in the ``logits`` slot (harness/tasks/ref_sr.py).
- ``"gan"``: a generative adversarial pair (harness/models/sagan.py). Training batches hold real
  ``images`` [B, C, S, S] and class ``labels`` [B]; evaluation batches hold ``labels`` and per-example
  noise ``seeds`` [B] and the model returns generated images [B, C, S, S] as logits. It trains through
  its :class:`OptimPhase` list (see :func:`harness.run.train.train`), not through the task's loss.
- ``"detect"``: set-prediction detection (harness/tasks/scenes.py): ``images`` [B, C, S, S]; logits
  [B, D, Q, C' + 4], per decoder layer D (the last is the prediction, the rest feed auxiliary losses)
  and query Q, C' class scores (K + 1 with "no object" last for softmax, K for sigmoid) then a box
  (cx, cy, w, h) normalised to [0, 1]. The layout is detailed in harness/tasks/set_loss.py.
- ``"lanes"``: lane detection (harness/tasks/lanes.py): ``images`` [B, C, H, W] (W = ``image_size``);
  labels [B, L, R] hold each lane's x in pixels at R fixed rows (-2: absent). The output is a set of
  decoded lanes [B, Q, 4 + R] (no-lane and lane logits, lower and upper row bound normalised by H, x / W
  per row); in training a model may return segmentation logits at the R label rows [B, R, W, K + 1]
  instead (background and K lane slots), which the task trains with a per-pixel cross-entropy.

A model whose io is fixed says so in a class attribute (``io: IOFormat = "image"``). Where the io
follows the config (``causal``, ``arch``), the config has an ``io`` property and the model class
derives from :class:`ConfigIO`; :func:`model_io` answers for a class and a config without building
the model. ``harness profile`` runs a model on the task that declares itself the default for its io
(``Task.profile_ios``) unless the model class names another in ``profile_task`` (image_transformer:
``pixels``). A model config says how it resizes to a length with ``at_length`` (below).

The token models' shared keys live here too: :class:`TransformerConfig` (vocabulary, width, heads,
depth, dropout, positions) and :class:`SublayerConfig` (plus the attention and feed-forward
sublayers' own keys), with their shared checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from harness.core.config import bounded, positive

IOFormat = Literal["lm", "masked", "seq2seq", "image", "sr", "gan", "detect", "lanes"]
Arch = Literal["decoder", "encoder", "encdec"]
ARCH_IO: dict[str, IOFormat] = {"decoder": "lm", "encoder": "masked", "encdec": "seq2seq"}


@dataclass
class Batch:
    """Model inputs (passed as keyword arguments: ``model(**batch.inputs)``) and labels, with the sizes
    the task states for them.

    ``labels`` has the shape of the logits without their last axis; positions holding ``IGNORE``
    are not scored. The task that builds a batch says, explicitly (nothing is read off the tensors):

    - ``n_tokens``: input tokens per example, for throughput: the token count of every token input
      (seq2seq: source plus target), for image inputs their pixels per image (H x W of each image;
      ref_sr: the reference's and the LR image's), 0 for inputs that are neither (a GAN's
      evaluation classes and noise seeds);
    - ``seq_len``: the size a result row records: tokens per example, or the side of the batch's
      (first) image in pixels (its width, for lane images).
    """

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    n_tokens: int = field(kw_only=True)
    seq_len: int = field(kw_only=True)

    @classmethod
    def of_tokens(cls, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> Batch:
        """A batch whose inputs are token streams [B, T] (one, or a seq2seq source and target): its
        tokens per example are the streams' lengths added up, which is also the size its rows record."""
        n = sum(int(t.shape[1]) for t in inputs.values())
        return cls(inputs, labels, n_tokens=n, seq_len=n)

    @property
    def batch_size(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        return Batch({k: v.to(device) for k, v in self.inputs.items()}, self.labels.to(device),
                     n_tokens=self.n_tokens, seq_len=self.seq_len)


@dataclass
class ModelOutput:
    """Logits plus anything the loss or the result row needs.

    ``aux_loss`` is added to the task loss as it is (the model has already applied its weight, e.g. the
    ACT ponder cost times its coefficient). ``extras`` holds scalar diagnostics that become result fields
    (e.g. ``ponder_steps``); values must be Python floats or 0-d tensors.
    """

    logits: torch.Tensor
    aux_loss: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimPhase:
    """One optimiser of a model trained in alternating phases (a GAN's discriminator and generator).

    A model that defines ``optim_phases() -> list[OptimPhase]`` is trained phase by phase: at every
    training step each phase in turn draws its own training batch ``repeats`` times (e.g. n_critic
    discriminator steps) and steps its own AdamW over ``params`` on ``loss(batch, gen)`` (``gen``: the
    job's training generator, for noise). The phase's learning rate is the train config's ``lr`` times
    ``lr_mult``, on the train config's warm-up and cosine schedule; betas, weight decay and gradient
    clipping are the train config's.
    """

    name: str
    params: list[torch.nn.Parameter]
    loss: Callable[[Any, torch.Generator], torch.Tensor]
    lr_mult: float = 1.0
    repeats: int = 1


class ConfigIO:
    """For a model class whose io follows its config: ``model.io`` is ``model.config.io``."""

    config: Any

    @property
    def io(self) -> IOFormat:
        return self.config.io


def model_io(model_cls: type, cfg: Any) -> IOFormat | None:
    """The io of ``model_cls`` built from ``cfg``, read without building it (None: it declares none)."""
    io = getattr(model_cls, "io", None)
    return io if isinstance(io, str) else getattr(cfg, "io", None)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Resizing to a length. A cost sweep (and ``harness profile``) runs a model at lengths it was not
# configured for: the config says how through ``at_length(n) -> dict``, the keys to change so that the
# model takes inputs of length ``n`` (token models) or images of side ``n`` (image models). A config
# without ``at_length`` has one size: the suite loader refuses it in a cost sweep, and ``harness
# profile`` refuses to run it at a size. The keys it returns must leave every other key as it is.


def resizes(cfg: Any) -> bool:
    """Whether model config ``cfg`` (a class or an instance) says how it resizes to a length."""
    return callable(getattr(cfg, "at_length", None))


class MaxLenAtLength:
    """``at_length`` of a token model's config: at length ``n`` its ``max_len`` is at least ``n`` (a
    larger ``max_len`` stays: a learned position table keeps its size)."""

    def at_length(self, n: int) -> dict[str, Any]:
        return {"max_len": max(self.max_len, n)}  # type: ignore[attr-defined]


class ImageSizeAtLength:
    """``at_length`` of an image model's config: at size ``n`` its ``image_size`` is ``n`` (the image
    side; for a lane model the width, its ``image_height`` stays the task's)."""

    def at_length(self, n: int) -> dict[str, Any]:
        return {"image_size": n}


# --------------------------------------------------------------------------------------------------
# Shared keys of the token models. Every model keeps its own key set, defaults and bounds (run ids
# hash the config), so a model overrides a default by declaring the field again, and a key only
# some models have stays in their own config. shuffle_exchange has no attention and shares too few
# keys to derive from these (its d_ff is optional, its dropout defaults to 0).


@dataclass
class TransformerConfig:
    """Keys of every attention model over tokens (vanilla, sandwich, albert, universal, reformer)."""

    vocab_size: int = positive(32)
    d_model: int = positive(128)
    n_heads: int = positive(4)
    d_ff: int = positive(512)
    n_layers: int = positive(2)
    dropout: float = bounded(0.1, lo=0.0, hi=0.99)

    def heads_problem(self) -> list[tuple[str, str]]:
        if self.d_model % self.n_heads:
            return [("n_heads", f"must divide d_model ({self.d_model}), got {self.n_heads}")]
        return []

    def check(self) -> list[tuple[str, str]]:
        return self.heads_problem()


@dataclass
class SublayerConfig(TransformerConfig, MaxLenAtLength):
    """Plus the keys of the attention and feed-forward sublayers of ``blocks`` (all but reformer), and
    ``max_len``, which a cost sweep raises to the profiled length (:class:`MaxLenAtLength`)."""

    # dropout on attention weights; None: same as dropout. On the CPU, torch's fused SDPA kernel has
    # no attention dropout: with attn_dropout > 0 it falls back to a kernel that materialises the
    # n x n matrix (measured: 1 layer, d 64, n 8192: 1.65 GB kept for backward instead of 24 MB).
    attn_dropout: float | None = None
    max_len: int = positive(512)

    @property
    def attn_p(self) -> float:
        """The attention-weight dropout in use."""
        return self.dropout if self.attn_dropout is None else self.attn_dropout

    def attn_dropout_problem(self) -> list[tuple[str, str]]:
        if self.attn_dropout is not None and not 0.0 <= self.attn_dropout <= 0.99:
            return [("attn_dropout", f"must be between 0 and 0.99, got {self.attn_dropout}")]
        return []


def layout_problem(arch: str, causal: bool | None) -> list[tuple[str, str]]:
    """A ``causal`` that contradicts a decoder/encoder ``arch`` (encdec has both and takes either)."""
    if causal is not None and arch != "encdec" and causal != (arch == "decoder"):
        return [("causal", f"arch '{arch}' is {'causal' if arch == 'decoder' else 'bidirectional'}")]
    return []
