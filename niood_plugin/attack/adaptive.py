"""The adaptive attack: minimise a differentiable OOD score directly, and such scores.

Same budget and loop as the feature attack, but the loss is an OOD score ``s(x) -> [B]``
(higher = more OOD)::

    minimise   s(x_out)    subject to ||x_out - x'_out||_p <= eps,   x_out in [-1, 1]^n

:func:`ue_score_fn` and :func:`garbage_prob_score_fn` build such scores for classifiers with
a garbage class.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..validation import Callable_, Interval, check_param
from ._modules import eval_mode, owning_modules
from .optimise import check_budget, check_images, minimise
from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = ["GarbageProbScore", "UEScore", "adaptive_attack", "garbage_prob_score_fn", "ue_score_fn",
           "uncertainty_score"]


def adaptive_attack(score_fn: Callable[[Tensor], Tensor], x_start: Tensor, eps: float,
                    norm: str = "l2", steps: int = 100, lr: float = 0.01, random_init: bool = True,
                    generator: torch.Generator | None = None, *, normalize_grad: bool = True,
                    keep_best: bool = True) -> Tensor:
    """Minimise an OOD score directly: ``min s(x_out)`` s.t. ``||x_out - x_start||_p <= eps``.

    ``score_fn(x) -> [B]`` must be differentiable, with higher values meaning "more OOD"
    (e.g. :func:`ue_score_fn` / :func:`garbage_prob_score_fn`).  Budget, projection,
    optimiser and arguments are those of :func:`~niood_plugin.attack.ood_attack`.  If
    ``score_fn`` is an ``nn.Module`` (the helpers here are) or a bound method of one, that
    module runs in eval mode during the attack.
    """
    check_budget(eps, norm, steps, lr, "adaptive_attack")
    check_images(x_start, "x_start", "adaptive_attack")
    check_param("score_fn", score_fn, [Callable_()], "adaptive_attack")
    with eval_mode(owning_modules(score_fn)):
        return minimise(score_fn, x_start, eps, norm, steps, lr, random_init, generator,
                        normalize_grad, keep_best)


def _garbage_index(index: int, num_logits: int) -> int:
    if not 0 <= index < num_logits:
        raise InvalidArgumentError(f"garbage_index {index} is out of range for {num_logits} logits: pass the index "
                                   "(>= 0) of the output trained as the garbage class")
    return index


def uncertainty_score(logits: Tensor, garbage_index: int | None = None) -> Tensor:
    """UE score per sample from logits ``[B, M]`` (higher = more OOD).

    Without a garbage class (``K = M``), with ``p = softmax(logits)``::

        UE = K / (K - 1) * (1 - sum_k p_k^2)          (0 for one-hot, 1 for uniform p)

    With ``garbage_index = g``: ``UE_id`` is the formula above on the softmax of the
    ``K = M - 1`` in-distribution logits, ``p_g = softmax(logits)_g`` and::

        score = 1 - (1 - p_g) * (1 - UE_id)
    """
    from ..detector import UEDetector  # one definition of UE for the whole library

    return UEDetector.score(logits, garbage_index, "combined")


class UEScore(nn.Module):
    """``x -> uncertainty_score(model(x), garbage_index)`` as a module (see :func:`ue_score_fn`)."""

    def __init__(self, model: nn.Module, garbage_index: int | None = None):
        super().__init__()
        self.model, self.garbage_index = model, garbage_index

    def forward(self, x: Tensor) -> Tensor:
        return uncertainty_score(self.model(x), self.garbage_index)


class GarbageProbScore(nn.Module):
    """``x -> softmax(model(x))[:, garbage_index]`` as a module."""

    def __init__(self, model: nn.Module, garbage_index: int):
        super().__init__()
        self.model, self.garbage_index = model, garbage_index

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(x)
        if not isinstance(logits, Tensor):
            raise InvalidTypeError(f"garbage_prob_score_fn: the model returned a {type(logits).__name__}, not a logits "
                                   "tensor [B, M]: pass a model (or callable) that returns the logits alone")
        if logits.ndim != 2:
            raise InvalidArgumentError(f"expected logits [B, M], got shape {tuple(logits.shape)}")
        return F.softmax(logits, dim=1)[:, _garbage_index(self.garbage_index, logits.shape[1])]


# The trained garbage output itself: a negative index would name the last class of a K-way model.
_INDEX = Interval(int, 0, None)


def ue_score_fn(model: nn.Module, garbage_index: int | None = None) -> UEScore:
    """Score for :func:`adaptive_attack`: the UE score of ``model``'s logits.

    See :func:`uncertainty_score` for the formula with and without a garbage class.
    """
    check_param("model", model, [Callable_()], "ue_score_fn")
    check_param("garbage_index", garbage_index, [_INDEX, None], "ue_score_fn")
    return UEScore(model, garbage_index)


def garbage_prob_score_fn(model: nn.Module, garbage_index: int) -> GarbageProbScore:
    """Score for :func:`adaptive_attack`: ``p_garbage = softmax(model(x))[garbage_index]``."""
    check_param("model", model, [Callable_()], "garbage_prob_score_fn")
    check_param("garbage_index", garbage_index, [_INDEX], "garbage_prob_score_fn")
    return GarbageProbScore(model, garbage_index)
