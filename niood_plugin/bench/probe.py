"""Time-to-quality probe: ID accuracy and OOD AUROC after every training epoch.

The probe scores fixed, class-balanced subsets (``n`` images of the ID test set and of each
OOD set) with the model's default :class:`~niood_plugin.UEDetector` (the garbage probability for
a garbage-class model, combined UE for a plain one) and adds to the epoch's history entry:
``probe_id_acc``, ``probe_auroc`` (per OOD set), ``probe_auroc_avg`` and ``probe_time_s``.  It
measures; nothing is chosen from it.  Its own time is kept out of the training time
(:func:`probe_seconds`).
"""
from __future__ import annotations

import time
from typing import Any, Optional

import torch
from pytorch_ood.metrics import OODMetrics
from torch import nn

from ..callbacks import Callback
from ..data import TensorData, subset_indices
from ..detector import UEDetector

__all__ = ["QualityProbe", "probe_seconds"]


def _subset(data: TensorData, n: int, seed: int) -> TensorData:
    idx = subset_indices(data.y, min(n, len(data)), seed)
    return data if idx is None else TensorData(data.x[idx], data.y[idx], data.name)


class QualityProbe(Callback):
    """Call ``probe(model, entry)`` after an epoch (or use it as a trainer callback)."""

    def __init__(self, id_test: TensorData, oods: dict[str, TensorData], num_classes: int,
                 garbage_index: Optional[int], device: torch.device, n: int = 1000, batch_size: int = 512,
                 seed: int = 0):
        self.id_test = _subset(id_test, n, seed)
        self.oods = {name: _subset(d, n, seed) for name, d in oods.items()}
        self.num_classes, self.garbage_index = num_classes, garbage_index
        self.device, self.batch_size = device, batch_size

    @torch.inference_mode()
    def _logits(self, model: nn.Module, data: TensorData) -> torch.Tensor:
        return torch.cat([model(x.to(self.device)).float().cpu()
                          for x, _ in data.loader(batch_size=self.batch_size, channels_last=True)])

    def __call__(self, model: nn.Module, entry: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        detector = UEDetector(None, garbage_index=self.garbage_index)
        logits = self._logits(model, self.id_test)
        entry["probe_id_acc"] = float((logits[:, :self.num_classes].argmax(1) == self.id_test.y).float().mean())
        s_id = detector.predict_logits(logits)
        aurocs = {}
        for name, data in self.oods.items():
            metrics = OODMetrics()
            s_ood = detector.predict_logits(self._logits(model, data))
            metrics.update(torch.cat([s_id, s_ood]),
                           torch.cat([torch.zeros(len(s_id)), -torch.ones(len(s_ood))]).long())
            aurocs[name] = float(metrics.compute()["AUROC"])
        entry["probe_auroc"] = aurocs
        entry["probe_auroc_avg"] = sum(aurocs.values()) / max(len(aurocs), 1)
        entry["probe_time_s"] = time.perf_counter() - t0
        model.train(was_training)

    def on_epoch_end(self, trainer, entry: dict[str, Any]) -> None:  # type: ignore[override]
        self(trainer.classifier, entry)


def probe_seconds(history: list[dict[str, Any]]) -> float:
    """Time the probe took during a training run (to leave out of its training time)."""
    return float(sum(h.get("probe_time_s", 0.0) for h in history))
