"""Image-file sets (the CIFAR-10 JPEG copy, Tiny ImageNet test): torchvision's ``ImageFolder``
lists them, :func:`~niood_plugin.data.decode.cached_decode` decodes them once and caches the
uint8 tensors as ``.pt``.

A source may serve one :class:`Part` of a folder's images: a fixed validation part of ``size``
images, or the rest (the test part), picked by a ``torch.randperm`` seeded with ``seed`` over the
sorted file list.  Exact duplicates (identical decoded pixels: Tiny ImageNet's test images hold
two such pairs) always fall in the same part, so no image is in both.  The part depends only on
the files (not on ``load_dataset``'s ``seed`` or ``limit``, which subset within the part), and
both parts share the folder's decoded cache."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Optional, Sequence

import torch

from ..errors import DataFormatError
from .decode import cached_decode
from .source import Loaded, Source
from .storage import log, safe_extract, unpack_root

__all__ = ["ImageFolderSource", "Part", "part_indices"]


@dataclass(frozen=True)
class Part:
    """``which="val"``: ``size`` images of a folder chosen by a permutation seeded with ``seed``;
    ``which="test"``: the others."""

    which: str
    size: int
    seed: int


def part_indices(n: int, part: Part, where: object = "the folder",
                 keys: Optional[Sequence[Hashable]] = None) -> list[int]:
    """The indices (increasing) of ``part`` among ``n`` sorted files.  The validation part is the
    first ``part.size`` entries of ``torch.randperm(n)`` seeded with ``part.seed``; with ``keys``
    (one per file, equal for duplicates) it takes whole groups of equal keys, in the order the
    permutation first reaches them, passing over a group that would exceed ``part.size``."""
    if n <= part.size:
        raise DataFormatError(f"{where}: {n} images, but its validation part alone takes {part.size}; "
                              "use the complete archive")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(part.seed)).tolist()
    if keys is None:
        val = set(perm[:part.size])
    else:
        groups: dict[Hashable, list[int]] = {}
        for i, k in enumerate(keys):
            groups.setdefault(k, []).append(i)
        val, seen = set(), set()
        for i in perm:
            if len(val) == part.size:
                break
            if keys[i] not in seen:
                seen.add(keys[i])
                if len(val) + len(groups[keys[i]]) <= part.size:
                    val.update(groups[keys[i]])
    return [i for i in range(n) if (i in val) == (part.which == "val")]


def _pixel_keys(x: torch.Tensor) -> list[bytes]:
    return [hashlib.blake2b(img.numpy().tobytes(), digest_size=16).digest() for img in x]


def _natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


class ImageFolderSource(Source):
    """``<root>/<dirname>/<split>/<class>/*.jpg`` (``layout="classes"``, an ImageFolder) or
    ``<root>/<dirname>/<split>/images/*`` (``layout="flat"``, unlabeled), or the archive
    ``<root>/<archive>`` that unpacks to it.  Decoded once per split, cached as
    ``<root>/<dirname>/<split>.pt``; with ``part``, only that :class:`Part` of the files."""

    def __init__(self, hint: str, layout: str = "classes", part: Optional[Part] = None):
        super().__init__(hint)
        self.layout = layout
        self.part = part

    def _split_dir(self, folder: Path, split: str) -> Path:
        return folder / split / "images" if self.layout == "flat" else folder / split

    def _has(self, folder: Path, splits: Sequence[str]) -> bool:
        return all(self._split_dir(folder, s).is_dir() for s in splits)

    def places(self, spec, root):
        return [root / spec.dirname, root / spec.archive]

    def find(self, spec, root):
        folder, archive = self.places(spec, root)
        if self._has(folder, spec.splits) or archive.is_file():
            return (folder if self._has(folder, spec.splits) else archive), spec.lossy
        return None

    def folder(self, spec, root: Path, split: str) -> Optional[Path]:
        """The folder holding ``split``, unpacking the archive (once) if that is where it is."""
        folder, archive = self.places(spec, root)
        into = unpack_root(root)
        for cand in (folder, into / spec.dirname):
            if self._has(cand, [split]):
                return cand
        if not archive.is_file():
            return None
        if into != root:
            log.warning("%s is read-only: unpacking %s into %s instead", root, archive, into)
        log.info("unpacking %s (once) into %s", archive, into)
        safe_extract(archive, into)
        if not self._has(into / spec.dirname, [split]):
            raise DataFormatError(f"{archive}: archive does not contain {spec.dirname}/ with the {split} split")
        return into / spec.dirname

    def load(self, spec, root, split, download) -> Loaded:
        folder = self.folder(spec, root, split)
        if folder is None:
            raise self.not_found(spec, root, None)
        base = self._split_dir(folder, split)
        if self.layout == "flat":
            from torchvision.datasets.folder import IMG_EXTENSIONS

            with os.scandir(base) as it:
                rel = [e.name for e in it if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS)]
            # natural order (img2 before img10); zero-padded names of one length: plain order
            rel.sort(key=None if len({len(r) for r in rel}) <= 1 else _natural_key)
            labels, classes = [-1] * len(rel), []
        else:
            from torchvision.datasets import ImageFolder

            try:
                found = ImageFolder(str(base), loader=str)   # lists <class>/* only; decoding is ours
            except FileNotFoundError as e:
                raise DataFormatError(f"{base}: no images in <class>/ sub-folders ({e})") from e
            rel = [os.path.relpath(p, base) for p, _ in found.samples]
            labels, classes = [t for _, t in found.samples], list(found.classes)
        if not rel:
            raise DataFormatError(f"{base}: no images found")
        x, y = cached_decode(base, rel, labels, classes, folder / f"{split}.pt")
        if self.part is not None:
            idx = torch.tensor(part_indices(len(rel), self.part, base, keys=_pixel_keys(x)))
            x, y = x[idx], y[idx]
        return x, y, (classes or None)
