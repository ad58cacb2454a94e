"""One command per output folder: a lock file ``<out>/.niood.lock`` held while the command runs.

The lock file records the owner's process id, host name, command and start time.  It is
created whole (written to a temporary file, then hard-linked to its name, which fails if the
name exists), so a second command either creates it or finds a complete one.  A second
command is refused with :class:`~niood_plugin.errors.FolderLockedError`; a lock of a process
that no longer runs on this host (a run killed with ``kill -9``, a machine reset) is stale and
taken over with a warning.  A lock of another host cannot be checked and is never taken
over.  The folder (and any of its parents) that taking the lock created is removed again on
release if it is still empty, so a command that fails early leaves nothing behind.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import secrets
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from ..errors import FolderLockedError

log = logging.getLogger(__name__)

LOCK_NAME = ".niood.lock"

_HELD: dict[str, "FolderLock"] = {}  # absolute folder path -> the lock this process holds on it


def held_folder(path: str | os.PathLike) -> Optional[Path]:
    """The folder this process holds a lock on that contains ``path`` (compared without
    resolving links), or ``None``."""
    p = os.path.abspath(path)
    best = None
    for folder in _HELD:
        if (p == folder or p.startswith(folder.rstrip(os.sep) + os.sep)) and (best is None or len(folder) > len(best)):
            best = folder
    return Path(best) if best is not None else None


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # no safe liveness check: treat the owner as alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by another user
        return True
    return True


def _read(path: Path) -> Optional[dict[str, Any]]:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    pid = info.get("pid") if isinstance(info, dict) else None
    return info if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None


class FolderLock:
    """The lock of one output folder; :meth:`acquire` takes it or raises, :meth:`release`
    gives it back (and removes the folders that :meth:`acquire` created, if still empty)."""

    def __init__(self, folder: str | os.PathLike, command: str = "niood-bench"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                     "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                     "token": secrets.token_hex(8)}
        self.created: list[Path] = []
        self.held = False

    def _make_folder(self) -> None:
        missing = []
        p = self.folder.absolute()
        while not os.path.lexists(p) and p != p.parent:
            missing.append(p)
            p = p.parent
        self.folder.mkdir(parents=True, exist_ok=True)
        self.created = missing  # deepest first, the order to remove them in

    def _create(self) -> bool:
        """Create the lock file whole; ``False`` if one exists."""
        data = json.dumps(self.info).encode()
        tmp = self.folder / f"{LOCK_NAME}.{self.info['token']}.tmp"
        try:
            try:
                with open(tmp, "xb") as fh:
                    fh.write(data)
            except OSError as exc:  # e.g. a full disk: name the lock, not the temporary file
                raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
            try:
                os.link(tmp, self.path)
                return True
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links: exclusive create instead
                try:
                    with open(self.path, "xb") as fh:
                        fh.write(data)
                except FileExistsError:
                    return False
                return True
        finally:
            tmp.unlink(missing_ok=True)

    def _owner(self) -> Optional[dict[str, Any]]:
        """The lock file's contents; waits briefly for a lock being written by a file system
        without hard links.  ``None`` if it is gone, ``{}`` if it stays unreadable."""
        for _ in range(10):
            if not os.path.lexists(self.path):
                return None
            info = _read(self.path)
            if info is not None:
                return info
            time.sleep(0.1)
        return {}

    def _refuse(self, owner: Optional[dict[str, Any]], why: str = "") -> FolderLockedError:
        if owner is None:
            who = "another command (its lock file is unreadable"
        else:
            since = f", since {owner['started_at']}" if isinstance(owner.get("started_at"), str) else ""
            who = (f"{owner.get('command') or 'another command'} (pid {owner['pid']} on host "
                   f"{owner.get('host', '?')}{since}")
        return FolderLockedError(
            f"--out {self.folder} is in use by {who}; lock file {self.path}): wait for it to finish or choose another "
            f"--out; if that command no longer runs, delete the lock file{why}")

    def _take_over(self, owner: dict[str, Any]) -> None:
        """Remove the stale lock ``owner`` unless another command replaced it meanwhile."""
        grab = self.folder / f"{LOCK_NAME}.stale.{self.info['token']}"
        try:
            os.rename(self.path, grab)
        except FileNotFoundError:
            return
        if _read(grab) == owner:
            grab.unlink(missing_ok=True)
            log.warning("%s: took over the lock of pid %s on this host, which no longer runs (lock file %s)",
                        self.folder, owner.get("pid"), self.path)
            return
        try:  # a live command's lock arrived between the check and the rename: put it back
            os.link(grab, self.path)
        except OSError:
            pass
        grab.unlink(missing_ok=True)

    def acquire(self) -> "FolderLock":
        self._make_folder()
        try:
            for _ in range(5):
                if self._create():
                    self.held = True
                    _HELD[os.path.abspath(self.folder)] = self
                    return self
                owner = self._owner()
                if owner is None:
                    continue  # released meanwhile: try again
                if not owner:
                    raise self._refuse(None)
                if owner.get("host") != self.info["host"]:
                    raise self._refuse(owner, " (a lock of another host is never taken over)")
                if owner["pid"] != os.getpid() and not _pid_alive(owner["pid"]):
                    self._take_over(owner)
                    continue
                raise self._refuse(owner)
            raise self._refuse(self._owner() or None)
        except BaseException:
            self._remove_created()
            raise

    def release(self) -> None:
        """Remove the lock file if it is still this command's; then the folders :meth:`acquire`
        created, if empty."""
        if self.held:
            self.held = False
            _HELD.pop(os.path.abspath(self.folder), None)
            if _read(self.path) == self.info:
                try:
                    self.path.unlink()
                except OSError as exc:
                    log.warning("could not remove the lock file %s (%s); delete it", self.path, exc.strerror)
        self._remove_created()

    def _remove_created(self) -> None:
        for p in self.created:
            try:
                p.rmdir()
            except OSError:
                break
        self.created = []


@contextmanager
def hold_folder(folder: str | os.PathLike, command: str, enabled: bool = True) -> Iterator[Optional[FolderLock]]:
    """Hold the lock of ``folder`` for the ``with`` block (released on errors and Ctrl-C too);
    ``enabled=False`` (a process that does not write the folder) holds nothing."""
    if not enabled:
        yield None
        return
    lock = FolderLock(folder, command).acquire()
    try:
        yield lock
    finally:
        lock.release()
