"""Test-time augmentation by horizontal flip, for any classifier of the ``features`` / ``head``
protocol (:mod:`~niood_plugin.models.protocol`).

:class:`FlipAveraged` averages the features of an image and of its mirror image; with a linear
head (every classifier here) its logits are the mean of the two views' logits, the flip
test-time augmentation of airbench (Jordan 2024, arXiv:2404.00498) and of many CIFAR recipes.
Every detector then scores the averaged representation: logit detectors (MSP, Energy, UE),
feature detectors (Mahalanobis, KNN, ViM) and input-space ones (ODIN differentiates through
both views).  It doubles the cost of scoring; training is not affected.

>>> det = MaxSoftmax(FlipAveraged(model).eval())
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import InvalidTypeError
from .protocol import check_feature_classifier

__all__ = ["FlipAveraged"]


class FlipAveraged(nn.Module):
    """``features(x) = (model.features(x) + model.features(flip(x))) / 2`` (flip: the last
    dimension, width, of ``[B, C, H, W]`` images); ``head`` is the model's.  The wrapped model
    is ``self.model`` (its state dict is under ``model.``)."""

    def __init__(self, model: nn.Module):
        if isinstance(model, FlipAveraged):
            raise InvalidTypeError("FlipAveraged: the model is already flip-averaged; wrap the plain model once")
        check_feature_classifier(model)
        super().__init__()
        self.model = model

    def features(self, x: Tensor) -> Tensor:
        return (self.model.features(x) + self.model.features(torch.flip(x, dims=(-1,)))) / 2

    def head(self, f: Tensor) -> Tensor:
        return self.model.head(f)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
