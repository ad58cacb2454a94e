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
from ..scores import id_logits
from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = ["openood_confidence", "batch_xy", "check_garbage_index", "ue_and_prediction", "ensemble_logits"]

BATCH_KEYS = ("data", "label")  # OpenOOD's dict batch: images and labels


def _describe(value: Any) -> str:
    """What arrived, for an error message: type, and shape for arrays."""
    if isinstance(value, Tensor):
        return f"a Tensor of shape {tuple(value.shape)}"
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    shape = getattr(value, "shape", None)
    return f"a {name} of shape {tuple(shape)}" if isinstance(shape, tuple) else f"a {name}"


def _require_tensor(value: Any, what: str) -> Tensor:
    if not isinstance(value, Tensor):
        hint = ": convert it with torch.from_numpy(...)" if type(value).__module__ == "numpy" else ""
        raise InvalidTypeError(f"{what} must be a torch.Tensor, got {_describe(value)}{hint}")
    return value


def _pair(x: Any, y: Any, names: tuple[str, str]) -> tuple[Tensor, Tensor]:
    """``(x, y)`` once both are tensors of one batch: images ``[B, ...]`` and labels ``[B]``
    (or ``[B, K]``); two images of a batch are not."""
    x, y = _require_tensor(x, f"batch_xy: {names[0]}"), _require_tensor(y, f"batch_xy: {names[1]}")
    if x.dim() < 2 or y.dim() not in (1, 2) or y.shape[0] != x.shape[0]:
        raise InvalidArgumentError(f"batch_xy needs images [B, ...] and labels [B] of one batch, got {names[0]} of shape "
                                   f"{tuple(x.shape)} and {names[1]} of shape {tuple(y.shape)}: yield (images, labels)")
    return x, y


def openood_confidence(scores: Tensor) -> Tensor:
    """OpenOOD's ``conf`` (higher = in-distribution) of outlier scores (higher = OOD)."""
    return -_require_tensor(scores, "openood_confidence: scores")


def batch_xy(batch: Any) -> tuple[Tensor, Tensor]:
    """``(images, labels)`` of an OpenOOD dict batch (keys ``"data"`` and ``"label"``, others
    ignored) or of an ``(x, y, ...)`` tuple or list: images ``[B, ...]`` and labels ``[B]`` (or
    ``[B, K]``), both tensors.

    Anything else (a bare image tensor, a numpy array, a tuple of one item, a dict with other
    keys) is refused with :class:`~niood_plugin.errors.InvalidTypeError` or
    :class:`~niood_plugin.errors.InvalidArgumentError` naming what arrived: the first two
    entries of an image batch are not images and labels.
    """
    if isinstance(batch, dict):
        missing = [k for k in BATCH_KEYS if k not in batch]
        if missing:
            raise InvalidArgumentError(f"batch_xy: a dict batch needs the keys {BATCH_KEYS} (OpenOOD's), got keys "
                                       f"{sorted(map(str, batch))}; missing {missing}")
        return _pair(batch["data"], batch["label"], ("batch['data']", "batch['label']"))
    if isinstance(batch, (tuple, list)):
        if len(batch) < 2:
            raise InvalidArgumentError(f"batch_xy needs an (x, y) pair, got a {type(batch).__name__} of {len(batch)} "
                                       "item(s): yield (images, labels)")
        return _pair(batch[0], batch[1], ("x", "y"))
    raise InvalidTypeError(f"batch_xy needs an (x, y) tuple or a dict with keys {BATCH_KEYS}, got "
                           f"{_describe(batch)}: yield (images, labels) or OpenOOD's dict batches")


def ue_and_prediction(logits: Tensor, garbage_index: Optional[int], variant: Optional[str] = None
                      ) -> tuple[Tensor, Tensor]:
    """UE scores of ``logits`` (K+1 with the garbage output at ``garbage_index``, or K) and the
    predicted ID class (argmax over the K ID logits)."""
    scores = UEDetector(None, garbage_index, variant).predict_logits(logits)
    return scores, id_logits(logits, garbage_index).argmax(1)


REQUIRED: Any = object()  # the default of a garbage_index the caller must give


def check_garbage_index(garbage_index: Any, variant: Optional[str], owner: str) -> Optional[int]:
    """``garbage_index`` once it is given and valid for :class:`~niood_plugin.UEDetector`."""
    if garbage_index is REQUIRED:
        raise InvalidArgumentError(f"{owner} needs garbage_index: the index of the output trained as the garbage "
                                   "class (K for a K+1-way model), or None for a plain K-way model")
    UEDetector(None, garbage_index, variant)  # raises for a negative, non-int or mismatched index
    return garbage_index


def ensemble_logits(logits: Tensor) -> Tensor:
    """torch-uncertainty's ``[B, M, C]`` logits of M estimators as one ``[B, C]`` (their mean)."""
    _require_tensor(logits, "ensemble_logits: logits")
    if logits.dim() == 2:
        return logits
    if logits.dim() != 3:
        raise InvalidArgumentError(f"expected logits [batch, estimators, classes], got shape {tuple(logits.shape)}")
    return logits.mean(dim=1)
