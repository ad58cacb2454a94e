"""The feature-matching OOD attack (Algorithm 1 of "An algorithm for out-of-distribution
attack to neural network encoder").

Given an in-distribution image ``x_in``, a start image ``x'_out`` that is clearly OOD and an
encoder ``f``, look for ``x_out`` close to ``x'_out`` whose features equal those of ``x_in``::

    minimise   J(x_out) = ||f(x_out) - f(x_in)||_2^2          (sum over feature dims)
    subject to ||x_out - x'_out||_p <= eps,   x_out in [-1, 1]^n,   p in {2, inf}

solved by :func:`~.optimise.minimise` (projected Adamax on the perturbation).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ._modules import encode, eval_mode, owning_modules, resolve_encoder
from .optimise import check_budget, check_images, minimise
from ..errors import InvalidArgumentError

__all__ = ["ood_attack"]


def ood_attack(encoder: nn.Module | Callable[[Tensor], Tensor], x_in: Tensor, x_start: Tensor,
               eps: float, norm: str = "l2", steps: int = 100, lr: float = 0.01,
               random_init: bool = True, generator: torch.Generator | None = None, *,
               normalize_grad: bool = True, keep_best: bool = True) -> Tensor:
    """Algorithm 1: OOD images ``x_out`` near ``x_start`` with ``f(x_out) ~= f(x_in)``.

    Minimises ``J_b = ||f(x_out,b) - f(x_in,b)||_2^2`` (features flattened after the batch
    dimension) subject to ``||x_out,b - x_start,b||_p <= eps`` and ``x_out in [-1, 1]``;
    see :mod:`niood_plugin.attack` for the update.  ``x_in[b]`` and ``x_start[b]`` form a pair.

    Args:
        encoder: ``f``.  A module with a ``features`` method (the library's classifiers) is
            attacked on its penultimate features ``encoder.features``; any other callable
            ``x -> [B, ...]`` is used as is (pass ``model.forward`` to match logits).
            Modules are put in eval mode during the attack (flags restored afterwards) and
            their parameters receive no gradient.
        x_in: in-distribution targets ``[B, C, H, W]`` in ``[-1, 1]``.
        x_start: OOD start images ``x'_out``, same shape and device, in ``[-1, 1]``.
        eps: budget ``eps >= 0`` in the chosen norm (``eps = 0`` returns ``x_start``).
        norm: ``"l2"`` (the paper's evaluations) or ``"linf"``.
        steps: number of Adamax steps ``N > 0``.
        lr: Adamax learning rate ``alpha`` (the paper uses ``eps / 100``).
        random_init: start from a random point of the eps-ball instead of ``x_start``.
        generator: random source of the start (e.g. a seeded CPU ``torch.Generator``).
        normalize_grad: apply ``h`` (sign / L2 normalisation) before Adamax.
        keep_best: return each sample's lowest-loss iterate instead of the last one.

    Returns:
        Detached ``x_out`` on the inputs' device, same shape as ``x_start``.
    """
    check_budget(eps, norm, steps, lr, "ood_attack")
    check_images(x_in, "x_in", "ood_attack")
    check_images(x_start, "x_start", "ood_attack")
    if x_in.shape != x_start.shape:
        raise InvalidArgumentError(f"x_in and x_start must have the same shape, got {tuple(x_in.shape)} "
                         f"and {tuple(x_start.shape)}")
    if x_in.device != x_start.device:
        raise InvalidArgumentError(f"x_in is on {x_in.device} but x_start on {x_start.device}")
    f = resolve_encoder(encoder)
    with eval_mode(owning_modules(encoder, f)):
        with torch.no_grad():
            z_in = encode(f, x_in)

        def loss_fn(x: Tensor) -> Tensor:
            return (encode(f, x) - z_in).pow(2).sum(dim=1)

        return minimise(loss_fn, x_start, eps, norm, steps, lr, random_init, generator,
                        normalize_grad, keep_best)
