"""Inversion losses (report section 2.1.1) and class-balanced weights (section 3.2).

``L_inv = alpha * KL + beta * CE + gamma * Cosine + delta * Ortho`` where, for the
classifier's logits ``z`` on generated images and its penultimate features ``f``:

* ``KL  = KL(P || Q)``, P the conditioning distribution, Q = softmax(z) (batch mean);
* ``CE  = -log softmax(z)[y]`` for the conditioned label y (batch mean);
* ``Cosine = 1/(N(N-1)) * sum_{i != j} cos(f_i, f_j)``: minimising it spreads features apart
  (diversity); with ``labels`` the pairs are taken within each label only;
* ``Ortho = 1/N^2 * sum_{i,j} (G_ij - delta_ij)^2`` with ``G`` the Gram matrix of the
  L2-normalised features: it pushes features towards mutual orthogonality.

Not in the report, opt-in (``InversionConfig.novelty``): ``Novelty = 1/N * sum_i
cos(f_i, mu_{y_i})`` with ``mu_c`` the unit mean ID feature of class c (:func:`novelty_loss`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from .errors import InvalidArgumentError


def kl_loss(logits: Tensor, target: Tensor) -> Tensor:
    """``KL(target || softmax(logits))`` averaged over the batch."""
    return F.kl_div(F.log_softmax(logits, dim=1), target, reduction="batchmean")


def ce_loss(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits, labels)


def _normalised_gram(features: Tensor) -> Tensor:
    f = F.normalize(features.flatten(1), dim=1, eps=1e-8)
    return f @ f.T


def cosine_loss(features: Tensor, labels: Tensor | None = None) -> Tensor:
    """Mean cosine similarity over ordered pairs ``i != j`` (same-label pairs if ``labels``)."""
    n = features.shape[0]
    gram = _normalised_gram(features)
    mask = ~torch.eye(n, dtype=torch.bool, device=features.device)
    if labels is not None:
        mask &= labels[:, None] == labels[None, :]
    pairs = mask.sum()
    if pairs == 0:
        return features.sum() * 0.0
    return (gram * mask).sum() / pairs


def orthogonality_loss(features: Tensor) -> Tensor:
    """``1/N^2 * ||G - I||_F^2`` for the normalised-feature Gram matrix ``G``."""
    n = features.shape[0]
    gram = _normalised_gram(features)
    eye = torch.eye(n, device=features.device, dtype=gram.dtype)
    return ((gram - eye) ** 2).sum() / (n * n)


@dataclass(frozen=True)
class InversionLossWeights:
    """alpha (KL), beta (CE), gamma (cosine), delta (orthogonality); all must be >= 0."""

    alpha: float = 0.0
    beta: float = 1.0
    gamma: float = 0.0
    delta: float = 0.0

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma", "delta"):
            value = getattr(self, name)
            if not (value >= 0.0) or value != value or value == float("inf"):
                raise InvalidArgumentError(f"loss weight {name} must be a finite number >= 0, got {value!r}")
        if self.alpha == self.beta == self.gamma == self.delta == 0:
            raise InvalidArgumentError("all inversion loss weights are 0: set at least one of alpha, beta, gamma, delta")


def inversion_loss(logits: Tensor, features: Tensor, labels: Tensor, target: Tensor,
                   w: InversionLossWeights) -> tuple[Tensor, dict[str, float]]:
    """Weighted sum of the four terms; terms with weight 0 are not computed."""
    total = logits.new_zeros(())
    parts: dict[str, float] = {}
    if w.alpha:
        term = kl_loss(logits, target)
        total = total + w.alpha * term
        parts["kl"] = float(term.detach())
    if w.beta:
        term = ce_loss(logits, labels)
        total = total + w.beta * term
        parts["ce"] = float(term.detach())
    if w.gamma:
        term = cosine_loss(features, labels)
        total = total + w.gamma * term
        parts["cosine"] = float(term.detach())
    if w.delta:
        term = orthogonality_loss(features)
        total = total + w.delta * term
        parts["ortho"] = float(term.detach())
    return total, parts


def novelty_loss(features: Tensor, labels: Tensor, class_means: Tensor) -> Tensor:
    """Mean cosine similarity of each feature to the unit mean ID feature of its label.

    ``class_means`` is [K, D] (unit rows); samples whose label is not an ID class
    (``label >= K``, the garbage outputs) do not count.  Minimising it makes the generator
    produce images the classifier assigns to class c whose features are unlike class c's
    training images: the atypical inputs a softmax score misses.
    """
    k = class_means.shape[0]
    mask = labels < k
    if not bool(mask.any()):
        return features.new_zeros(())
    f = F.normalize(features[mask].float(), dim=1)
    return (f * class_means[labels[mask]]).sum(1).mean()
