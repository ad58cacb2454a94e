"""Generated sets: noise images (``gaussian``, ``uniform``), procedural ``drawings`` (a far-OOD
validation set) and a small learnable ``synthetic`` set.

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

__all__ = ["make_noise", "make_drawings", "make_synthetic", "split_seed", "DEFAULT_NOISE_SIZE", "DEFAULT_DRAWINGS_SIZE", "SYNTHETIC_PER_CLASS",
           "SYNTHETIC_CLASSES", "SYNTHETIC_SHAPE"]

#: Number of images generated for ``gaussian``/``uniform`` when no ``limit`` is given.
DEFAULT_NOISE_SIZE = 10_000
#: Number of images generated for ``drawings`` when no ``limit`` is given.
DEFAULT_DRAWINGS_SIZE = 2_000
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


def _segment_distance(px: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Distance of the points ``px`` ``[P, 2]`` to the segments ``a -> b`` ``[..., 2]``: ``[..., P]``."""
    ab = (b - a)[..., None, :]
    ap = px - a[..., None, :]
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-9)).clamp(0, 1)
    return (ap - t[..., None] * ab).norm(dim=-1)


def make_drawings(n: int, image_shape: Sequence[int], seed: int = 0, chunk: int = 256) -> Tensor:
    """``n`` procedurally drawn images in [-1, 1]: on a flat background, one to three pen strokes
    (quadratic Bezier curves, 0.3 to 0.7 of the image long, 1.5 to 3.5 pixels wide at 32 pixels)
    and, in half of the images, a filled ellipse or rectangle, each in a colour whose brightness
    differs from the background's by 0.6 to 1.4; half the images grey, half in colour.  A far-OOD
    set of drawn images made without any dataset (no digits, letters or clothing), for choosing
    recipes; never reported.
    """
    validate_params({"n": n, "image_shape": image_shape, "seed": seed},
                    {"n": [Interval(int, 0, None)], "image_shape": [IMAGE_SHAPE], "seed": [SEED]}, "make_drawings")
    c, h, w = (int(s) for s in image_shape)
    gen = torch.Generator().manual_seed(int(seed))
    scale = min(h, w) / 32.0
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    px = torch.stack([xs.flatten() / w, ys.flatten() / h], 1)  # pixel centres in [0, 1]^2
    t = torch.linspace(0, 1, 13)[:, None]

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=gen)

    def tint(m: int, size: float, grey: Tensor) -> Tensor:  # zero-mean over RGB: the brightness stays
        r = size * (rand(m, 3) - 0.5)
        return (r - r.mean(1, keepdim=True)) * (~grey[:, None])

    def colours(m: int, base: Tensor, grey: Tensor) -> tuple[Tensor, Tensor]:
        step = 0.6 + 0.8 * rand(m)
        sign = torch.where(base + step <= 1, 1.0, -1.0)  # away from the background, inside [-1, 1]
        bg, fg = base[:, None] + tint(m, 0.35, grey), (base + sign * step)[:, None] + tint(m, 0.6, grey)
        return bg.clamp(-1, 1), fg.clamp(-1, 1)

    out = []
    for m in [min(chunk, n - i) for i in range(0, n, chunk)]:
        grey = rand(m) < 0.5
        bg, pen = colours(m, 2 * rand(m) - 1, grey)
        _, fill = colours(m, bg.mean(1), grey)  # the shape's: another colour away from the background
        img = bg[:, :, None].expand(m, 3, h * w).clone()
        # a filled ellipse or rectangle in half of the images
        centre, radius = 0.25 + 0.5 * rand(m, 1, 2), 0.12 + 0.25 * rand(m, 1, 2)
        rel = (px - centre) / radius
        inside = torch.where(rand(m, 1) < 0.5, (rel ** 2).sum(-1), rel.abs().amax(-1) ** 2)
        alpha = ((1 - inside) * 4 * scale).clamp(0, 1) * (rand(m, 1) < 0.5)
        img = img * (1 - alpha[:, None]) + fill[:, :, None] * alpha[:, None]
        # one to three strokes
        start, angle = 0.1 + 0.8 * rand(m, 3, 2), 2 * math.pi * rand(m, 3)  # image, stroke, (x, y)
        end = (start + (0.3 + 0.4 * rand(m, 3, 1)) * torch.stack([angle.cos(), angle.sin()], -1)).clamp(0.05, 0.95)
        bend = (start + end) / 2 + 0.6 * (rand(m, 3, 2) - 0.5)
        curve = ((1 - t) ** 2 * start[:, :, None] + 2 * t * (1 - t) * bend[:, :, None]
                 + t ** 2 * end[:, :, None])  # [m, 3, 13, 2]
        dist = _segment_distance(px, curve[:, :, :-1], curve[:, :, 1:]).amin(2) * min(h, w)  # [m, 3, P]
        width = (1.5 + 2 * rand(m, 3, 1)) * scale
        used = torch.arange(3) < torch.randint(1, 4, (m, 1), generator=gen)
        alpha = ((width / 2 + 0.5 - dist).clamp(0, 1) * used[..., None]).amax(1)
        img = img * (1 - alpha[:, None]) + pen[:, :, None] * alpha[:, None]
        img = img.reshape(m, 3, h, w)
        out.append(img if c == 3 else img.mean(1, keepdim=True).expand(m, c, h, w))
    return torch.cat(out).contiguous() if out else torch.empty(0, c, h, w)


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
    if name in ("gaussian", "uniform", "drawings"):  # made in the caller's geometry
        if image_shape is None:
            raise InvalidArgumentError(f"{name} is generated in the caller's geometry: pass image_shape=(C, H, W)")
        n = limit if limit is not None else DEFAULT_DRAWINGS_SIZE if name == "drawings" else DEFAULT_NOISE_SIZE
        sub_seed = split_seed(seed, name, split)
        x = make_drawings(n, image_shape, sub_seed) if name == "drawings" else make_noise(name, n, image_shape, sub_seed)
        return x, torch.full((n,), -1, dtype=torch.int64), None
    check_param("name", name, [Options("synthetic")], "generate")
    x, y = make_synthetic(SYNTHETIC_PER_CLASS[split], split_seed(seed, name, split))
    idx = subset_indices(y, limit, seed)
    if idx is not None:
        x, y = x[idx], y[idx]
    if image_shape is not None and tuple(image_shape) != tuple(x.shape[1:]):
        x = to_geometry(x, image_shape)
    return x, y, [str(k) for k in range(SYNTHETIC_CLASSES)]
