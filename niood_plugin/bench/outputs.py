"""Output folders: checked before anything is written, held by one command, tidied after.

An output folder holds the results of one command (``results.json`` records ``"kind": "run"``
or ``"attack"``).  Before a command starts, :func:`check_out_dir` refuses a folder of the wrong
kind, a path that cannot become a writable directory (a file in the way, an over-long name,
no write permission), a folder holding results of the other command, and a non-empty folder
that holds no niood-bench results; :func:`check_paths` refuses settings whose files would have
names or paths over the file system's limits.  While it runs, the command holds the folder's
lock (:mod:`.lock`).  results.json lists the files the command wrote (``files.written``, with
size and SHA-256); the next command in the folder removes those of them it does not write again
and that are unchanged (:class:`Outputs`), never a file by its name's pattern, never through a
link, and nothing outside the folder.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Optional, Sequence

from ..errors import ConfigError
from .lock import LOCK_NAME, held_folder
from .report import result_kind

log = logging.getLogger(__name__)

#: What this harness writes into an output folder (and so may replace or remove there).
RESULT_FILES = ("results.json", "results.csv", "results.md", "results_openood.csv")
HARNESS_DIRS = ("models", "checkpoints", "samples")
PLOTS = {"run": ("roc_*.png", "hist_*.png", "training_*.png", "time_to_quality.png", "features_*.png"), "attack": ("attack_*.png",)}
#: What the harness writes into ``samples/<method>/`` (the grids, the key of the model they show).
SAMPLES_KEY = ".niood-model-key"
SAMPLE_FILES = ("samples_epoch_*.png", SAMPLES_KEY)


def _limit(existing: Path, name: str, default: int) -> int:
    """The file system's ``os.pathconf`` limit ``name`` at ``existing`` (``default`` where unknown)."""
    try:
        return int(os.pathconf(existing, name))
    except (OSError, ValueError, AttributeError):
        return default


def _name_max(existing: Path) -> int:
    return _limit(existing, "PC_NAME_MAX", 255)


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


# ----------------------------------------------------------------------------- long paths

def _path_max(existing: Path) -> int:
    return _limit(existing, "PC_PATH_MAX", 4096)


def _temp(name: str) -> str:
    """The temporary file an atomic write of ``name`` goes through (files.py: mkstemp with
    ``.{name}.`` + 8 characters + ``.tmp``)."""
    return f".{name}.XXXXXXXX.tmp"


def planned_paths(cfg: Any, kind: str, train: bool = True) -> dict[tuple[str, Path], list[str]]:
    """The files a command of ``kind`` with the settings ``cfg`` may write, as relative paths
    below the folders they go to (``(option, folder)``: ``--out`` and the model cache):
    results, plots, sample grids, checkpoints, models, the lock, and their temporary names."""
    out = Path(cfg.out)
    key = "0123456789abcdef"  # methods.cache_key: 16 hex digits
    methods = list(cfg.methods)
    names = [*RESULT_FILES]
    if kind == "run":
        from ..suites import SUITES, OneVsRest
        from .detectors import for_method

        oods = (OneVsRest if cfg.suite is None else SUITES.get(cfg.suite)).planned_set_names(cfg)
        names += [f"roc_{o}.png" for o in oods] + ["time_to_quality.png"]
        names += [f"{p}_{m}.png" for m in methods for p in ("training", "features")]
        names += [f"hist_{m}_{d}.png" for m in methods for d in for_method(cfg.detectors, m)]
    else:
        names += [f"attack_{m}.png" for m in methods]
    models: list[str] = []
    if train:
        try:
            digits = max(3, len(str(cfg.recipe().to_dict()["trainer"]["epochs"])))
        except Exception:  # the settings are checked elsewhere; assume a long run
            digits = 6
        for m in methods:
            names += [f"samples/{m}/samples_epoch_{'0' * digits}.png", f"samples/{m}/{SAMPLES_KEY}",
                      f"checkpoints/{m}-{key}.pt"]
            models.append(f"{m}-{key}.pt")
    names += [str(PurePosixPath(n).parent / _temp(PurePosixPath(n).name)) for n in names]
    names += [f"{LOCK_NAME}.{key}.tmp", f"{LOCK_NAME}.stale.{key}", ".niood-write-test"]
    models += [_temp(n) for n in models]
    if not cfg.cache_dir:
        return {("--out", out): names + [f"models/{n}" for n in models]}
    return {("--out", out): names, ("cache_dir", Path(cfg.cache_dir)): models}


