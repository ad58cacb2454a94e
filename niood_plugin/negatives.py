"""Negative augmentations: ID images made out-of-distribution, for the garbage class.

Not in the report; opt-in through ``InversionConfig.jigsaw``.  A jigsaw image cuts an ID image
into a ``grid x grid`` mesh of tiles and shuffles them: the local statistics (strokes, edges,
textures, intensity) stay in-distribution, the global shape does not.  Labelled as garbage,
such images teach the classifier that ID-looking parts are not enough, which generated and
noise garbage do not.  Jigsaw is one of the "negative data augmentations" of Sinha et al.,
*Negative Data Augmentation*, ICLR 2021.

When they join matters (``InversionConfig.jigsaw_from``).  From the first epoch on, the
classifier learns to tell jigsaw images from ID images by cues of their own (our guess: the
seams between tiles), and the garbage class does not catch other datasets any better.  Added
in the last epochs of training, when the ID features are learned, the negatives are told apart
by those features, "no coherent ID object", which also holds for other datasets.  README
"Jigsaw negatives" has the measurements.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


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
