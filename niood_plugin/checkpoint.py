"""Training checkpoints: one atomic file per save, tagged with a format version (``FORMAT``
for :class:`~niood_plugin.trainer.InversionTrainer`, ``PLAIN_FORMAT`` for
:func:`~niood_plugin.training.train_plain`), the run's signature (a hash of what sets the
training) and the number of processes that wrote it.

A checkpoint resumes only a run of the same format, signature and number of processes;
anything else is refused with a :class:`~niood_plugin.errors.CheckpointError` that says what
differs and how to go on (never a silent fresh start: that would throw away the hours the
checkpoint holds).  Files are loaded with ``torch.load(weights_only=True)``: a checkpoint
cannot run code.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch
from torch import nn

from . import distributed
from .errors import CheckpointError
from .files import atomic_torch_save, load_checkpoint

__all__ = ["FORMAT", "PLAIN_FORMAT", "save", "load", "loader_generator", "check_writable", "rank_rng_state",
           "set_rank_rng_state", "to_cpu", "PlainRun"]

log = logging.getLogger(__name__)

FORMAT = "niood-inversion/2"
PLAIN_FORMAT = "niood-plain/1"


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
         loader: Iterable, world_size: int = 1, *, format: str = FORMAT) -> Path:
    """Write ``state`` (the trainer's ``state_dict()``) after ``epoch`` atomically; ``world_size``:
    the number of processes of the run (a distributed run resumes with as many)."""
    gen = loader_generator(loader)
    payload = {"format": format, "signature": signature, "epoch": epoch, "state": state,
               "loader_rng": gen.get_state() if gen is not None else torch.empty(0)}
    if world_size > 1:
        payload["world_size"] = world_size
    return atomic_torch_save(payload, path_for(path, epoch))


def load(path: "str | os.PathLike[str]", signature: str, loader: Iterable,
         world_size: int = 1, *, format: str = FORMAT) -> tuple[int, dict[str, Any]]:
    """The epoch and trainer state of checkpoint ``path``; restores the loader's shuffling state.

    A checkpoint of another number of processes is refused: its per-rank random states and
    data shards fit only a run of as many processes."""
    payload = load_checkpoint(path, format)
    written = int(payload.get("world_size", 1))
    if written != world_size:
        raise CheckpointError(f"checkpoint {path} was written by a run of {written} process(es), this one has "
                              f"{world_size}: resume with the same number (torchrun --nproc-per-node {written}), "
                              "or start over without resuming")
    if payload.get("signature") != signature:
        raise CheckpointError(f"checkpoint {path} was written by a run with other settings, seed or data shape; "
                              "resume with the same settings or start a new run")
    gen = loader_generator(loader)
    if gen is not None and payload["loader_rng"].numel():
        gen.set_state(payload["loader_rng"])
    return int(payload["epoch"]), payload["state"]


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it (in dicts, lists, tuples) moved to the CPU: what
    ``gather_objects`` can send between ranks and a checkpoint can hold."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def rank_rng_state(loader: Iterable, device: torch.device) -> dict[str, torch.Tensor]:
    """This process's random states: torch's, the CUDA device's (when ``device`` is one) and the
    loader's shuffling generator (when it has one)."""
    gen = loader_generator(loader)
    return {"torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.empty(0),
            "loader_rng": gen.get_state() if gen is not None else torch.empty(0)}


def set_rank_rng_state(state: dict[str, torch.Tensor], loader: Iterable, device: torch.device) -> None:
    """Restore what :func:`rank_rng_state` returned."""
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and state["cuda_rng"].numel():
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    gen = loader_generator(loader)
    if gen is not None and state["loader_rng"].numel():
        gen.set_state(state["loader_rng"])


def _plain_value(value: Any) -> Any:
    """A history value JSON cannot write as such: a tensor or numpy scalar as its number, else its text."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 else str(value)


@dataclass
class PlainRun:
    """What a checkpoint of :func:`~niood_plugin.training.train_plain` holds and restores: the
    model, the objective's own parameters, the optimiser, the schedule (stepped per batch or per
    epoch) and the recipe's :class:`~niood_plugin.recipes.Lookahead` weights, if any (the same on
    every rank), the history, and each rank's own states: random states (torch, CUDA, the loader's
    generator) and the objective's state (e.g. VOS's feature queues, filled from that rank's
    shard)."""

    model: nn.Module
    objective: Any
    extra_params: Sequence[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loader: Iterable
    device: torch.device
    lookahead: Any = None

    def signature(self, input_shape: Sequence[int], **settings: Any) -> str:
        """A hash of what sets the training: ``settings`` (epochs, learning rate, schedule, ...),
        the objective and its parameters, the model's class and weight shapes, the objective's
        parameter shapes, the input shape and the number of batches per epoch."""
        obj = self.objective
        get_params = getattr(obj, "get_params", None)
        payload = {
            "format": PLAIN_FORMAT, **settings,
            "objective": f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}",
            "objective_params": get_params() if callable(get_params) else None,
            "model": type(self.model).__qualname__,
            "weights": [[k, list(v.shape)] for k, v in self.model.state_dict().items()],
            "extra_params": [list(p.shape) for p in self.extra_params],
            "input_shape": list(input_shape), "batches": len(self.loader),  # type: ignore[arg-type]
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _own_state(self) -> dict[str, Any]:
        state_dict = getattr(self.objective, "state_dict", None)
        return to_cpu({**rank_rng_state(self.loader, self.device),
                       "objective": state_dict() if callable(state_dict) else None})

    def save(self, path: "str | os.PathLike[str]", epoch: int, signature: str, history: list[dict[str, Any]]) -> None:
        """Checkpoint the run after ``epoch``: every rank calls it (their own states are
        gathered), rank 0 writes the file atomically."""
        ranks = distributed.gather_objects(self._own_state())
        if distributed.is_main():
            state = {"model": self.model.state_dict(), "extra_params": [p.detach() for p in self.extra_params],
                     "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "ranks": ranks, "history": json.dumps(history, default=_plain_value)}
            if self.lookahead is not None:
                state["lookahead"] = self.lookahead.state_dict()
            save(path, epoch, signature, state, self.loader, len(ranks), format=PLAIN_FORMAT)

    def resume(self, path: "str | os.PathLike[str]", signature: str) -> list[dict[str, Any]]:
        """Restore the run from checkpoint ``path``; returns the history of its epochs."""
        epoch, state = load(path, signature, self.loader, distributed.world_size(), format=PLAIN_FORMAT)
        try:
            own = state["ranks"][distributed.rank()]
            self.model.load_state_dict(state["model"])
            with torch.no_grad():
                for p, v in zip(self.extra_params, state["extra_params"], strict=True):
                    p.copy_(v)
            if own["objective"] is not None:
                self.objective.load_state_dict(own["objective"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.lookahead is not None:
                self.lookahead.load_state_dict(state["lookahead"])
            set_rank_rng_state(own, self.loader, self.device)
            history = json.loads(state["history"])
        except (RuntimeError, KeyError, ValueError, IndexError, TypeError, AttributeError) as exc:
            detail = " ".join(str(exc).split())[:200]
            raise CheckpointError(f"checkpoint {path} does not fit this training ({type(exc).__name__}: {detail}); "
                                  "delete it or start without resume") from exc
        log.info("resumed from %s after epoch %d", path, epoch)
        return history
