"""Atomic file writes and safe checkpoint loading.

Every result and checkpoint is written to a temporary file in the same directory and
then renamed over the target (``os.replace`` is atomic on POSIX and Windows), so a crash
leaves either the old file or the new one, never half of one.  The file gets the mode a
plain ``open(path, "w")`` would give it (``0o666`` minus the process umask), not the
``0o600`` of a temporary file, so results shared with a group stay readable.  Checkpoints
are loaded with ``torch.load(..., weights_only=True)``: nothing unpickles arbitrary objects.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

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


def _atomic(path: str | os.PathLike, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
            if hasattr(os, "fchmod"):  # mkstemp makes 0o600; give the mode open() would
                os.fchmod(fh.fileno(), 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return _atomic(path, lambda fh: fh.write(text), "w")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _atomic(path, lambda fh: fh.write(data), "wb")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    return _atomic(path, lambda fh: torch.save(obj, fh), "wb")


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
