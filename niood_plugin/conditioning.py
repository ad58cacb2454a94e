"""Conditioning of the inversion generator (report section 2.1.1).

For an N-output classifier (N = K + 1 with the garbage class):

* **vector** – draw ``v ~ N(0, I_N)``, take ``softmax(v / temperature)``; its argmax is the
  label.  The probability vector is both the generator's input and the KL target.
* **matrix** – an N x N matrix whose row and column of the label are 1, all else 0.
  The KL target is the one-hot label.
* **vector-matrix** – a vector as above, plus the matrix of its argmax.

:func:`sample_conditioning` draws labels uniformly, or takes given labels: for given
labels the vector's largest entry is swapped into the label's position, so the
distribution of the other entries is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .models.report import CONDITIONINGS
from .errors import InvalidArgumentError


@dataclass
class Conditioning:
    """One batch of conditioning: what the generator gets and what the losses compare to."""

    labels: Tensor               # [B] long, the conditioned class
    target: Tensor               # [B, N] probabilities for the KL loss
    vector: Tensor | None        # [B, N] (vector and vector-matrix)
    matrix: Tensor | None        # [B, 1, N, N] (matrix and vector-matrix)

    def to(self, device: torch.device | str) -> "Conditioning":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Conditioning(move(self.labels), move(self.target), move(self.vector), move(self.matrix))

    def __getitem__(self, idx: slice) -> "Conditioning":
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return Conditioning(pick(self.labels), pick(self.target), pick(self.vector), pick(self.matrix))


def label_matrix(labels: Tensor, num_classes: int) -> Tensor:
    """``[B, 1, N, N]`` matrices with row ``y`` and column ``y`` set to 1."""
    onehot = torch.nn.functional.one_hot(labels, num_classes).float()
    cross = torch.maximum(onehot[:, :, None], onehot[:, None, :])
    return cross[:, None]


def conditioning_vectors(labels: Tensor, num_classes: int, temperature: float = 1.0,
                         generator: torch.Generator | None = None) -> Tensor:
    """Softmaxed Gaussian vectors whose argmax equals ``labels``."""
    raw = torch.randn(labels.shape[0], num_classes, generator=generator, device=labels.device)
    top = raw.argmax(dim=1)
    rows = torch.arange(labels.shape[0], device=labels.device)
    at_label = raw[rows, labels].clone()
    raw[rows, labels] = raw[rows, top]
    raw[rows, top] = at_label
    return torch.softmax(raw / temperature, dim=1)


def sample_conditioning(kind: str, n: int, num_classes: int, labels: Tensor | None = None,
                        temperature: float = 1.0,
                        generator: torch.Generator | None = None) -> Conditioning:
    """Draw ``n`` conditionings of ``kind`` (``vector``, ``matrix``, ``vector-matrix``)."""
    if kind not in CONDITIONINGS:
        raise InvalidArgumentError(f"unknown conditioning {kind!r}; choose one of {CONDITIONINGS}")
    if labels is None:
        labels = torch.randint(num_classes, (n,), generator=generator)
    elif labels.shape != (n,):
        raise InvalidArgumentError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    vector = matrix = None
    if kind in ("vector", "vector-matrix"):
        vector = conditioning_vectors(labels, num_classes, temperature, generator)
        target = vector
    else:
        target = torch.nn.functional.one_hot(labels, num_classes).float()
    if kind in ("matrix", "vector-matrix"):
        matrix = label_matrix(labels, num_classes)
    return Conditioning(labels=labels, target=target, vector=vector, matrix=matrix)


def balanced_labels(num_classes: int, per_class: int) -> Tensor:
    """``[0]*per_class + [1]*per_class + ...``: labels for the fixed per-class metric batch."""
    return torch.arange(num_classes).repeat_interleave(per_class)
