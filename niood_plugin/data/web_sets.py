"""Online-only image sets of varying image sizes read by ``torchvision.datasets``: the Describable
Textures Dataset (``DTD``, split ``"test"``, partition 1) and Places365 (``Places365``, split
``"val"``, ``small=True``: the 256x256 images), with ``download=`` passed through.

torchvision lists the files (its own layout and checks); each image is decoded once with
:func:`~niood_plugin.data.decode.decode_images` (gray -> RGB), its shorter side resized to
:data:`SIZE` and center-cropped to ``SIZE x SIZE`` (torchvision transforms, antialiased), and the
uint8 ``[N, 3, SIZE, SIZE]`` tensor is cached as ``<root>/<dirname>/<name>.pt`` (in a read-only
root, under the default data root's ``decoded-cache/``, as for the JPEG folders).

Places365 val has 36,500 images, a lot to decode on a small CPU: only a fixed subset of
:data:`PLACES_KEEP` is decoded, drawn by ``torch.randperm`` seeded with :data:`PLACES_SEED`
(independent of ``load_dataset``'s ``seed``, so the cache is shared) and kept in file order.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from ..errors import DataFormatError
from .decode import cached_decode, decode_images
from .source import NOT_ATTEMPTED, Loaded, Source, construct, short_error, tv_class
from .storage import log, unpack_root

__all__ = ["SIZE", "PLACES_KEEP", "PLACES_SEED", "fit_square", "keep_subset", "WebImageSource"]

#: Side of the stored square images (as Tiny ImageNet is stored; ``to_geometry`` converts later).
SIZE = 64
#: How many Places365 val images are decoded and kept, and the seed that picks them.
PLACES_KEEP = 10_000
PLACES_SEED = 0


def fit_square(img: Tensor, size: int = SIZE) -> Tensor:
    """uint8 ``[C, H, W]`` -> ``[C, size, size]``: shorter side resized to ``size`` (bilinear,
    antialiased), then center-cropped."""
    from torchvision.transforms.v2 import functional as F

    return F.center_crop(F.resize(img, size, antialias=True), [size, size])


def keep_subset(n: int, keep: Optional[int], seed: int = PLACES_SEED) -> list[int]:
    """The indices kept out of ``n``: all when ``keep`` is None or ``n <= keep``, else ``keep`` of
    them drawn by a ``torch.randperm`` seeded with ``seed``, in increasing order."""
    if keep is None or n <= keep:
        return list(range(n))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return sorted(perm[:keep].tolist())


def _decode_fit(files: Sequence[Path], size: int) -> Tensor:
    out = torch.empty((len(files), 3, size, size), dtype=torch.uint8)
    for i, f in enumerate(files):
        out[i] = fit_square(decode_images([f])[0], size)
    return out


def _cached_fit(folder: Path, files: list[Path], size: int, cache: Path) -> Tensor:
    """Decode and fit ``files`` once; reuse ``cache`` while the file list and size are the same
    (:func:`~niood_plugin.data.decode.cached_decode`, with the size in its signature)."""
    rel = [os.path.relpath(f, folder) for f in files]
    x, _ = cached_decode(folder, rel, [-1] * len(rel), [], cache, decode=lambda fs: _decode_fit(fs, size),
                          tag=str(size))
    return x


class WebImageSource(Source):
    """A set in torchvision's own layout under ``<root>/<subdir>`` (downloaded there by torchvision
    when ``download`` and online), read unlabeled (labels -1) as ``SIZE x SIZE`` uint8 images.

    ``needs``: the files (and folders, ending in ``/``) under ``<root>`` that torchvision reads
    for ``tv_split``; ``options``: further arguments of the torchvision class; ``keep``: decode
    only a fixed seeded subset of this many (:func:`keep_subset`); ``cache``: the cache's stem.
    """

    def __init__(self, tv_name: str, hint: str, tv_split: str, needs: Sequence[str], cache: str,
                 subdir: str = "", keep: Optional[int] = None, size: int = SIZE, **options: Any):
        super().__init__(hint)
        self.tv_name, self.tv_split, self.needs, self.cache = tv_name, tv_split, tuple(needs), cache
        self.subdir, self.keep, self.size, self.options = subdir, keep, size, options

    def places(self, spec, root):
        return [root / spec.dirname]

    def _complete(self, root: Path) -> bool:
        return all((root / n).is_dir() if n.endswith("/") else (root / n).is_file() for n in self.needs)

    def find(self, spec, root):
        return (root / spec.dirname, spec.lossy) if self._complete(root) else None

    def files(self, ds: Any) -> list[Path]:
        """The image files of a constructed torchvision dataset, in its order."""
        if hasattr(ds, "imgs"):                      # Places365: [(path, target)]
            return [Path(p) for p, _ in ds.imgs]
        return [Path(p) for p in ds._image_files]     # DTD

    def load(self, spec, root, split, download) -> Loaded:
        local = next((r for r in dict.fromkeys((root, unpack_root(root))) if self._complete(r)), None)
        where = local if local is not None else unpack_root(root)
        err = NOT_ATTEMPTED
        if local is not None or download:
            cls = functools.partial(tv_class(self.tv_name), **self.options)
            try:
                ds = construct(cls, where / self.subdir, self.tv_split, download and local is None, by_split=True)
                files = self.files(ds)
            except Exception as e:  # noqa: BLE001 - offline, incomplete copy: one line
                err = ("local copy unreadable: " if local is not None else "failed: ") + short_error(e)
            else:
                if not files:
                    raise DataFormatError(f"{where / spec.dirname}: torchvision lists no {self.tv_split} images")
                kept = [files[i] for i in keep_subset(len(files), self.keep)]
                if self.keep is not None and len(files) > len(kept):
                    log.info("%s: decoding a fixed subset of %d of the %d images (seed %d)", spec.name,
                             len(kept), len(files), PLACES_SEED)
                folder = where / spec.dirname
                x = _cached_fit(folder, kept, self.size, folder / f"{self.cache}-{self.size}px.pt")
                return x, torch.full((len(kept),), -1, dtype=torch.int64), None
        raise self.not_found(spec, root, err)
