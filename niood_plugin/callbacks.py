"""Extras around :meth:`InversionTrainer.fit <niood_plugin.trainer.InversionTrainer.fit>`.

The trainer trains; anything else is a callback (Lightning's idea).  A callback's hooks get
the trainer; :meth:`Callback.on_refresh_end` and :meth:`Callback.on_epoch_end` also get that
epoch's history entry, which they may add figures to.

* :class:`Measure` (the trainer's default): report section 9.1's figures of the classifier on
  a fixed batch of generated images per output, every epoch, into the history;
* :class:`SampleGrid`: those generated images as a PNG grid;
* :class:`Checkpoint`: an atomic checkpoint after every epoch; ``fit(resume=path)`` continues it.

>>> trainer = InversionTrainer(clf, garbage, callbacks=[Measure(), SampleGrid("runs/samples"),
...                                                     Checkpoint("runs/ckpt.pt")])
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from . import checkpoint, distributed
from .conditioning import Conditioning, balanced_labels, sample_conditioning
from .errors import CheckpointError, NioodError
from .files import atomic_write_bytes
from .scores import per_class_metrics
from .validation import POSITIVE_INT, validate_params

#: settings that change how a run computes, not what it learns: not part of a checkpoint's signature
RUNTIME = ("progress", "channels_last", "generator_chunk")
#: an :class:`~niood_plugin.InversionTrainer` (not imported: the trainer imports this module)
InversionTrainer = Any

log = logging.getLogger(__name__)

__all__ = ["Callback", "Checkpoint", "Measure", "SampleGrid", "fixed_inputs", "restore", "signature", "trainer_state"]


class Callback:
    """Base class: override any of the hooks.  They run on rank 0 only under a process group,
    unless ``all_ranks`` is true (for a callback that takes part in collective calls)."""

    all_ranks = False

    def on_fit_start(self, trainer: "InversionTrainer") -> None:
        """Before anything is trained (check paths here, so a bad one fails at once)."""

    def on_refresh_end(self, trainer: "InversionTrainer", entry: dict[str, Any]) -> None:
        """After each inversion (the generator trained, the pool grown), before retraining."""

    def on_epoch_end(self, trainer: "InversionTrainer", entry: dict[str, Any]) -> None:
        """After each epoch (0 = pre-training) with its history entry."""

    def on_fit_end(self, trainer: "InversionTrainer") -> None:
        """After the last epoch."""


def fixed_inputs(trainer: "InversionTrainer", per_class: int, seed: int) -> tuple[Tensor, Tensor, Conditioning]:
    """``per_class`` labels per output (K + 1), with latent codes and conditioning drawn once
    from ``seed``: the same generated batch every epoch."""
    g, rng = trainer.garbage, torch.Generator().manual_seed(seed)
    labels = balanced_labels(g.num_classes + 1, per_class)
    cond = sample_conditioning(g.conditioning, labels.shape[0], g.num_classes + 1, labels, g.vector_temperature, rng)
    return labels, torch.randn(labels.shape[0], g.latent_dim, generator=rng), cond


class Measure(Callback):
    """Confidence, margin, UE and entropy of the classifier on ``per_class`` generated images
    per output (fixed noise and conditioning for the whole run), per class (``per_class`` of
    the entry) and averaged, after every inversion (report section 9.1).

    :param per_class: generated images per output
    :param seed: draws the fixed noise; ``None``: the trainer's seed + 1
    """

    all_ranks = True  # every rank's history holds the same figures

    def __init__(self, per_class: int = 10, seed: Optional[int] = None):
        validate_params({"per_class": per_class}, {"per_class": POSITIVE_INT}, "Measure")
        self.per_class, self.seed = per_class, seed

    def on_refresh_end(self, trainer: "InversionTrainer", entry: dict[str, Any]) -> None:
        labels, z, cond = fixed_inputs(trainer, self.per_class, trainer.seed + 1 if self.seed is None else self.seed)
        trainer.classifier.eval()
        with torch.inference_mode():
            logits = trainer.classifier(trainer.garbage.inverter.generate(labels, z, cond))
        per_class = per_class_metrics(logits, labels, trainer.num_classes + 1)
        entry.update({name: sum(v) / len(v) for name, v in per_class.items()}, per_class=per_class)


class SampleGrid(Callback):
    """Save generated images as ``<folder>/samples_epoch_NNN.png``: one row per output (K ID
    classes, then garbage), ``per_class`` images each, from the same fixed noise every epoch
    (the trainer's seed + 1, as :class:`Measure`); after every epoch, or with
    ``final_only=True`` after the last one only."""

    def __init__(self, folder: "str | os.PathLike[str]", final_only: bool = False, per_class: int = 10):
        self.folder, self.final_only, self.per_class = Path(folder), final_only, per_class

    def on_fit_start(self, trainer: "InversionTrainer") -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NioodError(f"SampleGrid: cannot create {self.folder} ({exc.strerror}); choose another folder") \
                from None
        if not os.access(self.folder, os.W_OK):
            raise NioodError(f"SampleGrid: {self.folder} is not writable; choose another folder")

    def on_epoch_end(self, trainer: "InversionTrainer", entry: dict[str, Any]) -> None:
        if not self.final_only and entry.get("phase") != "pretrain":
            self.save(trainer, entry["epoch"])

    def on_fit_end(self, trainer: "InversionTrainer") -> None:
        if self.final_only:
            self.save(trainer, trainer.history[-1]["epoch"])

    def save(self, trainer: "InversionTrainer", epoch: int) -> Path:
        import io

        from torchvision.utils import save_image

        labels, z, cond = fixed_inputs(trainer, self.per_class, trainer.seed + 1)
        images = trainer.garbage.inverter.generate(labels, z, cond)
        buf = io.BytesIO()
        save_image(images.cpu(), buf, format="png", nrow=self.per_class, normalize=True, value_range=(-1, 1))
        return atomic_write_bytes(self.folder / f"samples_epoch_{epoch:03d}.png", buf.getvalue())


class Checkpoint(Callback):
    """Write the trainer's state atomically after every epoch to ``path`` (``{epoch}`` in the
    name keeps one file per epoch: ``run-{epoch}.pt``); ``fit(resume=path)`` continues from it
    and reproduces an uninterrupted run.  Under a process group every rank's own random states
    are gathered into rank 0's file."""

    all_ranks = True

    def __init__(self, path: "str | os.PathLike[str]"):
        self.path = path

    def on_fit_start(self, trainer: "InversionTrainer") -> None:
        if distributed.is_main():
            checkpoint.check_writable(self.path)

    def on_epoch_end(self, trainer: "InversionTrainer", entry: dict[str, Any]) -> None:
        several = distributed.world_size() > 1
        ranks = distributed.gather_objects(_rank_state(trainer)) if several else None
        if distributed.is_main():
            state = trainer_state(trainer) if ranks is None else {**trainer_state(trainer), "ranks": ranks}
            checkpoint.save(self.path, entry["epoch"], signature(trainer), state, trainer.train_loader,
                            len(ranks or [0]))


