"""Generated sets: noise images (``gaussian``, ``uniform``) and a small learnable ``synthetic`` set.

The noise is drawn here, vectorised, rather than with pytorch-ood's ``GaussianNoise`` /
``UniformNoise``: those draw one PIL image per ``__getitem__`` from a shared numpy generator
(so an image depends on the order items are read, not only on the seed), quantise to uint8
with N(128, 128) / U(0, 255), and take seconds per 10,000 images.  Ours is N(0, 1) clipped to
[-1, 1] resp. U(-1, 1) in float, the same for a seed however it is read, and identical to the
sets the committed benchmarks were scored on.
"""
from __future__ import annotations

import math
import zlib
from typing import Sequence

import torch
from torch import Tensor

from ..validation import Interval, Options, check_param, validate_params
from .tensors import IMAGE_SHAPE, SEED, subset_indices, to_geometry
from ..errors import InvalidArgumentError

__all__ = ["make_noise", "make_synthetic", "split_seed", "DEFAULT_NOISE_SIZE", "SYNTHETIC_PER_CLASS",
           "SYNTHETIC_CLASSES", "SYNTHETIC_SHAPE"]

#: Number of images generated for ``gaussian``/``uniform`` when no ``limit`` is given.
DEFAULT_NOISE_SIZE = 10_000
#: Images per class of the ``synthetic`` set, per split.
SYNTHETIC_PER_CLASS = {"train": 300, "test": 100}
SYNTHETIC_CLASSES = 10
SYNTHETIC_SHAPE = (1, 28, 28)


def split_seed(seed: int, name: str, split: str) -> int:
    """A stable seed per (seed, dataset, split): train and test are generated differently."""
    return zlib.crc32(f"{name}:{split}:{int(seed)}".encode()) & 0x7FFFFFFF


def make_noise(kind: str, n: int, image_shape: Sequence[int], seed: int = 0) -> Tensor:
    """``n`` noise images: ``"gaussian"`` N(0, 1) clipped to [-1, 1], or ``"uniform"`` U(-1, 1)."""
    validate_params({"kind": kind, "n": n, "image_shape": image_shape, "seed": seed},
                    {"kind": [Options("gaussian", "uniform")], "n": [Interval(int, 0, None)],
                     "image_shape": [IMAGE_SHAPE], "seed": [SEED]}, "make_noise")
    shape = (int(n), *(int(s) for s in image_shape))
    gen = torch.Generator().manual_seed(int(seed))
    if kind == "gaussian":
        return torch.randn(shape, generator=gen).clamp_(-1.0, 1.0)
    return torch.rand(shape, generator=gen).mul_(2.0).sub_(1.0)


def _templates(num_classes: int, size: int) -> Tensor:
    """Fixed class patterns ``[K, H, W]`` in [0, 1]: oriented stripes in a disc plus a blob."""
    coords = torch.linspace(-1.0, 1.0, size)
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    disc = ((u ** 2 + v ** 2) < 0.85 ** 2).float()
    out = []
    for k in range(num_classes):
        theta = math.pi * k / num_classes
        freq = 1.5 + 0.75 * (k % 3)
        along = u * math.cos(theta) + v * math.sin(theta)
        stripes = 0.5 * (1 + torch.cos(2 * math.pi * freq * along))
        phi = 2 * math.pi * k / num_classes
        cx, cy = 0.5 * math.cos(phi), 0.5 * math.sin(phi)
        blob = torch.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * 0.18 ** 2))
        out.append((0.55 * stripes * disc + blob).clamp(0, 1))
    return torch.stack(out)


def make_synthetic(n_per_class: int, seed: int = 0, num_classes: int = SYNTHETIC_CLASSES,
                   size: int = 28, noise: float = 0.3) -> tuple[Tensor, Tensor]:
    """A learnable ``num_classes``-class set of ``[N, 1, size, size]`` images in [-1, 1].

    The class patterns are fixed; ``seed`` draws each image's shift (up to 1 pixel),
    brightness and additive Gaussian noise, and the (shuffled) order.
    """
    validate_params({"n_per_class": n_per_class, "seed": seed, "num_classes": num_classes, "size": size,
                     "noise": noise},
                    {"n_per_class": [Interval(int, 1, None)], "seed": [SEED], "num_classes": [Interval(int, 1, None)],
                     "size": [Interval(int, 3, None)], "noise": [Interval(float, 0, None)]}, "make_synthetic")
    gen = torch.Generator().manual_seed(int(seed))
    templates = _templates(num_classes, size)
    n = n_per_class * num_classes
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    y = y[torch.randperm(n, generator=gen)]
    # every class pattern under every shift of up to 1 pixel: [K, 9, H, W]
    rolled = torch.stack([torch.roll(templates, shifts=(dy, dx), dims=(1, 2))
                          for dy in range(-1, 2) for dx in range(-1, 2)], dim=1)
    shift = torch.randint(0, rolled.shape[1], (n,), generator=gen)
    amp = 0.75 + 0.5 * torch.rand(n, 1, 1, generator=gen)
    x = rolled[y, shift].mul_(2.0 * amp).sub_(1.0)
    x.add_(torch.randn(x.shape, generator=gen), alpha=noise)
    return x.clamp_(-1.0, 1.0).unsqueeze(1), y.to(torch.int64)


def generate(name: str, split: str, image_shape, limit, seed: int) -> tuple[Tensor, Tensor, list[str] | None]:
    """``x`` float [-1, 1], ``y``, classes of a generated set (``limit``: size or subset)."""
    if name in ("gaussian", "uniform"):
        if image_shape is None:
            raise InvalidArgumentError(f"{name} is generated in the caller's geometry: pass image_shape=(C, H, W)")
        n = limit if limit is not None else DEFAULT_NOISE_SIZE
        x = make_noise(name, n, image_shape, split_seed(seed, name, split))
        return x, torch.full((n,), -1, dtype=torch.int64), None
    check_param("name", name, [Options("synthetic")], "generate")
    x, y = make_synthetic(SYNTHETIC_PER_CLASS[split], split_seed(seed, name, split))
    idx = subset_indices(y, limit, seed)
    if idx is not None:
        x, y = x[idx], y[idx]
    if image_shape is not None and tuple(image_shape) != tuple(x.shape[1:]):
        x = to_geometry(x, image_shape)
    return x, y, [str(k) for k in range(SYNTHETIC_CLASSES)]
