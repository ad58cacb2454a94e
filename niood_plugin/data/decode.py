"""Decoding image files into uint8 tensors, once: :func:`decode_images`, and
:func:`cached_decode`, which keeps the decoded tensor as a ``.pt`` cache next to the files (the
image-file sources, :mod:`~niood_plugin.data.images` and :mod:`~niood_plugin.data.web_sets`,
both read through it)."""
from __future__ import annotations

import os
import time
import warnings
import zlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import DataFormatError
from ..files import atomic_torch_save
from .storage import PathLike, default_data_root, log, writable

__all__ = ["decode_images", "cached_decode"]


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


def cached_decode(folder: Path, rel: list[str], labels: list[int], classes: list[str],
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