def check_paths(planned: dict[tuple[str, Path], list[str]]) -> None:
    """Raise :class:`ConfigError` if a file of ``planned`` (:func:`planned_paths`) would have a
    name or a path over the file system's limits, before any work makes it fail half-way."""
    for (what, root), rels in planned.items():
        if not rels:
            continue
        base = _nearest_existing(root)
        base = base if base.is_dir() else base.parent
        name_max, path_max = _name_max(base), _path_max(base)
        for rel in rels:
            for part in PurePosixPath(rel).parts:
                if len(os.fsencode(part)) > name_max:
                    raise ConfigError(f"{what} {str(root)[:60]}: the run would write a file named {part[:40]}..., "
                                      f"{len(os.fsencode(part))} bytes long, over this file system's limit of "
                                      f"{name_max}; choose shorter names")
        full = len(os.fsencode(str(root.absolute())))
        below = max(len(os.fsencode(rel)) + 1 for rel in rels)
        if full + below >= path_max:
            raise ConfigError(f"{what} {str(root)[:60]}{'...' if len(str(root)) > 60 else ''} is {full} bytes long "
                              f"as an absolute path, and the run writes files up to {below} bytes below it: "
                              f"{full + below} in all, over this file system's limit of {path_max - 1}; choose a "
                              f"{what} at least {full + below - path_max + 1} bytes shorter")


# ----------------------------------------------------------------------------- what a command wrote

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _link_on_the_way(root: Path, rel: PurePosixPath) -> Optional[Path]:
    """The first symbolic link on the way from ``root`` down to ``root / rel`` (that included)."""
    p = root
    for part in rel.parts:
        p = p / part
        if p.is_symlink():
            return p
    return None


def _safe_rel(name: Any) -> Optional[PurePosixPath]:
    if not isinstance(name, str) or not name:
        return None
    rel = PurePosixPath(name)
    if rel.is_absolute() or any(part in ("..", ".", "") for part in rel.parts) or "\\" in name:
        return None
    return rel


def record_outputs(out: Path, written: Iterable[Optional[Path]], methods: Sequence[str]) -> dict[str, dict]:
    """What this command wrote into ``out`` (results files aside): the plots in ``written`` and
    the sample grids of ``methods``, by relative path, with size and SHA-256, so that a later
    command removes exactly these files and only while unchanged."""
    rels = [PurePosixPath(Path(p).name) for p in written if p is not None and Path(p).parent == out]
    samples = out / "samples"
    for m in methods:
        folder = samples / m
        if _link_on_the_way(out, PurePosixPath("samples", m)) is None and folder.is_dir():
            rels += [PurePosixPath("samples", m, f.name) for f in sorted(folder.iterdir())
                     if any(fnmatch.fnmatch(f.name, pat) for pat in SAMPLE_FILES)]
    record = {}
    for rel in rels:
        p = out / rel
        if _link_on_the_way(out, rel) is None and p.is_file():
            record[rel.as_posix()] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    return record


