"""The small contract every classifier in niood-plugin satisfies.

Network inversion needs the classifier's penultimate features (for the cosine and
orthogonality losses) as well as its logits, and the feature-based detectors of
pytorch-ood (Mahalanobis, KNN, ViM) need the same features.  We therefore ask for
two methods instead of one ``forward``::

    features(x) -> Tensor[B, D]     # penultimate features
    head(f)     -> Tensor[B, M]     # logits from those features (a linear layer)

and ``forward(x) == head(features(x))``.  Any ``nn.Module`` with these methods works;
:func:`niood_plugin.models.build_classifier` returns such modules for the report's
architectures and wraps any timm model.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ..errors import InvalidArgumentError, InvalidTypeError


@runtime_checkable
class FeatureClassifier(Protocol):
    """A classifier that exposes its penultimate features (see module docstring)."""

    def features(self, x: Tensor) -> Tensor: ...

    def head(self, f: Tensor) -> Tensor: ...

    def __call__(self, x: Tensor) -> Tensor: ...


def check_feature_classifier(model: object) -> None:
    """Raise ``TypeError`` with a fix if ``model`` does not follow the protocol."""
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"expected a torch.nn.Module classifier, got {type(model).__name__}")
    missing = [m for m in ("features", "head") if not callable(getattr(model, m, None))]
    if missing:
        raise InvalidTypeError(
            f"{type(model).__name__} lacks {', '.join(missing)}(): niood-plugin needs "
            "features(x) -> [B, D] penultimate features and head(f) -> logits. Build it with "
            "niood_plugin.models.build_classifier(...) or wrap it with "
            "niood_plugin.models.TimmClassifier / implement the two methods."
        )



def check_garbage_outputs(model: nn.Module, x: Tensor, num_classes: int) -> None:
    """Raise unless ``model`` gives K + 1 logits (K ID classes and the garbage class) for the
    batch ``x`` (two images are enough; run in eval mode, nothing is learned)."""
    model.eval()
    with torch.inference_mode():
        out = model(x[:2])
    if out.dim() != 2 or out.shape[1] != num_classes + 1:
        raise InvalidArgumentError(
            f"the classifier returns {tuple(out.shape[1:])} outputs but needs {num_classes + 1} "
            f"({num_classes} ID classes + 1 garbage); build it with num_outputs={num_classes + 1}")
