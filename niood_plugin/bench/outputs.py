"""Output folders: checked before anything is written, owned by one command, tidied after.

An output folder holds the results of one command (``results.json`` records ``"kind": "run"``
or ``"attack"``).  Before a command starts, :func:`check_out_dir` refuses a folder of the wrong
kind, a path that cannot become a writable directory (a file in the way, an over-long name,
no write permission), a folder holding results of the other command, and a non-empty folder
that holds no niood-bench results.  After it finished, :func:`remove_stale` removes the plots
(and sample grids) a previous command left there that this one did not write; nothing else
in the folder is touched.
"""
from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import ConfigError
from .report import result_kind

log = logging.getLogger(__name__)

#: What this harness writes into an output folder (and so may replace or remove there).
RESULT_FILES = ("results.json", "results.csv", "results.md", "results_openood.csv")
HARNESS_DIRS = ("models", "checkpoints", "samples")
PLOTS = {"run": ("roc_*.png", "hist_*.png", "training_*.png", "time_to_quality.png", "features_*.png"), "attack": ("attack_*.png",)}


def _name_max(existing: Path) -> int:
    try:
        return int(os.pathconf(existing, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while True:
        try:
            if p.exists() or p == p.parent:
                return p
        except OSError:
            pass
        p = p.parent


def check_dir_path(path: Path, what: str, need_write: bool = True) -> None:
    """Raise :class:`ConfigError` unless ``path`` is, or can become, a (writable) directory:
    no over-long name, no file in its way, a writable nearest existing ancestor."""
    base = _nearest_existing(path)
    limit = _name_max(base if base.is_dir() else base.parent)
    for part in path.absolute().parts:
        if len(os.fsencode(part)) > limit:
            raise ConfigError(f"{what} {str(path)[:60]}...: a name in it is {len(os.fsencode(part))} bytes long, "
                              f"over this file system's limit of {limit}; choose a shorter path")
    if len(os.fsencode(str(path.absolute()))) >= 4096:
        raise ConfigError(f"{what} {str(path)[:60]}... is over 4096 bytes long; choose a shorter path")
    if not base.is_dir():
        raise ConfigError(f"{what} {path}: {base} is a file, not a directory; choose another path")
    if need_write and not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: {base} is not writable; choose a writable directory")


def check_out_dir(out: Path, kind: str) -> None:
    """``out`` can hold this command's results: a writable directory (or one that can be
    made) whose harness entries have the right kind, that holds no results of another
    command, and that is either a niood results folder or holds nothing else."""
    check_dir_path(out, "--out")
    if not out.is_dir():
        return
    for name in RESULT_FILES:
        if (out / name).is_dir():
            raise ConfigError(f"--out {out}: {out / name} is a directory, so the results cannot be written; "
                              "choose another --out or remove it")
    for name in HARNESS_DIRS:
        if (out / name).exists() and not (out / name).is_dir():
            raise ConfigError(f"--out {out}: {out / name} is a file where the harness keeps a directory; "
                              "choose another --out or remove it")
    results = out / "results.json"
    if results.is_file():
        try:
            other = result_kind(json.loads(results.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            other = None
        if other is None:
            raise ConfigError(f"--out {out} holds a results.json that niood-bench did not write; choose another "
                              "--out")
        if other != kind:
            hint = (" (attack results go to their own folder, by default <run --out>-attack)" if kind == "attack"
                    else "")
            raise ConfigError(f"--out {out} holds the results of `niood-bench {other}`, which `niood-bench {kind}` "
                              f"would overwrite; choose another --out{hint}")
        return
    foreign = sorted(p.name for p in out.iterdir() if not _harness_entry(p.name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ConfigError(f"--out {out} is a non-empty folder that holds no niood-bench results ({shown}); choose "
                          "a new or empty folder")


def _harness_entry(name: str) -> bool:
    if name in RESULT_FILES or name in HARNESS_DIRS or name.startswith(".niood") or name.startswith(".results."):
        return True
    return any(fnmatch.fnmatch(name, pat) for pats in PLOTS.values() for pat in pats)


def prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".niood-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to --out {out}: {exc.strerror or exc}; choose a writable directory") from exc


def remove_stale(out: Path, kind: str, written: Iterable[Path], methods: Sequence[str]) -> list[str]:
    """Remove the plots (of ``kind``) a previous command left in ``out`` that this one did not
    write, and sample grids of methods this run does not have; returns the removed names."""
    keep = {Path(p).name for p in written if p is not None}
    removed = []
    for p in sorted(out.iterdir()):
        if p.is_file() and p.name not in keep and any(fnmatch.fnmatch(p.name, pat) for pat in PLOTS[kind]):
            p.unlink()
            removed.append(p.name)
    samples = out / "samples"
    if kind == "run" and samples.is_dir():
        for d in sorted(samples.iterdir()):
            if d.name not in methods:
                remove_path(d)
                removed.append(f"samples/{d.name}")
        rmdir_if_empty(samples)
    if removed:
        log.info("removed %d stale file(s) of a previous run in %s: %s", len(removed), out, ", ".join(removed[:5]))
    return removed


def remove_path(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def rmdir_if_empty(p: Path) -> None:
    try:
        p.rmdir()
    except OSError:
        pass
