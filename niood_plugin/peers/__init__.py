"""Peer OOD-training methods, for comparison with network inversion.

* FIG (:mod:`.fig`): fine-tunes a pretrained classifier on samples of its own energy-based
  implicit generator; score the result with max-softmax.
* BAL (:mod:`.bal`): a conditional GAN on a frozen classifier's features; score with
  :class:`BALDetector`.
* LogitNorm (:mod:`.logitnorm`): cross-entropy on normalised logits (pytorch-ood's loss).
* VOS (:mod:`.vos`): virtual outliers from class-conditional Gaussians in feature space
  (pytorch-ood's loss).

LogitNorm and VOS are objectives for :func:`niood_plugin.training.train_plain`: they train like
the plain baseline with the loss swapped.
"""
from __future__ import annotations

from .bal import (BALDetector, BALTrainer, FeatureDiscriminator, FeatureGenerator,
                  uniform_ood_features)
from .fig import FIGTrainer, fig_loss, langevin_sample, modified_energy
from .logitnorm import LogitNormObjective
from .vos import VOSObjective

__all__ = [
    "FIGTrainer",
    "BALTrainer",
    "BALDetector",
    "FeatureGenerator",
    "FeatureDiscriminator",
    "langevin_sample",
    "fig_loss",
    "modified_energy",
    "uniform_ood_features",
    "LogitNormObjective",
    "VOSObjective",
]
