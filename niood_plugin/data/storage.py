"""The data root, read-only roots, and safe archive extraction (torchvision's ``extract_archive``)."""
from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import warnings
import zlib
from pathlib import Path, PurePosixPath
from typing import Union

from ..errors import DataFormatError, DatasetNotFoundError

log = logging.getLogger("niood_plugin.data")

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["default_data_root", "resolve_root", "writable", "unpack_root", "safe_extract"]


def default_data_root() -> Path:
    """``$NIOOD_DATA`` if set, else ``~/.cache/niood/data``."""
    env = os.environ.get("NIOOD_DATA")
    return Path(env).expanduser() if env else Path("~/.cache/niood/data").expanduser()


def resolve_root(data_root: PathLike | None) -> Path:
    """``data_root`` as a path, or :func:`default_data_root` when None."""
    return Path(data_root).expanduser() if data_root is not None else default_data_root()


def writable(folder: Path) -> bool:
    """Whether files may be written in ``folder`` (or where it would be created).

    A folder with no write permission bit at all counts as read-only even for root, so a
    shared read-only copy of the data is never written into.
    """
    p = Path(folder)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return os.access(p, os.W_OK) and bool(p.stat().st_mode & 0o222)
    except OSError:
        return False


def unpack_root(root: Path) -> Path:
    """Where files derived from ``root`` (unpacked archives, decompressed IDX files, downloads)
    go: ``root``, or if that is read-only the default data root."""
    if writable(root):
        return root
    alt = default_data_root()
    return alt if alt != root and writable(alt) else root


_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def _check_members(archive: Path) -> None:
    """Refuse absolute paths, ``..`` components (in names and link targets) and special files."""
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
    except _ARCHIVE_ERRORS as e:
        raise DataFormatError(f"{archive}: corrupt or unreadable archive ({e})") from e
    for m in members:
        for name in [m.name] + ([m.linkname] if (m.issym() or m.islnk()) else []):
            p = PurePosixPath(name.replace("\\", "/"))
            if p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", name):
                raise DataFormatError(f"{archive}: unsafe member {m.name!r} (absolute path or '..'); not extracted")
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise DataFormatError(f"{archive}: member {m.name!r} is not a regular file or folder; not extracted")


def _merge_move(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; where ``dst`` is an existing folder, merge (existing files win)."""
    if not dst.exists() and not dst.is_symlink():
        os.replace(src, dst)
    elif src.is_dir() and not src.is_symlink() and dst.is_dir():
        for child in src.iterdir():
            _merge_move(child, dst / child.name)


def safe_extract(archive: PathLike, dest: PathLike) -> None:
    """Unpack a tar archive (any compression) into ``dest`` with torchvision's ``extract_archive``.

    The members are checked first (no absolute paths, no ``..``, no special files:
    :class:`DataFormatError`).  The archive is unpacked into a temporary folder inside ``dest``
    and moved into place afterwards, so a failed extraction leaves no half-written dataset;
    files already in ``dest`` are kept.
    """
    from torchvision.datasets.utils import extract_archive

    archive, dest = Path(archive), Path(dest)
    t0 = time.perf_counter()
    _check_members(archive)
    cannot = f"cannot unpack {archive} into {dest}"
    try:
        dest.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    except OSError as e:
        raise DatasetNotFoundError(f"{cannot} ({e}); unpack it yourself or pass a writable data root") from e
    try:
        with warnings.catch_warnings():  # Python >= 3.12 warns about extractall without a filter;
            warnings.simplefilter("ignore", DeprecationWarning)  # the members were checked above
            extract_archive(archive, tmp)
        for child in tmp.iterdir():
            _merge_move(child, dest / child.name)
    except (*_ARCHIVE_ERRORS, RuntimeError) as e:  # RuntimeError: torchvision, unknown archive type
        raise DataFormatError(f"{archive}: corrupt or unreadable archive ({e})") from e
    except OSError as e:
        raise DatasetNotFoundError(f"{cannot} ({e}); unpack it yourself or pass a writable data root") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("unpacked %s into %s in %.1f s", archive, dest, time.perf_counter() - t0)
