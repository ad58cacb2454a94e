"""Score and batch conventions of other suites, converted without importing them.

* pytorch-ood, torch-uncertainty, our detectors: a higher score is more OOD.
* OpenOOD: ``conf``, a higher value is more in-distribution, so ``conf = -score``.
* OpenOOD batches are dicts (``batch["data"]``, ``batch["label"]``); ours are ``(x, y)``.
* torch-uncertainty hands a logit criterion ``[batch, estimators, classes]`` logits.
"""
from __future__ import annotations

from typing import Any, Optional

from torch import Tensor

from ..detector import UEDetector
from ..training import id_logits
from ..errors import InvalidArgumentError

__all__ = ["openood_confidence", "batch_xy", "ue_and_prediction", "ensemble_logits"]


def openood_confidence(scores: Tensor) -> Tensor:
    """OpenOOD's ``conf`` (higher = in-distribution) of outlier scores (higher = OOD)."""
    return -scores


def batch_xy(batch: Any) -> tuple[Tensor, Tensor]:
    """``(images, labels)`` of an OpenOOD dict batch or of an ``(x, y, ...)`` tuple."""
    if isinstance(batch, dict):
        return batch["data"], batch["label"]
    return batch[0], batch[1]


def ue_and_prediction(logits: Tensor, garbage_index: Optional[int], variant: Optional[str] = None
                      ) -> tuple[Tensor, Tensor]:
    """UE scores of ``logits`` (K+1 with the garbage output at ``garbage_index``, or K) and the
    predicted ID class (argmax over the K ID logits)."""
    scores = UEDetector(None, garbage_index, variant).predict_logits(logits)
    return scores, id_logits(logits, garbage_index).argmax(1)


def ensemble_logits(logits: Tensor) -> Tensor:
    """torch-uncertainty's ``[B, M, C]`` logits of M estimators as one ``[B, C]`` (their mean)."""
    if logits.dim() == 2:
        return logits
    if logits.dim() != 3:
        raise InvalidArgumentError(f"expected logits [batch, estimators, classes], got shape {tuple(logits.shape)}")
    return logits.mean(dim=1)
