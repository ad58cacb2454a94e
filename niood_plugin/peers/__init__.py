"""Peer OOD-training methods, for comparison with network inversion.

* FIG (:mod:`.fig`): fine-tunes a pretrained classifier on samples of its own energy-based
  implicit generator; score the result with max-softmax.
* BAL (:mod:`.bal`): a conditional GAN on a frozen classifier's features; score with
  :class:`BALDetector`.
"""
from __future__ import annotations

from .bal import (BALDetector, BALTrainer, FeatureDiscriminator, FeatureGenerator,
                  uniform_ood_features)
from .fig import FIGTrainer, fig_loss, langevin_sample, modified_energy

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
]
