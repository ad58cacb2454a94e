"""Negative augmentations: ID images made out-of-distribution, for the garbage class.

Not in the report; opt-in through ``InversionConfig.jigsaw`` (how many per ID image) and
``InversionConfig.negatives`` (which kinds: ``"jigsaw"``, ``"rotate"``, ``"warp"`` or several).  A jigsaw
image cuts an ID image into a ``grid x grid`` mesh of tiles and shuffles them: the local
statistics (strokes, edges, textures, intensity) stay in-distribution, the global shape does
not.  Labelled as garbage,
such images teach the classifier that ID-looking parts are not enough, which generated and
noise garbage do not.  Jigsaw is one of the "negative data augmentations" of Sinha et al.,
*Negative Data Augmentation*, ICLR 2021.

When they join matters (``InversionConfig.jigsaw_from``).  From the first epoch on, the
classifier learns to tell jigsaw images from ID images by cues of their own (our guess: the
seams between tiles), and the garbage class does not catch other datasets any better.  Added
in the last epochs of training, when the ID features are learned, the negatives are told apart
by those features, "no coherent ID object", which also holds for other datasets.  README
"Jigsaw negatives" has the measurements.

A rotated image (a quarter turn either way, :func:`rotate`) keeps every stroke and the whole
object but turns it on its side: for datasets whose objects stand upright (garments, digits)
that is out-of-distribution too, and unlike a jigsaw image it has no seams.  Also one of
Sinha et al.'s negative augmentations.

A warped image (:func:`warp`) moves every pixel along a smooth random displacement field (a
``cells x cells`` grid of Gaussian offsets with standard deviation ``strength`` in units of the
half-width, upsampled bicubically; ``InversionConfig.warp_cells`` and ``warp_strength``):
strokes and textures stay continuous, so there are no seams to learn, but the outline bends
into shapes no ID class has.  Straps and edges come out as free curves, the part of
the input space where a garment classifier sends handwritten digits (README "Warped
negatives" has the measurements).

Some objects look the same on their side (a bag, the digit 0), and a few jigsaw images still
look like their source.  With ``InversionConfig.negatives_spare`` below 1, the trainer leaves a
negative out of the loss while the classifier gives its source class a probability above that
threshold (read from the same forward pass, so it costs nothing): such an image is not a
negative to this classifier, and labelling it garbage would teach it to reject real ones.
"""
from __future__ import annotations

from functools import partial
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

KINDS = ("jigsaw", "rotate", "warp")
WARP_CELLS = 4       # default control points per side of the displacement field
WARP_STRENGTH = 0.5  # default standard deviation of their offsets, in units of the half-width
                     # (grid_sample's [-1, 1])


def parse_kinds(spec: str) -> tuple[str, ...]:
    """Kinds joined by ``+`` (``"jigsaw"``, ``"rotate"``, ``"warp"``, ``"jigsaw+rotate"``, ...) as a
    tuple; ``ValueError`` otherwise."""
    kinds = tuple(spec.split("+")) if isinstance(spec, str) else ()
    if not kinds or any(k not in KINDS for k in kinds) or len(set(kinds)) != len(kinds):
        raise ValueError(f"negatives must be one of {KINDS} or several joined by '+', each once "
                         f"(e.g. 'jigsaw+rotate'), got {spec!r}")
    return kinds


def check_warp(cells: int, strength: float) -> None:
    """Raise ``ValueError`` unless ``cells`` >= 2 and ``strength`` >= 0 describe a displacement field."""
    if not isinstance(cells, int) or isinstance(cells, bool) or cells < 2:
        raise ValueError(f"warp_cells must be an int >= 2 (control points per side), got {cells!r}")
    if not isinstance(strength, (int, float)) or isinstance(strength, bool) or not 0 <= strength < float("inf"):
        raise ValueError(f"warp_strength must be a finite number >= 0 (offset std in half-widths), got {strength!r}")


def check_negatives(kinds: Sequence[str], grid: int, image_shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless every kind can be made for images of ``image_shape`` (C, H, W)."""
    if "jigsaw" in kinds:
        check_jigsaw_grid(grid, image_shape)
    if "rotate" in kinds and image_shape[-1] != image_shape[-2]:
        raise ValueError(f"rotate negatives need square images, got {image_shape[-2]}x{image_shape[-1]}: "
                         "use negatives='jigsaw'")


def check_jigsaw_grid(grid: int, image_shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``grid`` >= 2 divides the height and width of ``image_shape`` (C, H, W)."""
    if not isinstance(grid, int) or isinstance(grid, bool) or grid < 2:
        raise ValueError(f"jigsaw_grid must be an int >= 2, got {grid!r}")
    h, w = image_shape[-2:]
    if h % grid or w % grid:
        raise ValueError(f"jigsaw_grid {grid} does not divide the image size {h}x{w}: "
                         f"choose a divisor of both (e.g. {_divisors(h, w)})")


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
    makers = {"jigsaw": partial(jigsaw, grid=grid), "rotate": rotate,
              "warp": partial(warp, cells=warp_cells, strength=warp_strength)}
    parts = torch.arange(x.shape[0]).tensor_split(len(kinds))
    out = []
    for kind, idx in zip(kinds, parts):
        if not len(idx):
            continue
        src = x[idx.to(x.device)] if len(kinds) > 1 else x
        out.append(makers[kind](src, generator=generator))
    return torch.cat(out) if len(out) > 1 else out[0]
