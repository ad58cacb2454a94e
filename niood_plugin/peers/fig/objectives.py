"""FIG's objectives: the modified energy of the implicit generator (eq. 16) and the
fine-tuning loss, cross-entropy minus the generated samples' softmax entropy (eq. 19-20)."""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor
from ...errors import InvalidArgumentError

__all__ = ["modified_energy", "softmax_entropy", "fig_loss"]


def modified_energy(logits: Tensor, c: float = 5.0) -> Tensor:
    """Per-sample modified energy of eq. 16, :math:`\\sum_y (f_y/c)(1 - \\exp(f_y/c))`.

    :param logits: ``[B, K]``
    :param c: scale that keeps :math:`\\exp` in range (the paper uses 5)
    :return: ``[B]``; lower energy = more confident, more probable under the implicit generator
    """
    g = logits / c
    return (g * (1.0 - g.exp())).sum(dim=1)


def softmax_entropy(logits: Tensor) -> Tensor:
    """Shannon entropy (nats) of ``softmax(logits)`` per row: ``[B, K] -> [B]``."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def fig_loss(
    logits_id: Tensor,
    y_id: Tensor,
    logits_gen: Optional[Tensor],
    *,
    entropy_weight: float = 1.0,
    entropy_temperature: float = 1.0,
) -> Tensor:
    """FIG objective (eq. 19-20, as a loss to minimise).

    .. math:: \\mathcal L = \\frac{1}{N}\\sum_i -\\log p(y_i|x_i)
              \\; - \\; w \\cdot \\frac{1}{M}\\sum_j H(p(\\cdot|\\tilde x_j))

    The paper's weight is :math:`w = 1`: the second term of eq. 20 averages
    :math:`\\sum_y p \\log p` over the :math:`N K` generated samples.

    :param logits_id: ``[N, K]`` logits of the in-distribution batch
    :param y_id: ``[N]`` labels
    :param logits_gen: ``[M, K]`` logits of the generated samples (``None`` or ``M = 0``: CE only)
    :param entropy_weight: :math:`w`
    :param entropy_temperature: :math:`T`; the entropy term is :math:`H(\\mathrm{softmax}(f/T))`
        (``1``: eq. 20 as printed).  Every :math:`T > 0` has the same maximiser (equal logits,
        i.e. the uniform prediction), but for :math:`T > 1` the gradient does not vanish on
        saturated predictions (see the package docstring)
    :return: scalar loss
    """
    if logits_id.dim() != 2:
        raise InvalidArgumentError(f"logits_id must be [N, K], got shape {tuple(logits_id.shape)}")
    ce = F.cross_entropy(logits_id, y_id)
    if logits_gen is None or logits_gen.shape[0] == 0:
        return ce
    if logits_gen.dim() != 2 or logits_gen.shape[1] != logits_id.shape[1]:
        raise InvalidArgumentError(
            f"logits_gen must be [M, {logits_id.shape[1]}], got shape {tuple(logits_gen.shape)}"
        )
    return ce - entropy_weight * softmax_entropy(logits_gen / entropy_temperature).mean()
