"""Sets read by ``torchvision.datasets``: MNIST and Fashion-MNIST (``MNIST``, ``FashionMNIST``),
CIFAR-10/100 and SVHN (``CIFAR10``, ``CIFAR100``, ``SVHN``), with ``download=`` passed through.

The torchvision class is looked up by name when a set is loaded (:func:`~niood_plugin.data.source.tv_class`),
so a test (or a user) can stand in for ``torchvision.datasets.MNIST`` with ``monkeypatch.setattr``.
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import DataFormatError, DatasetNotFoundError
from ..files import atomic_write_bytes
from .source import NOT_ATTEMPTED, DatasetSpec, Loaded, Source, construct, short_error, tv_class
from .storage import log, safe_extract, unpack_root

__all__ = ["IdxSource", "TorchvisionSource"]

class IdxSource(Source):
    """MNIST-style IDX files read by ``torchvision.datasets.<tv_name>`` from its own layout,
    ``<root>/<tv_name>/raw/*-ubyte``.

    Also found, and decompressed/copied into that layout once (into the default data root when
    ``root`` is read-only): ``*-ubyte.gz`` files in ``raw/``, the IDX files (gzipped or not) in
    ``<root>/<dirname>/``, and the archive ``<root>/<archive>`` that unpacks to ``<dirname>/``.
    """

    def __init__(self, tv_name: str, hint: str):
        super().__init__(hint)
        self.tv_name = tv_name

    def stems(self) -> list[str]:
        """The four IDX file names torchvision expects (from the class's ``resources``)."""
        return [os.path.basename(url)[:-len(".gz")] for url, _ in tv_class(self.tv_name).resources]

    def raw(self, root: Path) -> Path:
        return root / self.tv_name / "raw"

    def places(self, spec, root):
        return [self.raw(root), root / spec.dirname, root / spec.archive]

    def _complete(self, folder: Path, gz: bool = True) -> bool:
        return all((folder / s).is_file() or (gz and (folder / f"{s}.gz").is_file()) for s in self.stems())

    def find(self, spec, root):
        *folders, archive = self.places(spec, root)
        for place in folders:
            if self._complete(place):
                return place, spec.lossy
        return (archive, spec.lossy) if archive.is_file() else None

    def _install(self, src: Path, raw: Path) -> None:
        """Copy or decompress the IDX files of ``src`` into torchvision's ``raw`` folder."""
        for stem in self.stems():
            if (raw / stem).is_file():
                continue
            plain, packed = src / stem, src / f"{stem}.gz"
            try:
                data = plain.read_bytes() if plain.is_file() else gzip.decompress(packed.read_bytes())
            except (gzip.BadGzipFile, EOFError, zlib.error) as e:
                raise DataFormatError(f"{packed}: corrupt or truncated gzip file ({e})") from e
            try:
                atomic_write_bytes(raw / stem, data)
            except OSError as e:
                raise DatasetNotFoundError(f"cannot place the IDX files of {src} in {raw} ({e.strerror or e}); "
                                           "pass a writable data root or set NIOOD_DATA") from e
        log.info("IDX files of %s placed in %s", src, raw)

    def _prepare(self, spec, root: Path) -> Optional[Path]:
        """A torchvision root whose ``<tv_name>/raw`` holds the four uncompressed files, or None."""
        into = unpack_root(root)
        for tv_root in (root, into):
            if self._complete(self.raw(tv_root), gz=False):
                return tv_root
        for folder in (self.raw(root), root / spec.dirname, into / spec.dirname):
            if self._complete(folder):
                self._install(folder, self.raw(into))
                return into
        archive = root / spec.archive
        if archive.is_file():
            safe_extract(archive, into)
            if not self._complete(into / spec.dirname):
                raise DataFormatError(f"{archive}: archive does not contain {spec.dirname}/ with the IDX files")
            self._install(into / spec.dirname, self.raw(into))
            return into
        return None

    def _corrupt(self, tv_root: Path, split: str, err: BaseException) -> DataFormatError:
        from torchvision.datasets.mnist import read_image_file, read_label_file

        prefix = "train" if split == "train" else "t10k"
        for stem, read in ((f"{prefix}-images-idx3-ubyte", read_image_file),
                           (f"{prefix}-labels-idx1-ubyte", read_label_file)):
            path = self.raw(tv_root) / stem
            try:
                read(str(path))
            except Exception as e:  # noqa: BLE001 - this is the file that fails
                return DataFormatError(f"{path}: corrupt IDX file ({short_error(e) if str(e) else 'bad header'}); "
                                       "delete it and get the set again")
        return DataFormatError(f"{self.raw(tv_root)}: corrupt {split} IDX files ({short_error(err)})")

    def load(self, spec, root, split, download) -> Loaded:
        cls = tv_class(self.tv_name)
        tv_root = self._prepare(spec, root)
        if tv_root is not None:
            try:
                ds = construct(cls, tv_root, split, False)
            except (AssertionError, RuntimeError, ValueError, TypeError, IndexError) as e:
                raise self._corrupt(tv_root, split, e) from e
        elif not download:
            raise self.not_found(spec, root, NOT_ATTEMPTED)
        else:
            tv_root = unpack_root(root)
            try:
                ds = construct(cls, tv_root, split, True)
            except Exception as e:  # noqa: BLE001 - offline / unreachable: one line
                raise self.not_found(spec, root, "failed: " + short_error(e)) from None
        x, y = ds.data.unsqueeze(1).to(torch.uint8), ds.targets.to(torch.int64)
        labels = self.raw(tv_root) / f"{'train' if split == 'train' else 't10k'}-labels-idx1-ubyte"
        if y.shape[0] != x.shape[0]:
            raise DataFormatError(f"{labels}: {y.shape[0]} labels for {x.shape[0]} images; the files are corrupt")
        bad = torch.nonzero((y < 0) | (y >= spec.num_classes)).flatten()
        if len(bad):
            i = int(bad[0])
            raise DataFormatError(f"{labels}: corrupt label file: label {int(y[i])} at index {i} ({len(bad)} bad "
                                  f"in all), but {spec.name} has classes 0-{spec.num_classes - 1}; get the file again")
        return x, y, list(cls.classes)


class TorchvisionSource(Source):
    """A set in torchvision's own files under ``<root>`` (``<root>/svhn`` for SVHN), downloaded
    by torchvision when ``download`` and online; optionally the set ``fallback`` (a
    :class:`~niood_plugin.data.source.DatasetSpec` with a source) when missing."""

    def __init__(self, tv_name: str, hint: str, fallback: Optional[DatasetSpec] = None, subdir: str = "",
                 by_split: bool = False):
        super().__init__(hint)
        self.tv_name, self.fallback, self.subdir, self.by_split = tv_name, fallback, subdir, by_split

    def _files(self, root: Path) -> list[Path]:
        """The files torchvision needs for both splits (from the class's own file lists)."""
        cls = tv_class(self.tv_name)
        if self.by_split:   # SVHN
            return [root / self.subdir / cls.split_list[s][1] for s in ("train", "test")]
        return [root / self.subdir / cls.base_folder / f for f, _ in cls.train_list + cls.test_list]

    def places(self, spec, root):
        fb = self.fallback
        return [self._files(root)[0].parent] + (fb.source.places(fb, root) if fb else [])

    def find(self, spec, root):
        if all(f.is_file() for f in self._files(root)):
            return self._files(root)[0].parent, spec.lossy
        fb = self.fallback
        got = fb.source.find(fb, root) if fb else None
        return (got[0], True) if got else None

    def load(self, spec, root, split, download) -> Loaded:
        local = all(f.is_file() for f in self._files(root))
        err = NOT_ATTEMPTED
        if local or download:
            where = root if local else unpack_root(root)
            try:
                ds = construct(tv_class(self.tv_name), where / self.subdir, split, download and not local,
                                self.by_split)
                data = torch.as_tensor(np.ascontiguousarray(ds.data))
                if data.shape[-1] == 3:                          # CIFAR: [N, H, W, C]
                    data = data.permute(0, 3, 1, 2).contiguous()
                targets = ds.labels if self.by_split else ds.targets
                y = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
                return data.to(torch.uint8), y, (list(ds.classes) if hasattr(ds, "classes") else None)
            except Exception as e:  # noqa: BLE001 - offline, corrupt: one line
                err = ("local copy unreadable: " if local else "failed: ") + short_error(e)
        fb = self.fallback
        if fb is not None and fb.source.find(fb, root) is not None:
            log.warning("%s: torchvision copy unavailable (%s); using the %s copy under %s, which is LOSSY "
                        "(JPEG, about quality 75): pixels are not bit-exact, say so when reporting results",
                        spec.name, err, fb.name, root)
            return fb.source.load(fb, root, split, download)
        raise self.not_found(spec, root, err)
