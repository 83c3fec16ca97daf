"""Synthetic shapes: per-pixel segmentation, or an image-level label that needs long-range context.

Images are generated from the seed (nothing is downloaded), drawn with vectorised torch ops: 3
channels, float in [0, 1] (plus optional Gaussian ``noise``), side ``image_size``. Each image has a
uniform dark-grey background (one level in [0, 0.3] per image, the same in all channels) and shapes
of four types, each filled with one of six saturated colours (every colour has a channel at 1, so
no shape colour equals a background colour):

    type 1 disc:     dx^2 + dy^2 <= r^2
    type 2 square:   max(|dx|, |dy|) <= 0.8 r
    type 3 triangle: apex up; 0 <= dy + r <= 1.8 r and |dx| <= 0.55 (dy + r)
    type 4 cross:    a plus sign, arms of half-width r/3 and half-length r

with (dx, dy) a pixel centre minus the shape's centre, and r (the shape's radius) uniform in
[S/10, S/6]. Type and colour are drawn independently, so a pixel's class cannot be read off its
colour: the model has to recognise the shape around it.

``mode: segment`` (head "segment", metric mIoU, n_classes 5): ``min_shapes``..``max_shapes`` shapes
per image, each entirely inside the image, drawn in order; later shapes occlude earlier ones. A pixel
is labelled with the type (1-4) of the last shape that covers it, 0 (background) if none does, so
labels and pixels agree exactly (no anti-aliasing).

``mode: classify`` (head "classify", metric accuracy, n_classes 2): four shapes, one inside each
corner cell of a 3 x 3 grid (cells of side S/3; shapes never overlap; ``min_shapes``/``max_shapes``
are not used). The label is 1 iff the top-left and the bottom-right shapes have the same type; the
top-right and bottom-left shapes are distractors of random type, and colours are random throughout.
Half the images are "same" (chance is 50%). The two relevant shapes are far apart: their centres
differ by S/3 + r_TL + r_BR >= 8S/15 or more along each axis, so no feature whose receptive field
spans less than about half the image sees both; and each one alone has the same distribution under
both labels (uniform type, colour, size and position), so a local detector carries no information.
A global average pool of such local features followed by a linear layer cannot compute
"type(TL) == type(BR)" either: it would need u_a + v_b > t exactly when a == b, which fails for two
types already (u_0 + v_0 + u_1 + v_1 would have to be both above and below 2t). The network must
relate two regions more than half an image apart.

Evaluation images come from a generator seeded apart from the training stream (as the algorithmic
tasks do), so they are fixed per seed and never drawn in training.

Shapes: B batch, N shape slots, S image_size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from harness.core.config import bounded, positive
from harness.core.registry import register_task
from harness.tasks.base import BOUNDS_SEED, Batch, MetricBound
from harness.tasks.image import ImageTask

SHAPE_TYPES = ("disc", "square", "triangle", "cross")
PALETTE = torch.tensor([
    [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.4, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0],
])  # fmt: skip
BACKGROUND_MAX = 0.3  # background grey level is uniform in [0, BACKGROUND_MAX]
RADIUS = (1 / 10, 1 / 6)  # shape radius range, as a fraction of image_size


@dataclass
class ShapesConfig:
    image_size: int = bounded(32, lo=12)
    mode: Literal["segment", "classify"] = "segment"
    min_shapes: int = positive(1)  # segment mode: shapes per image, drawn uniformly in [min, max]
    max_shapes: int = positive(4)
    noise: float = bounded(0.0, lo=0.0, hi=1.0)  # std of Gaussian noise added to every pixel

    def check(self) -> list[tuple[str, str]]:
        if self.max_shapes < self.min_shapes:
            return [("max_shapes", f"must be >= min_shapes ({self.min_shapes}), got {self.max_shapes}")]
        if self.max_shapes > 32:
            return [("max_shapes", f"must be <= 32, got {self.max_shapes}")]
        return []


@dataclass
class Scene:
    """The shape list of a batch, in drawing order. ``types`` are 0-based (class = type + 1)."""

    types: torch.Tensor  # (B, N) long
    colours: torch.Tensor  # (B, N, 3) float
    centres: torch.Tensor  # (B, N, 2) float, (x, y) in pixels
    radii: torch.Tensor  # (B, N) float
    present: torch.Tensor  # (B, N) bool; absent slots are not drawn
    background: torch.Tensor  # (B,) float grey level


def shape_masks(scene: Scene, size: int) -> torch.Tensor:
    """(B, N, S, S) bool: which pixel centres each present shape covers (the formulas above)."""
    c = torch.arange(size, dtype=torch.float32) + 0.5
    dx = c[None, None, None, :] - scene.centres[..., 0, None, None]  # (B, N, 1, S)
    dy = c[None, None, :, None] - scene.centres[..., 1, None, None]  # (B, N, S, 1)
    r = scene.radii[..., None, None]
    adx, ady = dx.abs(), dy.abs()
    h = dy + r
    per_type = torch.stack([
        dx * dx + dy * dy <= r * r,
        torch.maximum(adx, ady) <= 0.8 * r,
        (h >= 0) & (h <= 1.8 * r) & (adx <= 0.55 * h),
        ((adx <= r / 3) & (ady <= r)) | ((ady <= r / 3) & (adx <= r)),
    ])  # (4, B, N, S, S)
    idx = scene.types[None, :, :, None, None].expand(1, *per_type.shape[1:])
    return per_type.gather(0, idx)[0] & scene.present[..., None, None]


def render(scene: Scene, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 3, S, S) and per-pixel labels (B, S, S): the type + 1 of the last shape covering a
    pixel, 0 where none does."""
    masks = shape_masks(scene, size)  # (B, N, S, S)
    n = masks.shape[1]
    order = torch.arange(1, n + 1)[None, :, None, None]
    owner = (masks.long() * order).amax(dim=1) - 1  # (B, S, S): index of the topmost shape, -1 none
    drawn = owner >= 0
    idx = owner.clamp(min=0)
    labels = torch.where(drawn, scene.types.gather(1, idx.flatten(1)).view_as(idx) + 1, 0)
    b = scene.types.shape[0]
    colour = scene.colours.gather(1, idx.flatten(1)[..., None].expand(-1, -1, 3)).view(b, size, size, 3)
    bg = scene.background[:, None, None, None].expand(b, size, size, 3)
    images = torch.where(drawn[..., None], colour, bg).permute(0, 3, 1, 2).contiguous()
    return images, labels


