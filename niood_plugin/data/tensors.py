"""In-memory datasets (:class:`TensorData`), geometry conversion and stratified subsets."""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ..validation import Interval, check_param
from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = ["TensorData", "LUMA_WEIGHTS", "IMAGE_SHAPE", "SEED", "to_geometry", "subset_indices"]

#: ITU-R BT.601 luma weights used for RGB -> gray.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
_CHUNK = 8192  # images converted at a time (bounds peak memory)


class _ImageShape:
    """Constraint: ``(C, H, W)`` with ``C`` in (1, 3) and ``H, W`` positive ints."""

    def accepts(self, value: Any) -> bool:
        try:
            dims = tuple(value)
        except TypeError:
            return False
        return (len(dims) == 3 and all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0
                                       for d in dims) and dims[0] in (1, 3))

    def __str__(self) -> str:
        return "(C, H, W) with C in (1, 3) and H, W positive ints"


IMAGE_SHAPE = _ImageShape()
SEED = Interval(int, 0, 2**63 - 1)


def _shape(image_shape: Sequence[int], owner: str) -> tuple[int, int, int]:
    check_param("image_shape", image_shape, [IMAGE_SHAPE], owner)
    return tuple(int(s) for s in image_shape)  # type: ignore[return-value]


@dataclass
class TensorData:
    """An in-memory dataset: ``x`` float32 ``[N, C, H, W]`` in [-1, 1], ``y`` int64 ``[N]``.

    It is itself a map-style dataset (``data[i] -> (x[i], y[i])``); :meth:`loader` gives a
    fast :class:`~niood_plugin.data.augment.BatchLoader` that slices whole batches at once.
    """

    x: Tensor
    y: Tensor
    name: str
    classes: Optional[list[str]] = None

    def __post_init__(self) -> None:
        if self.x.dim() != 4:
            raise InvalidArgumentError(f"{self.name}: x must be [N, C, H, W], got shape {tuple(self.x.shape)}")
        if self.y.dim() != 1 or self.y.shape[0] != self.x.shape[0]:
            raise InvalidArgumentError(f"{self.name}: y must be [N] with N={self.x.shape[0]}, "
                             f"got shape {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        return self.x[index], self.y[index]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(int(s) for s in self.x.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> Optional[int]:
        """Number of classes, or None when unlabeled (all labels -1)."""
        if self.classes is not None:
            return len(self.classes)
        if len(self) == 0 or int(self.y.max()) < 0:
            return None
        return int(self.y.max()) + 1

    def dataset(self) -> TensorDataset:
        """A :class:`TensorDataset` over ``(x, y)``."""
        return TensorDataset(self.x, self.y)

    def loader(self, batch_size: int = 128, shuffle: bool = False, seed: int = 0, drop_last: bool = False,
               augment: Any = None, device: "str | torch.device" = "cpu", channels_last: bool = False,
               distributed: bool = False):
        """A :class:`~niood_plugin.data.augment.BatchLoader` of ``(x, y)`` batches: sliced from
        the tensors in one indexing operation (no per-item collation), held as uint8 when the
        images are 8-bit, shuffled by a generator seeded by ``seed`` (a new order every pass),
        augmented per batch by ``augment`` (e.g. ``CropFlip()``), made on ``device``.

        With ``distributed=True`` under an initialised process group (``torchrun``) it yields
        this rank's shard: the order of torch's ``DistributedSampler(shuffle=shuffle,
        seed=seed)`` (``loader.sampler``; the trainers call its ``set_epoch``), augmentation
        drawn from a per-rank seed; without a process group it is the plain loader.
        """
        from .. import distributed as dist
        from .augment import BatchLoader

        sampler = dist.sampler(len(self), shuffle, seed) if distributed else None
        if sampler is not None:
            shuffle, seed = False, dist.rank_seed(seed)
        return BatchLoader(self.x, self.y, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                           augment=augment, device=device, channels_last=channels_last, sampler=sampler)


def to_geometry(x: Tensor, image_shape: Sequence[int]) -> Tensor:
    """Convert ``[N, C, H, W]`` images in [-1, 1] to ``image_shape = (C', H', W')``.

    RGB -> gray uses the ITU-R 601 luma weights (0.299, 0.587, 0.114) (a weighted sum, exact in
    [-1, 1] space since the weights add to 1); gray -> RGB repeats the channel; a different size
    is reached with bilinear, antialiased interpolation directly to ``H' x W'`` (aspect ratio is
    not kept).  The result is float, clamped to [-1, 1].
    """
    c_out, h_out, w_out = _shape(image_shape, "to_geometry")
    if x.dim() != 4:
        raise InvalidArgumentError(f"to_geometry expects [N, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InvalidTypeError(f"to_geometry expects float images in [-1, 1], got dtype {x.dtype}")
    c_in = x.shape[1]
    if c_in not in (c_out, 1) and not (c_in == 3 and c_out == 1):
        raise InvalidArgumentError(f"cannot convert {c_in} channels to {c_out}")
    # Channel mixing and resizing are both linear, so their order does not change the result:
    # reduce channels before resizing and repeat them after, to resize as little as possible.
    if c_in == 3 and c_out == 1:
        w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x * w).sum(dim=1, keepdim=True)
    if tuple(x.shape[2:]) != (h_out, w_out):
        x = torch.nn.functional.interpolate(x, size=(h_out, w_out), mode="bilinear",
                                            antialias=True, align_corners=False)
    if x.shape[1] == 1 and c_out == 3:
        x = x.expand(-1, 3, -1, -1)
    return x.clamp(-1.0, 1.0)


def u8_to_float(x_u8: Tensor, image_shape: Optional[Sequence[int]]) -> Tensor:
    """uint8 ``[N, C, H, W]`` -> float32 [-1, 1] (``2 p / 255 - 1``) in the target geometry,
    chunk by chunk (the uint8 tensor is never copied to float all at once when resizing)."""
    target = tuple(x_u8.shape[1:]) if image_shape is None else _shape(image_shape, "load_dataset")
    if tuple(x_u8.shape[1:]) == target:   # one pass over the whole tensor is fastest
        return x_u8.to(torch.float32).div_(127.5).sub_(1.0)
    n = int(x_u8.shape[0])
    out = torch.empty((n, *target), dtype=torch.float32)
    for i in range(0, n, _CHUNK):
        chunk = x_u8[i:i + _CHUNK].to(torch.float32).div_(127.5).sub_(1.0)
        out[i:i + _CHUNK] = to_geometry(chunk, target)
    return out


def subset_indices(y: Tensor, limit: Optional[int], seed: int = 0) -> Optional[Tensor]:
    """Indices (ascending) of a deterministic, class-balanced subset of ``limit`` items.

    A permutation seeded by ``seed`` is taken; classes are then interleaved round-robin in that
    order (the k-th item of each class before the (k+1)-th of any), and the first ``limit`` kept,
    so class counts differ by at most one where the classes are large enough.  Returns None when
    no subset is needed (``limit`` is None or >= ``len(y)``).

    Not scikit-learn's ``train_test_split(stratify=y)``: that keeps the class *proportions*
    (90/10 stays 90/10), this balances the classes (10/10 out of 90/10), and the committed
    benchmarks' feature-fit subsets are exactly these indices.
    """
    check_param("limit", limit, [Interval(int, 1, None), None], "subset_indices")
    check_param("seed", seed, [SEED], "subset_indices")
    if y.dim() != 1:
        raise InvalidArgumentError(f"subset_indices expects labels [N], got shape {tuple(y.shape)}")
    n = int(y.shape[0])
    if limit is None or limit >= n:
        return None
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).numpy()
    yp = y.numpy()[perm]
    order = np.argsort(yp, kind="stable")
    sorted_y = yp[order]
    starts = np.searchsorted(sorted_y, sorted_y, side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64) - starts     # position of each item within its class
    key = rank * n + np.arange(n, dtype=np.int64)
    chosen = perm[np.argsort(key, kind="stable")[:int(limit)]]
    return torch.from_numpy(np.sort(chosen))
