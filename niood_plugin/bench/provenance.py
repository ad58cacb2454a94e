"""Where a result came from: the code's git commit, the command line, the machine, the time."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Optional, Sequence

import torch


def git_state(where: Path | None = None) -> Optional[dict[str, Any]]:
    """The commit of the git checkout holding this package, and whether the package's code has
    local changes (``dirty``: modified or untracked files under the package).  Changes elsewhere
    (result files, notes) do not make a run irreproducible: the settings are in results.json;
    they are counted in ``other_changes``.  ``None`` outside a checkout."""
    where = where or Path(__file__).resolve().parent.parent

    def git(*args: str) -> Optional[str]:
        try:
            r = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    package = git("status", "--porcelain", "--untracked-files=all", "--", ".")
    tracked = git("status", "--porcelain", "--untracked-files=no", "--", ":/")
    dirty = None if package is None else bool(package)
    others = None if tracked is None or package is None else max(
        0, len(tracked.splitlines()) - len([line for line in package.splitlines() if not line.startswith("??")]))
    return {"commit": commit, "dirty": dirty, "other_changes": others}


def provenance(kind: str, argv: Optional[Sequence[str]], seed: int, device: torch.device, started: float,
               wall_s: float, git: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Where a result came from: command kind, code commit, exact command line, machine, time.

    ``git`` is :func:`git_state` taken when the command *started* (the code that ran; by the
    end, the run's own outputs and any later commit would be misattributed)."""
    env = machine(device)
    return {
        "kind": kind, "commit": git["commit"] if git else None, "dirty": git["dirty"] if git else None,
        "other_changes": git.get("other_changes") if git else None,
        "argv": list(argv) if argv is not None else None, "cwd": os.getcwd(), "seed": seed,
        "started_at": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": wall_s, "machine": env,
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux/macOS)."""
    import resource
    import sys as _sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if _sys.platform == "darwin" else rss / 1024


def cpu_identity(cpuinfo: str) -> tuple[Optional[str], Optional[str]]:
    """(model name, ``"family F model M"``) of the first processor in ``/proc/cpuinfo`` text; None
    for what it lacks. A name such as "AMD EPYC" covers generations that differ 1.6x in speed."""
    info: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor" and info:  # the first processor's block only
            break
        info.setdefault(key, value)
    cpu_id = f"family {info['cpu family']} model {info['model']}" if "cpu family" in info and "model" in info else None
    return info.get("model name") or None, cpu_id


def machine(device: torch.device) -> dict[str, Any]:
    """The hardware: ``cpu`` (the model name) and ``cpu_id`` (Linux: ``"family F model M"``; None elsewhere)."""
    try:
        name, cpu_id = cpu_identity(Path("/proc/cpuinfo").read_text())
    except OSError:
        name, cpu_id = None, None
    cpu = name or platform.processor() or platform.machine()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    return {"cpu": cpu, "cpu_id": cpu_id, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "gpus": gpus}


def environment(device: torch.device) -> dict[str, Any]:
    import pytorch_ood
    import sklearn
    import timm
    import torchvision

    from .. import __version__, distributed
    from ..devices import fast_bf16

    return {
        "python": platform.python_version(), "platform": platform.platform(), **machine(device),
        "torch": torch.__version__, "torchvision": torchvision.__version__, "pytorch_ood": pytorch_ood.__version__,
        "timm": timm.__version__, "sklearn": sklearn.__version__, "niood_plugin": __version__,
        "world_size": distributed.world_size(),
        "fast_bf16": fast_bf16(device),  # recipes with amp train in bf16 here (niood_plugin.recipes)
        "backend": torch.distributed.get_backend() if distributed.active() else None,
    }