def same_type_rule(scene: Scene) -> torch.Tensor:
    """Classify mode's label from the shape list: 1 iff top-left (slot 0) and bottom-right (slot 3)
    shapes have the same type. (B,) long."""
    return (scene.types[:, 0] == scene.types[:, 3]).long()


@register_task("shapes", config=ShapesConfig)
class Shapes(ImageTask):
    """Generated discs, squares, triangles and crosses: segment them, or classify a long-range relation."""

    in_channels = 3

    def __init__(self, cfg: ShapesConfig) -> None:
        super().__init__(cfg)
        self.mode = cfg.mode
        self.head = cfg.mode
        self.n_classes = len(SHAPE_TYPES) + 1 if cfg.mode == "segment" else 2

    # -- generation ---------------------------------------------------------------------------------
    def _radii(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        lo, hi = RADIUS
        return self.image_size * (lo + (hi - lo) * torch.rand(shape, generator=gen))

    def sample_scene(self, batch: int, gen: torch.Generator) -> Scene:
        s, t = self.image_size, len(SHAPE_TYPES)
        if self.mode == "segment":
            n = self.cfg.max_shapes
            count = torch.randint(self.cfg.min_shapes, n + 1, (batch,), generator=gen)
            present = torch.arange(n)[None, :] < count[:, None]
            types = torch.randint(0, t, (batch, n), generator=gen)
            radii = self._radii((batch, n), gen)
            centres = radii[..., None] + torch.rand(batch, n, 2, generator=gen) * (s - 2 * radii[..., None])
        else:  # a shape in each corner cell of a 3x3 grid; slots: TL, TR, BL, BR
            n = 4
            present = torch.ones(batch, n, dtype=torch.bool)
            types = torch.randint(0, t, (batch, n), generator=gen)
            same = torch.randint(0, 2, (batch,), generator=gen).bool()
            other = (types[:, 0] + torch.randint(1, t, (batch,), generator=gen)) % t
            types[:, 3] = torch.where(same, types[:, 0], other)
            radii = self._radii((batch, n), gen)
            cell, far = s / 3, 2 * s / 3
            origin = torch.tensor([[0.0, 0.0], [far, 0.0], [0.0, far], [far, far]])  # (x, y) of each cell
            free = (cell - 2 * radii[..., None]).clamp(min=0)  # r <= S/6 fits the cell
            centres = origin + radii[..., None] + torch.rand(batch, n, 2, generator=gen) * free
        colours = PALETTE[torch.randint(0, len(PALETTE), (batch, n), generator=gen)]
        background = BACKGROUND_MAX * torch.rand(batch, generator=gen)
        return Scene(types, colours, centres, radii, present, background)

    def make(self, batch: int, gen: torch.Generator) -> tuple[Scene, Batch]:
        scene = self.sample_scene(batch, gen)
        images, pixels = render(scene, self.image_size)
        if self.cfg.noise > 0:
            images = images + self.cfg.noise * torch.randn(images.shape, generator=gen)
        labels = pixels if self.mode == "segment" else same_type_rule(scene)
        return scene, self.batch(images, labels)

    # -- bounds -------------------------------------------------------------------------------------
    def bound_labels(self) -> torch.Tensor:
        """Segment mode: per-pixel labels of a fixed draw of 512 scenes (the evaluation scenes depend
        on the job's seed)."""
        return self.make(512, torch.Generator().manual_seed(BOUNDS_SEED))[1].labels

    def metric_bounds(self) -> dict[str, MetricBound]:
        """Classify mode: the label is a fair coin by construction, so chance is exactly 1/2."""
        if self.mode == "classify":
            return {"acc": MetricBound(0.5, 0.5, 1.0)}
        return super().metric_bounds()

    # -- harness API --------------------------------------------------------------------------------
    def train_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        return self.make(batch_size, gen)[1]

    def eval_sets(self, n_batches: int, batch_size: int, io: str, seed: int) -> dict[str, list[Batch]]:
        """Fixed evaluation batches from a generator seeded apart from the training stream."""
        gen = torch.Generator().manual_seed(1_000_003 * (seed + 1) + 7_919)
        return {"": [self.make(batch_size, gen)[1] for _ in range(n_batches)]}
