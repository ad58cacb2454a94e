"""Softmax-based uncertainty scores shared by the detector and the trainer's metrics.

For probabilities ``p`` over ``K`` outputs:

* confidence ``max_i p_i``; margin ``p_(1) - p_(2)``; entropy ``-sum_i p_i log p_i`` (nats);
* UE (report section 7) ``1 - a/b`` with ``a = sum_i (p_i - 1/K)^2`` and
  ``b = sum_i (onehot(argmax p)_i - 1/K)^2``.  Since ``b = 1 - 1/K`` for every argmax and
  ``a = sum p^2 - 1/K``, ``UE = K (1 - sum_i p_i^2) / (K - 1)``: the normalised Gini impurity.
  UE is 0 for a one-hot ``p`` and 1 for the uniform one.

:func:`id_logits` removes the garbage output of a K+1-way model's logits, so the K
in-distribution ones can be scored alone.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["ue_from_probs", "softmax_metrics", "per_class_metrics", "id_logits"]


def id_logits(logits: Tensor, garbage_index: Optional[int]) -> Tensor:
    """The K in-distribution logits: ``logits`` without column ``garbage_index`` (``None``: all)."""
    if garbage_index is None:
        return logits
    n = logits.shape[1]
    g = garbage_index % n
    return torch.cat([logits[:, :g], logits[:, g + 1:]], dim=1)


def ue_from_probs(p: Tensor) -> Tensor:
    """UE of probability rows ``p`` ([B, K], K >= 2), clamped to [0, 1] against round-off."""
    k = p.shape[1]
    return (k * (1.0 - (p * p).sum(dim=1)) / (k - 1)).clamp_(0.0, 1.0)


def softmax_metrics(logits: Tensor) -> dict[str, Tensor]:
    """Per-sample confidence, margin, UE and entropy of ``softmax(logits)``."""
    p = torch.softmax(logits.float(), dim=1)
    top2 = p.topk(2, dim=1).values
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1)
    return {"confidence": top2[:, 0], "margin": top2[:, 0] - top2[:, 1],
            "ue": ue_from_probs(p), "entropy": entropy}


def per_class_metrics(logits: Tensor, labels: Tensor, num_classes: int) -> dict[str, list[float]]:
    """Mean of each :func:`softmax_metrics` value over the samples of each label (report 9.1)."""
    values = softmax_metrics(logits)
    labels = labels.cpu()
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).float()
    out: dict[str, list[float]] = {}
    for name, v in values.items():
        sums = torch.zeros(num_classes).index_add_(0, labels, v.detach().cpu().float())
        out[name] = (sums / counts).tolist()
    return out
