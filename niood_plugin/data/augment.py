"""Batch augmentation on tensors and the in-memory batch loader that applies it.

:class:`CropFlip` is standard CIFAR practice (random crop of a padded image, random horizontal
flip) drawn *per image* for a whole batch in one indexing operation, on the batch's device
(CPU or CUDA) and for any dtype (uint8 or float).  torchvision's ``v2.RandomCrop`` /
``v2.RandomHorizontalFlip`` draw one set of parameters per call, so on a batch tensor every
image would get the same crop; per-image PIL transforms are the per-item Python work this
package avoids.  ``CropFlip(pad=2)`` is airbench94's augmentation (Jordan 2024,
arXiv:2404.00498): random flip and a random translation of up to 2 pixels with reflect padding,
registered as ``"flip-translate2"``.  The paper's derandomised "alternating" flip (each image
flipped in every other epoch) is not provided: the flip is drawn per image and batch.

:class:`BatchLoader` yields ``(x, y)`` batches sliced from tensors held in memory (uint8 when
the images are exactly 8-bit, as real image sets are), shuffled by one seeded generator,
augmented per batch and converted to float32 in [-1, 1] on the target device.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Optional

import torch
from torch import Tensor
from torch.utils.data import Sampler

from ..registry import Registry
from ..validation import Boolean, InstanceOf, Interval, validate_params
from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = ["CropFlip", "BatchLoader", "AUGMENTATIONS", "build_augmentation", "list_augmentations"]


def _reflect(i: Tensor, n: int) -> Tensor:
    """Indices reflected into ``[0, n)`` (``-1 -> 1``, ``n -> n - 2``), as reflect padding does."""
    i = i.abs()
    return torch.where(i >= n, 2 * (n - 1) - i, i)


class CropFlip:
    """Random ``pad``-pixel translation with reflect padding (a random crop of the padded
    image, same size) and, with ``flip``, a horizontal flip with probability 1/2, per image.

    ``CropFlip()(x, generator)`` takes ``[N, C, H, W]`` of any dtype on any device; the random
    draws come from ``generator`` (a CPU ``torch.Generator``), so a seed gives the same images
    on every device.
    """

    _parameter_constraints = {"pad": [Interval(int, 0, None)], "flip": [Boolean()]}

    def __init__(self, pad: int = 4, flip: bool = True):
        validate_params({"pad": pad, "flip": flip}, self._parameter_constraints, "CropFlip")
        self.pad, self.flip = pad, flip

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        if x.dim() != 4:
            raise InvalidArgumentError(f"CropFlip expects a batch [N, C, H, W], got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        p = self.pad
        rows = torch.arange(h).expand(n, h)
        cols = torch.arange(w).expand(n, w)
        if p:
            if p >= min(h, w):
                raise InvalidArgumentError(f"CropFlip(pad={p}) needs images larger than {p} pixels, got {h}x{w}")
            rows = _reflect(rows + torch.randint(-p, p + 1, (n, 1), generator=generator), h)
            cols = _reflect(cols + torch.randint(-p, p + 1, (n, 1), generator=generator), w)
        if self.flip:
            cols = torch.where(torch.rand(n, 1, generator=generator) < 0.5, cols.flip(1), cols)
        dev = x.device
        index_n = torch.arange(n, device=dev)[:, None, None, None]
        index_c = torch.arange(c, device=dev)[None, :, None, None]
        return x[index_n, index_c, rows.to(dev)[:, None, :, None], cols.to(dev)[:, None, None, :]]

    def __repr__(self) -> str:
        return f"CropFlip(pad={self.pad}, flip={self.flip})"


#: Batch augmentations by name (``niood-bench --set``/config ``augment``).
AUGMENTATIONS: Registry[Any] = Registry("augmentation")
AUGMENTATIONS.register("crop-flip", CropFlip)
AUGMENTATIONS.register("flip", lambda: CropFlip(pad=0))
AUGMENTATIONS.register("flip-translate2", lambda: CropFlip(pad=2))  # airbench94's flip + 2-pixel reflect translation


def list_augmentations() -> list[str]:
    return ["none", *AUGMENTATIONS.list()]


def build_augmentation(name: Optional[str]) -> Optional[CropFlip]:
    """The augmentation called ``name``; ``None`` or ``"none"``: no augmentation."""
    if name is None or name == "none":
        return None
    return AUGMENTATIONS.create(name)


def _exact_u8(x: Tensor) -> Optional[Tensor]:
    """``x`` (float in [-1, 1]) as uint8 when ``2 p / 255 - 1`` gives it back bit for bit, else None."""
    if x.dtype != torch.float32 or x.numel() == 0:
        return None
    q = ((x + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    return q if torch.equal(q.to(torch.float32).div_(127.5).sub_(1.0), x) else None


class BatchLoader:
    """``(x, y)`` batches of in-memory images: float32 in [-1, 1] on ``device``.

    :param x: images ``[N, C, H, W]``, float in [-1, 1] (kept as uint8 when they are exactly
        8-bit, converted per batch) or uint8 pixels
    :param y: labels ``[N]``
    :param shuffle: a new order every pass, ``torch.randperm(N, generator=self.generator)``
        (the order torch's ``RandomSampler`` gives for the same seed)
    :param sampler: instead of ``shuffle``, the order of a torch sampler, e.g. this rank's
        :class:`~torch.utils.data.DistributedSampler` (call ``loader.sampler.set_epoch(e)``
        before each pass, as with a DataLoader)
    :param augment: a batch transform ``augment(x, generator)`` (e.g. :class:`CropFlip`)
    :param device: where the images are held and the batches made (``"cuda"``: no host copies)
    :param channels_last: yield channels-last batches

    The generator (``self.generator``) is saved and restored with trainer checkpoints, so a
    resumed run sees the same batches as an uninterrupted one.
    """

    _parameter_constraints = {
        "x": [InstanceOf(Tensor)], "y": [InstanceOf(Tensor)], "batch_size": [Interval(int, 1, None)],
        "shuffle": [Boolean()], "seed": [Interval(int, 0, 2**63 - 1)], "drop_last": [Boolean()],
        "channels_last": [Boolean()], "sampler": [InstanceOf(Sampler), None],
    }

    def __init__(self, x: Tensor, y: Tensor, batch_size: int = 128, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, augment: Any = None, device: "str | torch.device" = "cpu",
                 channels_last: bool = False, sampler: Optional[Sampler] = None):
        validate_params(dict(x=x, y=y, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                             channels_last=channels_last, sampler=sampler), self._parameter_constraints, "BatchLoader")
        if sampler is not None and shuffle:
            raise InvalidArgumentError("BatchLoader: shuffle=True and a sampler exclude each other (the sampler sets the "
                             "order; give the sampler shuffle=True)")
        if x.dim() != 4 or y.dim() != 1 or x.shape[0] != y.shape[0]:
            raise InvalidArgumentError(f"BatchLoader needs x [N, C, H, W] and y [N], got {tuple(x.shape)} and {tuple(y.shape)}")
        if augment is not None and not callable(augment):
            raise InvalidTypeError(f"augment must be callable as augment(x, generator), got {type(augment).__name__}")
        self.device = torch.device(device)
        stored = x if x.dtype == torch.uint8 else _exact_u8(x)
        self._x = (x.float() if stored is None else stored).to(self.device)
        self._y = y.to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment, self.channels_last = augment, channels_last
        self.generator = torch.Generator().manual_seed(seed)
        self.sampler = sampler

    def __len__(self) -> int:
        n = int(self._y.shape[0]) if self.sampler is None else len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = int(self._y.shape[0])
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        if self.sampler is not None:
            order = torch.as_tensor(list(self.sampler), dtype=torch.long)
            n = int(order.shape[0])
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, n)
            if order is None:
                x, y = self._x[lo:hi], self._y[lo:hi]
            else:
                idx = order[lo:hi].to(self.device)
                x, y = self._x[idx], self._y[idx]
            if self.augment is not None:
                x = self.augment(x, self.generator)
            if x.dtype == torch.uint8:
                x = x.to(torch.float32).div_(127.5).sub_(1.0)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y
