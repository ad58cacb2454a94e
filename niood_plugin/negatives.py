"""Negative augmentations: ID images made out-of-distribution, as a garbage source.

Not in the report.  :class:`Negatives` is the recipe, passed to the trainer as one object::

    InversionTrainer(clf, 10, (1, 28, 28), negatives=Negatives("warp", per_image=1, last_epochs=2))

Each retraining batch then gets ``per_image`` negatives per ID image (a fraction, or several
each above 1), labelled as garbage, in the last ``last_epochs`` epochs (``None``: every epoch,
pre-training included).  Kinds, alone or joined by ``+`` (the batch is split evenly):

* ``"warp"`` (:func:`warp`, our recommendation): every pixel moves along a smooth random
  displacement field (a ``warp_cells x warp_cells`` grid of Gaussian offsets with standard
  deviation ``warp_strength`` half-widths, upsampled bicubically).  Strokes and textures stay
  continuous, so there are no seams to learn, but the outline bends into shapes no ID class
  has: the part of the input space where a garment classifier sends handwritten digits.
* ``"jigsaw"`` (:func:`jigsaw`): the image cut into ``grid x grid`` tiles, shuffled.  Local
  statistics stay in-distribution, the global shape does not (Sinha et al., *Negative Data
  Augmentation*, ICLR 2021).
* ``"rotate"`` (:func:`rotate`): a quarter turn either way; out-of-distribution for objects
  that stand upright (garments, digits).
* ``"cutmix"`` (:func:`cutmix`): a square of another image of the batch pasted over each
  image (a quarter to three quarters of its area): parts of two objects in one image, the
  layout CutMix (Yun et al., ICCV 2019) trains *towards* mixed labels, here labelled garbage.

When they join matters: from the first epoch on, the classifier learns to tell negatives from
ID images by cues of their own (seams, for jigsaw); added in the last epochs, when the ID
features are learned, they are told apart by "no coherent ID object", which also holds for
other datasets.  The docs' research notes have the measurements.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .validation import Interval, validate_params
from .errors import InvalidArgumentError

KINDS = ("cutmix", "jigsaw", "rotate", "warp")
WARP_CELLS = 4       # default control points per side of the displacement field
WARP_STRENGTH = 0.5  # default standard deviation of their offsets, in units of the half-width
                     # (grid_sample's [-1, 1])


def parse_kinds(spec: str) -> tuple[str, ...]:
    """Kinds joined by ``+`` (``"jigsaw"``, ``"rotate"``, ``"warp"``, ``"jigsaw+rotate"``, ...) as a
    tuple; ``ValueError`` otherwise."""
    kinds = tuple(spec.split("+")) if isinstance(spec, str) else ()
    if not kinds or any(k not in KINDS for k in kinds) or len(set(kinds)) != len(kinds):
        raise InvalidArgumentError(f"negatives must be one of {KINDS} or several joined by '+', each once "
                         f"(e.g. 'jigsaw+rotate'), got {spec!r}")
    return kinds


def check_warp(cells: int, strength: float) -> None:
    """Raise ``ValueError`` unless ``cells`` >= 2 and ``strength`` >= 0 describe a displacement field."""
    if not isinstance(cells, int) or isinstance(cells, bool) or cells < 2:
        raise InvalidArgumentError(f"warp_cells must be an int >= 2 (control points per side), got {cells!r}")
    if not isinstance(strength, (int, float)) or isinstance(strength, bool) or not 0 <= strength < float("inf"):
        raise InvalidArgumentError(f"warp_strength must be a finite number >= 0 (offset std in half-widths), got {strength!r}")


def check_negatives(kinds: Sequence[str], grid: int, image_shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless every kind can be made for images of ``image_shape`` (C, H, W)."""
    if "jigsaw" in kinds:
        check_jigsaw_grid(grid, image_shape)
    if "rotate" in kinds and image_shape[-1] != image_shape[-2]:
        raise InvalidArgumentError(f"rotate negatives need square images, got {image_shape[-2]}x{image_shape[-1]}: "
                                   "use another kind, e.g. Negatives(\"warp\") or Negatives(\"jigsaw\", grid=...)")