def recorded_outputs(out: Path) -> Optional[dict[str, dict]]:
    """The files the previous command in ``out`` recorded that it wrote (``files.written`` of its
    results.json); ``None`` if there is no results.json or it records none."""
    try:
        payload = json.loads((out / "results.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    files = payload.get("files") if isinstance(payload, dict) else None
    written = files.get("written") if isinstance(files, dict) else None
    return written if isinstance(written, dict) else None


@dataclass
class Outputs:
    """This command's files in ``out`` (``written``) and those a previous command wrote there that
    this one did not (``stale``): removed by :meth:`tidy`, listed in results.json (:meth:`record`)."""

    out: Path
    kind: str
    written: dict[str, dict]
    previous: Optional[dict[str, dict]]
    methods: Sequence[str] = ()
    removed: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"written": self.written, "removed": self.removed}

    def tidy(self) -> list[str]:
        """Remove the files the previous command recorded and this one did not write again, if
        unchanged since and not reached through a link; folders they leave empty go too."""
        if self.previous is None:
            self._warn_unrecorded()
            return []
        kept = []
        for name, meta in sorted(self.previous.items()):
            rel = _safe_rel(name)
            if rel is None or name in self.written or not isinstance(meta, dict):
                continue
            p = self.out / rel
            if not os.path.lexists(p):
                continue
            link = _link_on_the_way(self.out, rel)
            if link is not None or not p.is_file() or not _unchanged(p, meta):
                kept.append(name + (f" (through the link {link.relative_to(self.out)})" if link is not None else ""))
                continue
            try:
                p.unlink()
            except OSError as exc:
                log.warning("could not remove %s, a file of the previous run: %s", p, exc.strerror)
                continue
            self.removed.append(name)
            for parent in list(rel.parents)[:-1]:  # the emptied folders below out, deepest first
                rmdir_if_empty(self.out / parent)
        if self.removed:
            log.info("removed %d file(s) of the previous %s in %s that this one did not write again: %s",
                     len(self.removed), self.kind, self.out, ", ".join(self.removed))
        if kept:
            log.warning("kept %d file(s) of the previous %s in %s, changed since or reached through a link: %s",
                        len(kept), self.kind, self.out, ", ".join(kept[:5]) + (", ..." if len(kept) > 5 else ""))
        return self.removed

    def _warn_unrecorded(self) -> None:
        """A folder of an older version of the harness, which recorded nothing: name what looks
        like its outputs, remove nothing."""
        names = {PurePosixPath(n).name for n in self.written if "/" not in n}
        looks = [p.name for p in sorted(self.out.iterdir()) if p.name not in names
                 and any(fnmatch.fnmatch(p.name, pat) for pat in PLOTS[self.kind])]
        samples = self.out / "samples"
        if self.kind == "run" and samples.is_dir() and not samples.is_symlink():
            looks += [f"samples/{d.name}" for d in sorted(samples.iterdir()) if d.name not in self.methods]
        if looks:
            log.warning("%s holds file(s) that look like an earlier run's but no record of what it wrote, so none "
                        "were removed: %s; delete them if they are stale", self.out,
                        ", ".join(looks[:5]) + (", ..." if len(looks) > 5 else ""))


def _unchanged(p: Path, meta: dict) -> bool:
    try:
        return p.stat().st_size == meta.get("bytes") and _sha256(p) == meta.get("sha256")
    except OSError:
        return False


def collect_outputs(out: Path, kind: str, written: Iterable[Optional[Path]], methods: Sequence[str]) -> Outputs:
    """This command's record of ``out`` and the previous command's, read before results.json is replaced."""
    return Outputs(out, kind, record_outputs(out, written, methods), recorded_outputs(out), list(methods))


def remove_path(p: Path, root: Optional[Path] = None) -> bool:
    """Remove ``p`` (a file, or a folder with everything in it) if it lies in the results folder
    ``root`` (default: the folder this process holds the lock of) and no link is on the way
    from ``root`` to it, ``p`` included: nothing outside the results folder is ever removed.
    Returns whether ``p`` is gone."""
    where = Path(os.path.abspath(p))
    if not os.path.lexists(where):
        return True
    root = Path(os.path.abspath(root)) if root is not None else held_folder(p)
    if root is None or where == root or root not in where.parents:
        log.debug("not removing %s: not inside a results folder this command holds", p)
        return False
    link = _link_on_the_way(root, PurePosixPath(where.relative_to(root).as_posix()))
    if link is not None:
        log.warning("not removing %s: %s is a symbolic link, and nothing is removed through a link", p, link)
        return False
    if where.is_dir():
        shutil.rmtree(where, ignore_errors=True)  # removes links inside, never what they point to
    else:
        where.unlink(missing_ok=True)
    return not os.path.lexists(where)


def rmdir_if_empty(p: Path) -> None:
    try:
        p.rmdir()
    except OSError:
        pass
