"""OOD attack on a feature encoder (Algorithm 1 of "An algorithm for out-of-distribution
attack to neural network encoder") and an adaptive attack on an OOD score.

* :func:`ood_attack` (:mod:`.feature`): look for ``x_out`` near a clearly-OOD start image
  ``x'_out`` whose features equal those of an ID image ``x_in``::

      minimise   J(x_out) = ||f(x_out) - f(x_in)||_2^2
      subject to ||x_out - x'_out||_p <= eps,   x_out in [-1, 1]^n,   p in {2, inf}

* :func:`adaptive_attack` (:mod:`.adaptive`): same budget and loop, but minimise a
  differentiable OOD score ``s(x) -> [B]`` (higher = more OOD) directly;
  :func:`ue_score_fn` and :func:`garbage_prob_score_fn` build such scores.
* :func:`run_attack` and :func:`mape` (:mod:`.evaluate`): attack a whole set and measure the
  attack's strength with the paper's ``MAPE(z_out, z_in) = mean_i |z_out,i - z_in,i| / max_i |z_in,i|``.

Both attacks share one loop (:mod:`.optimise`): projected Adamax on the perturbation
``delta = x_out - x'_out`` with the gradient transform ``h`` (sign for L-inf, per-sample L2
normalisation for L2) and the projection onto the ball and the image box (:mod:`.geometry`).

Choices where the paper leaves room (see the function docstrings for details):

* the random L2 start is a uniformly random direction with radius ``eps * U(0, 1)``; the
  L-inf start is uniform in the cube ``[-eps, eps]^n``;
* ``h`` is applied to the gradient before Adamax, as Algorithm 1 writes it
  (``normalize_grad=False`` feeds Adamax the raw gradient);
* every sample's loss is summed (not averaged) over the batch and ``h`` is per sample, so
  each sample's trajectory does not depend on the rest of the batch;
* by default the iterate with the lowest loss seen for each sample is returned
  (``keep_best=True``); the paper's "repeat and keep the best solution" in spirit.
"""
from __future__ import annotations

from .adaptive import (GarbageProbScore, UEScore, adaptive_attack, garbage_prob_score_fn, ue_score_fn,
                       uncertainty_score)
from .evaluate import mape, pair_targets, run_attack
from .feature import ood_attack
from .geometry import NORMS, project

__all__ = [
    "NORMS", "GarbageProbScore", "UEScore", "adaptive_attack", "garbage_prob_score_fn", "mape",
    "ood_attack", "pair_targets", "project", "run_attack", "ue_score_fn", "uncertainty_score",
]