def check_jigsaw_grid(grid: int, image_shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``grid`` >= 2 divides the height and width of ``image_shape`` (C, H, W)."""
    if not isinstance(grid, int) or isinstance(grid, bool) or grid < 2:
        raise InvalidArgumentError(f"grid must be an int >= 2 (jigsaw tiles per side), got {grid!r}")
    h, w = image_shape[-2:]
    if h % grid or w % grid:
        raise InvalidArgumentError(f"the jigsaw grid {grid} does not divide the image size {h}x{w}: pass grid= a "
                                   f"divisor of both (e.g. {_divisors(h, w)})")


def _divisors(h: int, w: int) -> list[int]:
    return [g for g in range(2, min(h, w) + 1) if h % g == 0 and w % g == 0][:4]


def jigsaw(x: Tensor, grid: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Each image of ``x`` [B, C, H, W] with its ``grid x grid`` tiles in a random order.

    Every image gets its own permutation, drawn on the CPU from ``generator`` (so runs repeat
    across devices); tiles keep their content and orientation.
    """
    check_jigsaw_grid(grid, tuple(x.shape))
    b, c, h, w = x.shape
    th, tw = h // grid, w // grid
    n = grid * grid
    # [B, C, H, W] -> [B, n, C, th, tw], tiles in row-major order
    tiles = x.reshape(b, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5).reshape(b, n, c, th, tw)
    order = torch.argsort(torch.rand(b, n, generator=generator), dim=1).to(x.device)
    tiles = tiles[torch.arange(b, device=x.device)[:, None], order]
    return tiles.reshape(b, grid, grid, c, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def rotate(x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Each (square) image of ``x`` [B, C, H, W] turned a quarter either way, the direction drawn
    per image on the CPU from ``generator``."""
    turn = torch.rand(x.shape[0], generator=generator) < 0.5
    left = turn.to(x.device)[:, None, None, None]
    return torch.where(left, x.rot90(1, dims=(2, 3)), x.rot90(-1, dims=(2, 3)))


def cutmix(x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Each image of ``x`` [B, C, H, W] with a square of the next image of the batch (the last
    takes the first's) pasted over it: the square's area a uniform quarter to three quarters of
    the image's (its side rounded to whole pixels), its place uniform within the image, both drawn
    per image on the CPU from ``generator``.  A batch of one image is returned unchanged.

    Not ``torchvision.transforms.v2.CutMix``: that one mixes labels (here every result is
    garbage), cuts one box for the whole batch, draws it from the global RNG (not ``generator``,
    so runs would not repeat as with the other kinds) and lets it shrink to nothing, which would
    label near-intact ID images garbage."""
    b, _, h, w = x.shape
    side = ((0.25 + 0.5 * torch.rand(b, generator=generator)).sqrt() * min(h, w)).round().clamp(1, min(h, w))
    top = (torch.rand(b, generator=generator) * (h - side + 1)).floor()
    left = (torch.rand(b, generator=generator) * (w - side + 1)).floor()
    rows, cols = torch.arange(h)[None, :], torch.arange(w)[None, :]
    inside = (((rows >= top[:, None]) & (rows < (top + side)[:, None]))[:, :, None]
              & ((cols >= left[:, None]) & (cols < (left + side)[:, None]))[:, None, :])
    return torch.where(inside[:, None].to(x.device), x.roll(-1, dims=0), x)


def warp(x: Tensor, generator: Optional[torch.Generator] = None, cells: int = WARP_CELLS,
         strength: float = WARP_STRENGTH) -> Tensor:
    """Each image of ``x`` [B, C, H, W] resampled along its own smooth random displacement field:
    a ``cells x cells`` grid of offsets, normal with standard deviation ``strength`` (in units of
    the half-width), drawn on the CPU from ``generator`` and upsampled bicubically.  Pixels pulled
    from outside the image repeat the border, so the background stays whatever value the
    normalisation gives it."""
    check_warp(cells, strength)
    b, _, h, w = x.shape
    offsets = torch.randn(b, 2, cells, cells, generator=generator) * strength
    field = F.interpolate(offsets.to(x.device), size=(h, w), mode="bicubic", align_corners=True)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=x.device), torch.linspace(-1, 1, w, device=x.device),
                            indexing="ij")
    grid = torch.stack([xs, ys], dim=-1)[None] + field.permute(0, 2, 3, 1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=True)


def make_negatives(x: Tensor, kinds: Sequence[str], grid: int, generator: Optional[torch.Generator] = None,
                   warp_cells: int = WARP_CELLS, warp_strength: float = WARP_STRENGTH) -> Tensor:
    """Negatives of the images ``x``, one each, in order: with several ``kinds`` the images are
    split into ``len(kinds)`` consecutive parts (the first ones one larger when it does not
    divide, as ``Tensor.tensor_split``), the first part gets the first kind, and so on.  ``grid``
    is the jigsaw's tiles per side; ``warp_cells`` and ``warp_strength`` shape the warp's field."""
    makers = {"cutmix": cutmix, "jigsaw": partial(jigsaw, grid=grid), "rotate": rotate,
              "warp": partial(warp, cells=warp_cells, strength=warp_strength)}
    parts = torch.arange(x.shape[0]).tensor_split(len(kinds))
    out = []
    for kind, idx in zip(kinds, parts):
        if not len(idx):
            continue
        src = x[idx.to(x.device)] if len(kinds) > 1 else x
        out.append(makers[kind](src, generator=generator))
    return torch.cat(out) if len(out) > 1 else out[0]


@dataclass(frozen=True)
class Negatives:
    """A garbage source of transformed ID images (see the module docstring).

    The defaults are our recommendation and :class:`~niood_plugin.trainer.InversionTrainer`'s
    default: one warped ID image per ID image, in the last two epochs (chosen on synthetic
    validation outliers; the docs' research notes have the table).

    :param kinds: ``"warp"``, ``"jigsaw"``, ``"rotate"``, ``"cutmix"``, or several joined by ``+``
    :param per_image: negatives per ID image in each retraining batch (0.5: half the batch;
        2: two each, each with its own random transform)
    :param last_epochs: use them in the last this many inversion epochs only (every inversion
        epoch when the run is shorter); ``None``: in every epoch, pre-training included
    :param grid: jigsaw tiles per side (must divide the image height and width)
    :param warp_cells: control points per side of the warp's displacement field
    :param warp_strength: standard deviation of the warp's offsets, in half-widths
    """

    kinds: str = "warp"
    per_image: float = 1.0
    last_epochs: Optional[int] = 2
    grid: int = 4
    warp_cells: int = WARP_CELLS
    warp_strength: float = WARP_STRENGTH

    def __post_init__(self) -> None:
        validate_params(self.to_dict(), NEGATIVES_CONSTRAINTS, "Negatives")
        for name in ("per_image", "warp_strength"):  # 1 and 1.0 are one recipe (one cache key)
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def kind_list(self) -> tuple[str, ...]:
        return parse_kinds(self.kinds)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self, image_shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` unless every kind can be made for ``image_shape`` (C, H, W)."""
        check_negatives(self.kind_list, self.grid, image_shape)

    def active(self, epoch: int, epochs: int) -> bool:
        """Whether negatives join inversion epoch ``epoch`` (1-based; 0 is pre-training) of ``epochs``."""
        if self.last_epochs is None:
            return True
        return epoch >= 1 and epoch > epochs - self.last_epochs

    def count(self, n: int) -> int:
        """Negatives for a batch of ``n`` ID images."""
        return round(self.per_image * n)

    def make(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """``count(len(x))`` negatives of the ID batch ``x``: of its first images (of all of them,
        cycled, when ``per_image > 1``; each copy with its own random transform)."""
        src = torch.arange(self.count(x.shape[0])) % x.shape[0]
        return make_negatives(x[src], self.kind_list, self.grid, generator, self.warp_cells, self.warp_strength)


class _Kinds:
    """Constraint: a ``+``-joined list of known kinds, each once."""

    def accepts(self, value: Any) -> bool:
        try:
            parse_kinds(value)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        return f"one of {KINDS} or several joined by '+' (e.g. 'warp+jigsaw')"


NEGATIVES_CONSTRAINTS: dict[str, list] = {
    "kinds": [_Kinds()],
    "per_image": [Interval(float, 0, None, closed="neither")],
    "last_epochs": [Interval(int, 1, None), None],
    "grid": [Interval(int, 2, None)],
    "warp_cells": [Interval(int, 2, None)],
    "warp_strength": [Interval(float, 0, None)],
}
