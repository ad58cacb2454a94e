"""Trainer checkpoints: one atomic file per save, tagged with a format version and the run's
signature (a hash of the configuration, the negatives, the data shape and the seed).

A checkpoint resumes only a run with the same signature; anything else is refused with a
:class:`~niood_plugin.errors.CheckpointError` that says so.  Files are loaded with
``torch.load(weights_only=True)``: a checkpoint cannot run code.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Optional

import torch

from .errors import CheckpointError
from .files import atomic_torch_save, load_checkpoint

__all__ = ["FORMAT", "save", "load", "loader_generator", "check_writable"]

FORMAT = "niood-inversion/2"


def loader_generator(loader: Iterable) -> Optional[torch.Generator]:
    """The shuffling generator of a DataLoader (its own or its sampler's), if any: saved with
    the checkpoint so that a resumed run sees the batches in the order an uninterrupted one would."""
    candidates = [loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)]
    candidates += [getattr(c, "sampler", None) for c in candidates[1:] if c is not None]
    for c in candidates:
        gen = getattr(c, "generator", None)
        if isinstance(gen, torch.Generator):
            return gen
    return None


def path_for(path: "str | os.PathLike[str]", epoch: int) -> Path:
    """``path`` with ``{epoch}`` replaced (``run-{epoch}.pt`` keeps one file per epoch)."""
    return Path(str(path).replace("{epoch}", str(epoch)))


def check_writable(path: "str | os.PathLike[str]") -> None:
    """Raise ``CheckpointError`` now, not after an epoch of training, if ``path`` cannot be written."""
    p = path_for(path, 0)
    if p.is_dir():
        raise CheckpointError(f"checkpoint path {p} is a directory; give a file name such as {p / 'run.pt'}")
    parent = p.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot create the checkpoint folder {parent} ({exc.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise CheckpointError(f"checkpoint folder {parent} is not writable; choose another checkpoint path")


def save(path: "str | os.PathLike[str]", epoch: int, signature: str, state: dict[str, Any],
         loader: Iterable, world_size: int = 1) -> Path:
    """Write ``state`` (the trainer's ``state_dict()``) after ``epoch`` atomically; ``world_size``:
    the number of processes of the run (a distributed run resumes with as many)."""
    gen = loader_generator(loader)
    payload = {"format": FORMAT, "signature": signature, "epoch": epoch, "state": state,
               "loader_rng": gen.get_state() if gen is not None else torch.empty(0)}
    if world_size > 1:
        payload["world_size"] = world_size
    return atomic_torch_save(payload, path_for(path, epoch))


def load(path: "str | os.PathLike[str]", signature: str, loader: Iterable,
         world_size: int = 1) -> tuple[int, dict[str, Any]]:
    """The epoch and trainer state of checkpoint ``path``; restores the loader's shuffling state."""
    payload = load_checkpoint(path, FORMAT)
    written = int(payload.get("world_size", 1))
    if written != world_size:
        raise CheckpointError(f"checkpoint {path} was written by a run of {written} process(es), this one has "
                              f"{world_size}: resume with the same number (torchrun --nproc-per-node {written}), "
                              "or start a new run")
    if payload.get("signature") != signature:
        raise CheckpointError(f"checkpoint {path} was written by a run with other settings, seed or data shape; "
                              "resume with the same settings or start a new run")
    gen = loader_generator(loader)
    if gen is not None and payload["loader_rng"].numel():
        gen.set_state(payload["loader_rng"])
    return int(payload["epoch"]), payload["state"]
