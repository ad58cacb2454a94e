"""Image-file sets (the CIFAR-10 JPEG copy, Tiny ImageNet test): torchvision's ``ImageFolder``
lists them, torchvision decodes them once, and the decoded uint8 tensors are cached as ``.pt``."""
from __future__ import annotations

import os
import re
import time
import warnings
import zlib
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import DataFormatError
from ..files import atomic_torch_save
from .source import Loaded, Source
from .storage import PathLike, default_data_root, log, safe_extract, unpack_root, writable

__all__ = ["decode_images", "ImageFolderSource"]


def _pil_decode(path: str) -> Tensor:
    from PIL import UnidentifiedImageError
    from torchvision.datasets.folder import pil_loader

    try:
        return torch.from_numpy(np.array(pil_loader(path))).permute(2, 0, 1)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataFormatError(f"{path}: cannot decode image ({e})") from e


def decode_images(paths: Sequence[PathLike]) -> Tensor:
    """Decode image files of one size into a uint8 ``[N, 3, H, W]`` tensor (gray -> RGB).

    Uses ``torchvision.io.decode_image`` (libjpeg-turbo; deprecated in torchvision 0.29 in
    favour of TorchCodec, so its warning is silenced), else PIL through ImageFolder's
    ``pil_loader``; on the JPEG sets here both give identical pixels.  A file that cannot be
    decoded, or of another size than the first, raises :class:`DataFormatError` naming it.
    """
    files = [os.fspath(p) for p in paths]
    imgs: list[Tensor] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from torchvision.io import ImageReadMode, decode_image, read_file
        except Exception:  # noqa: BLE001 - torchvision without its image extension: PIL
            decode_image = None
        for f in files:
            img = None
            if decode_image is not None:
                try:
                    img = decode_image(read_file(f), mode=ImageReadMode.RGB)
                except RuntimeError:   # not decodable by torchvision: PIL decides (and names the file)
                    pass
            if img is None:
                img = _pil_decode(f)
            if imgs and img.shape != imgs[0].shape:
                raise DataFormatError(f"{f}: image is {tuple(img.shape[1:])}, expected "
                                      f"{tuple(imgs[0].shape[1:])} like the others")
            imgs.append(img)
    return torch.stack(imgs) if imgs else torch.empty((0, 3, 0, 0), dtype=torch.uint8)


def _cached_decode(folder: Path, rel: list[str], labels: list[int], classes: list[str],
                   cache: Path, decode: Callable[[list[Path]], Tensor] = decode_images,
                   tag: str = "") -> tuple[Tensor, Tensor]:
    """Decode ``folder/<rel>`` once (with ``decode``); reuse ``cache`` (a ``.pt``) while the file
    list (and ``tag``, e.g. the decoded size) is the same.

    In a read-only folder the cache is kept under the default data root instead.
    """
    sig = zlib.crc32(("\n".join(rel) + (f"\n{tag}" if tag else "")).encode())
    if not cache.is_file() and not writable(cache.parent):
        cache = (default_data_root() / "decoded-cache"
                 / f"{cache.stem}-{zlib.crc32(str(folder.resolve()).encode()):08x}.pt")
    if cache.is_file():
        try:
            obj = torch.load(cache, map_location="cpu", weights_only=True)
            if (int(obj["signature"]) == sig and list(obj["classes"]) == classes
                    and int(obj["x"].shape[0]) == len(rel)):
                log.debug("using decoded-image cache %s", cache)
                return obj["x"], obj["y"]
            log.info("image cache %s is stale; decoding again", cache)
        except Exception as e:  # noqa: BLE001 - a broken cache is rebuilt
            log.warning("ignoring unreadable image cache %s (%s)", cache, e)
    t0 = time.perf_counter()
    x = decode([folder / r for r in rel])
    y = torch.tensor(labels, dtype=torch.int64)
    log.info("decoded %d images from %s in %.1f s", len(rel), folder, time.perf_counter() - t0)
    try:
        atomic_torch_save({"x": x, "y": y, "classes": classes, "signature": sig}, cache)
    except OSError as e:
        log.warning("could not write image cache %s (%s); next load decodes again", cache, e)
    return x, y


def _natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


class ImageFolderSource(Source):
    """``<root>/<dirname>/<split>/<class>/*.jpg`` (``layout="classes"``, an ImageFolder) or
    ``<root>/<dirname>/<split>/images/*`` (``layout="flat"``, unlabeled), or the archive
    ``<root>/<archive>`` that unpacks to it.  Decoded once per split, cached as
    ``<root>/<dirname>/<split>.pt``."""

    def __init__(self, hint: str, layout: str = "classes"):
        super().__init__(hint)
        self.layout = layout

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
        x, y = _cached_decode(base, rel, labels, classes, folder / f"{split}.pt")
        return x, y, (classes or None)
