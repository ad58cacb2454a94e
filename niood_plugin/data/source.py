"""The bottom of the dataset layer: :class:`DatasetSpec` (what the library knows about a name),
:class:`Source` (where a real set's files are and how they are read), and the helpers every
source shares (one-line errors, calling a ``torchvision.datasets`` class).

Layering of :mod:`niood_plugin.data`, each module importing only those below it:
``storage``, ``augment``, ``tensors``, ``generated`` (no sources) < ``source``, ``decode`` <
``images``, ``torchvision_sets``, ``web_sets``, ``bundled`` (one family of sources each, none
importing another) < ``catalog`` (every registered name, :func:`~niood_plugin.data.catalog.load_dataset`).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from torch import Tensor

from ..errors import DatasetNotFoundError
from .storage import PathLike, log, resolve_root

__all__ = ["SPLITS", "DatasetSpec", "Source", "Loaded", "NOT_ATTEMPTED", "short_error", "tv_class", "construct"]

SPLITS = ("train", "test")

#: uint8 images ``[N, C, H, W]``, int64 labels ``[N]`` (-1: unlabeled), class names or None.
Loaded = tuple[Tensor, Tensor, Optional[list[str]]]

#: What a not-found message says about torchvision's download when it was not allowed.
NOT_ATTEMPTED = "not attempted (download=False)"


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
    source: Optional["Source"] = field(default=None, compare=False, repr=False)  # None: generated

    def locations(self, data_root: PathLike | None = None) -> list[str]:
        """Where this set is looked for under ``data_root``, in order (empty when generated);
        torchvision's download, the last resort, is not a place and is not listed."""
        root = resolve_root(data_root)
        return [] if self.source is None else [str(p) for p in self.source.places(self, root)]


class Source:
    """Where the files of a real dataset are looked for and how they are read.

    ``hint`` says how to get the set; ``{root}`` in it is replaced by the data root.
    """

    def __init__(self, hint: str):
        self.hint = hint

    def places(self, spec: DatasetSpec, root: Path) -> list[Path]:
        """Where the set is looked for under ``root``, in order (torchvision's download, the last
        resort, is not a place)."""
        raise NotImplementedError

    def find(self, spec: DatasetSpec, root: Path) -> Optional[tuple[Path, bool]]:
        """The first place holding every split, and whether the copy there is lossy; None if
        nothing is there.  Reads nothing but the folder listing, unpacks nothing."""
        raise NotImplementedError

    def load(self, spec: DatasetSpec, root: Path, split: str, download: bool) -> Loaded:
        """Read ``split``, unpacking or downloading as needed; raise :meth:`not_found` if it can't."""
        raise NotImplementedError

    def how_to_get(self, spec: DatasetSpec, root: Path) -> str:
        return self.hint.format(root=root)

    def not_found(self, spec: DatasetSpec, root: Path, download: Optional[str]) -> DatasetNotFoundError:
        """One line: the places looked in, what the download said, how to get the set."""
        looked = ", ".join(str(p) for p in self.places(spec, root)) or "nowhere"
        dl = f"; torchvision download: {download}" if download else ""
        msg = f"{spec.name} not found under {root} (looked in: {looked}{dl}). Get it: {self.how_to_get(spec, root)}"
        return DatasetNotFoundError(" ".join(msg.split()))


def short_error(e: BaseException, n: int = 160) -> str:
    """``Type: message`` on one line, at most ``n`` characters."""
    s = " ".join(f"{type(e).__name__}: {e}".split())
    return s if len(s) <= n else s[:n - 3] + "..."


def tv_class(name: str) -> Any:
    """``torchvision.datasets.<name>``, looked up when a set is loaded, so a test (or a user) can
    stand in for e.g. ``torchvision.datasets.MNIST`` with ``monkeypatch.setattr``."""
    import torchvision.datasets as tvd

    return getattr(tvd, name)


def construct(cls: Any, root: Path, split: str, download: bool, by_split: bool = False) -> Any:
    """``cls(root, train=..., download=...)`` (``split=`` if ``by_split``), its progress output logged."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):   # torchvision prints download progress
        where = {"split": split} if by_split else {"train": split == "train"}
        ds = cls(root=str(root), download=download, **where)
    if buf.getvalue().strip():
        log.debug("torchvision: %s", " ".join(buf.getvalue().split()))
    return ds
