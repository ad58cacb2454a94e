"""Atomic file writes and safe checkpoint loading.

Every result and checkpoint is written to a temporary file in the same directory and
then renamed over the target (``os.replace`` is atomic on POSIX and Windows), so a crash
leaves either the old file or the new one, never half of one.  A failed write (a full disk,
a quota) raises an ``OSError`` that names the file being written.  The file gets the mode a
plain ``open(path, "w")`` would give it (``0o666`` minus the process umask), not the
``0o600`` of a temporary file, so results shared with a group stay readable.  Checkpoints
are loaded with ``torch.load(..., weights_only=True)``: nothing unpickles arbitrary objects.
"""
from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .errors import CheckpointError


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic set-and-restore
    os.umask(mask)
    return mask


def _named(exc: OSError, path: Path) -> OSError:
    """``exc`` naming ``path`` (a write to an open file, e.g. on a full disk, names none; a
    rename names the temporary file): the same errno, so the same ``OSError`` subclass."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def _atomic(path: str | os.PathLike, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _named(exc, path) from exc
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
            if hasattr(os, "fchmod"):  # mkstemp makes 0o600; give the mode open() would
                os.fchmod(fh.fileno(), 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, tmp):
            raise _named(exc, path) from exc
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return _atomic(path, lambda fh: fh.write(text), "w")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _atomic(path, lambda fh: fh.write(data), "wb")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    return _atomic(path, lambda fh: torch.save(obj, fh), "wb")


def atomic_savefig(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically (format from the file's suffix), like the files above."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    return atomic_write_bytes(path, buf.getvalue())


_FULL = {e for e in (getattr(errno, n, None) for n in ("ENOSPC", "EDQUOT", "EFBIG")) if e is not None}


@contextmanager
def writes_into(folder: str | os.PathLike) -> Iterator[None]:
    """A full disk or quota met by a write that names no file (a plain ``open().write()``, as a
    plotting library does) is raised naming ``folder``, the folder the block writes into."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno in _FULL:
            raise OSError(exc.errno, exc.strerror or str(exc), str(folder)) from exc
        raise


def load_checkpoint(path: str | os.PathLike, expected_format: str) -> dict:
    """Load a checkpoint dict with ``weights_only=True`` and check its ``format`` tag."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or not a torch file
        raise CheckpointError(f"checkpoint {path} is corrupt or not a niood checkpoint ({exc.__class__.__name__}); "
                              "delete it to start over") from exc
    if not isinstance(state, dict) or state.get("format") != expected_format:
        raise CheckpointError(f"{path} is not a {expected_format} checkpoint")
    return state
