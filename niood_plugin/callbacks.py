"""Extras around :meth:`InversionTrainer.fit <niood_plugin.trainer.InversionTrainer.fit>`.

The trainer writes no files but checkpoints; anything else is a callback.  A callback's hooks
get the trainer; :meth:`Callback.on_epoch_end` also gets that epoch's history entry, and the
fixed-noise images of the measure phase are in ``trainer.last_samples``.

>>> trainer = InversionTrainer(clf, 10, (1, 28, 28), callbacks=[SampleGrid("runs/samples")])
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NioodError

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import InversionTrainer

__all__ = ["Callback", "SampleGrid"]


class Callback:
    """Base class: override any of the hooks."""

    def on_fit_start(self, trainer: "InversionTrainer") -> None:
        """Before anything is trained (check paths here, so a bad one fails at once)."""

    def on_epoch_end(self, trainer: "InversionTrainer", entry: dict[str, Any]) -> None:
        """After each epoch (0 = pre-training) with its history entry."""

    def on_fit_end(self, trainer: "InversionTrainer") -> None:
        """After the last epoch."""


class SampleGrid(Callback):
    """Save the fixed-noise samples as ``<folder>/samples_epoch_NNN.png``: one row per output
    (K ID classes, then garbage), ``measure_per_class`` images each; after every epoch, or with
    ``final_only=True`` after the last one only."""

    def __init__(self, folder: "str | os.PathLike[str]", final_only: bool = False):
        self.folder = Path(folder)
        self.final_only = final_only

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
            self._save(trainer, entry["epoch"])

    def on_fit_end(self, trainer: "InversionTrainer") -> None:
        if self.final_only:
            self._save(trainer, trainer.history[-1]["epoch"])

    def _save(self, trainer: "InversionTrainer", epoch: int) -> None:
        if trainer.last_samples is None:
            return
        from torchvision.utils import save_image

        save_image(trainer.last_samples.cpu(), self.folder / f"samples_epoch_{epoch:03d}.png",
                   nrow=trainer.measure_per_class, normalize=True, value_range=(-1, 1))
