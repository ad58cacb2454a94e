"""The interface between a registered dataset name and where its files come from."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from torch import Tensor

from ..errors import DatasetNotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from .catalog import DatasetSpec

__all__ = ["Source", "Loaded"]

#: uint8 images ``[N, C, H, W]``, int64 labels ``[N]`` (-1: unlabeled), class names or None.
Loaded = tuple[Tensor, Tensor, Optional[list[str]]]


class Source:
    """Where the files of a real dataset are looked for and how they are read.

    ``hint`` says how to get the set; ``{root}`` in it is replaced by the data root.
    """

    def __init__(self, hint: str):
        self.hint = hint

    def places(self, spec: "DatasetSpec", root: Path) -> list[Path]:
        """Where the set is looked for under ``root``, in order (torchvision's download, the last
        resort, is not a place)."""
        raise NotImplementedError

    def find(self, spec: "DatasetSpec", root: Path) -> Optional[tuple[Path, bool]]:
        """The first place holding every split, and whether the copy there is lossy; None if
        nothing is there.  Reads nothing but the folder listing, unpacks nothing."""
        raise NotImplementedError

    def load(self, spec: "DatasetSpec", root: Path, split: str, download: bool) -> Loaded:
        """Read ``split``, unpacking or downloading as needed; raise :meth:`not_found` if it can't."""
        raise NotImplementedError

    def how_to_get(self, spec: "DatasetSpec", root: Path) -> str:
        return self.hint.format(root=root)

    def not_found(self, spec: "DatasetSpec", root: Path, download: Optional[str]) -> DatasetNotFoundError:
        """One line: the places looked in, what the download said, how to get the set."""
        looked = ", ".join(str(p) for p in self.places(spec, root)) or "nowhere"
        dl = f"; torchvision download: {download}" if download else ""
        msg = f"{spec.name} not found under {root} (looked in: {looked}{dl}). Get it: {self.how_to_get(spec, root)}"
        return DatasetNotFoundError(" ".join(msg.split()))


def short_error(e: BaseException, n: int = 160) -> str:
    """``Type: message`` on one line, at most ``n`` characters."""
    s = " ".join(f"{type(e).__name__}: {e}".split())
    return s if len(s) <= n else s[:n - 3] + "..."