def signature(trainer: "InversionTrainer") -> str:
    """What a checkpoint must agree on to be resumed (hashed): the trainer's hyperparameters,
    the garbage sampler's, the image shape and the checkpoint format."""
    params = trainer.get_params()
    params["garbage"] = {k: v for k, v in params["garbage"].items() if k not in RUNTIME}
    blob = json.dumps({"format": checkpoint.FORMAT, "params": params,
                       "image_shape": trainer.garbage.image_shape}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def trainer_state(trainer: "InversionTrainer") -> dict[str, Any]:
    """Everything a resumed run needs: weights, optimiser, schedule (per batch or per epoch), the
    recipe's Lookahead weights (when it has them), garbage, RNG, history."""
    optim = trainer.optimisation
    return {
        "classifier": trainer.classifier.state_dict(), "garbage": trainer.garbage.state_dict(),
        "classifier_opt": optim.optimizer.state_dict(), "scheduler": optim.scheduler.state_dict(),
        **({} if optim.lookahead is None else {"lookahead": optim.lookahead.state_dict()}),
        "class_counts": trainer.class_counts_, "class_means": trainer.class_means_, "torch_rng": torch.get_rng_state(),
        # one process: every GPU's state; several: each rank's own GPU (Checkpoint's "ranks")
        "cuda_rng": torch.stack(torch.cuda.get_rng_state_all())
        if trainer.device.type == "cuda" and distributed.world_size() == 1 else torch.empty(0),
        "history": json.dumps(trainer.history),
    }


def _load_trainer_state(trainer: "InversionTrainer", state: dict[str, Any]) -> None:
    trainer.classifier.load_state_dict(state["classifier"])
    trainer.garbage.load_state_dict(state["garbage"])
    optim = trainer.optimisation
    optim.optimizer.load_state_dict(state["classifier_opt"])
    optim.scheduler.load_state_dict(state["scheduler"])
    if optim.lookahead is not None:
        optim.lookahead.load_state_dict(state["lookahead"])
    trainer.class_counts_, trainer.class_means_ = state["class_counts"], state["class_means"]
    torch.set_rng_state(state["torch_rng"])
    if trainer.device.type == "cuda" and state["cuda_rng"].numel():
        torch.cuda.set_rng_state_all(list(state["cuda_rng"]))
    trainer.history = json.loads(state["history"])


def _rank_state(trainer: "InversionTrainer") -> dict[str, Tensor]:
    """This rank's own random states (the shared ones are in the trainer's state_dict)."""
    gen = checkpoint.loader_generator(trainer.train_loader)
    dev = trainer.device
    return {**trainer.garbage.rank_state_dict(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else torch.empty(0),
            "loader_rng": gen.get_state() if gen is not None else torch.empty(0)}


def restore(trainer: "InversionTrainer", path: "str | os.PathLike[str]") -> None:
    """Load checkpoint ``path`` into a trainer inside ``fit`` (after its setup), this rank's own
    random states included."""
    epoch, state = checkpoint.load(path, signature(trainer), trainer.train_loader, distributed.world_size())
    try:
        _load_trainer_state(trainer, state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit this model ({exc}); delete it or "
                              "start without resume") from exc
    if "ranks" in state:  # this rank's own states
        own = state["ranks"][distributed.rank()]
        trainer.garbage.load_rank_state_dict(own)
        torch.set_rng_state(own["torch_rng"])
        if trainer.device.type == "cuda" and own["cuda_rng"].numel():
            torch.cuda.set_rng_state(own["cuda_rng"], trainer.device)
        gen = checkpoint.loader_generator(trainer.train_loader)
        if gen is not None and own["loader_rng"].numel():
            gen.set_state(own["loader_rng"])
    log.info("resumed from %s after epoch %d", path, epoch)
