"""The optimisation loop shared by both attacks, and the checks of its budget and images.

Projected gradient descent on ``delta = x_out - x'_out`` for ``min sum_b loss(x'_out + delta)_b``:

1. ``delta_0 ~ ball_p(eps)`` (random start; ``delta_0 = 0`` without ``random_init``);
2. for ``t = 1..N``: ``g = h(dJ/d delta)``, one ``torch.optim.Adamax`` step with gradient
   ``g`` and learning rate ``alpha``, then ``delta <- Proj_p(delta)`` and
   ``delta <- clamp(x'_out + delta, -1, 1) - x'_out``.

``h`` is the sign function for ``p = inf`` and ``g / ||g||_2`` (per sample) for ``p = 2``
(:mod:`.geometry`).
"""
from __future__ import annotations

import logging
import math
from typing import Callable

import torch
from torch import Tensor

from ..validation import InstanceOf, Interval, Options, check_param, validate_params
from .geometry import NORMS, project, random_start, transform_grad
from ..errors import InvalidArgumentError, InvalidTypeError

logger = logging.getLogger(__name__)

LossFn = Callable[[Tensor], Tensor]

_RANGE_TOL = 1e-5

#: The attack budget, shared by :func:`~.ood_attack`, :func:`~.adaptive_attack` and :func:`~.run_attack`.
BUDGET_CONSTRAINTS = {
    "eps": [Interval(float, 0, None, closed="left")],
    "norm": [Options(*NORMS)],
    "steps": [Interval(int, 1, None)],
    "lr": [Interval(float, 0, None, closed="neither")],
}


def check_budget(eps: float, norm: str, steps: int, lr: float, owner: str) -> None:
    validate_params({"norm": norm, "eps": eps, "steps": steps, "lr": lr}, BUDGET_CONSTRAINTS, owner)


def check_images(x: Tensor, name: str, owner: str) -> None:
    """``x`` is a floating-point batch (at least 2-D) with values in ``[-1, 1]``."""
    check_param(name, x, [InstanceOf(Tensor, "a torch.Tensor")], owner)
    if x.ndim < 2:
        raise InvalidArgumentError(f"{name} must be a batch [B, C, H, W] (at least 2-D), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InvalidArgumentError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.numel() and (x.min() < -1 - _RANGE_TOL or x.max() > 1 + _RANGE_TOL):
        raise InvalidArgumentError(
            f"{name} has values in [{float(x.min()):.4g}, {float(x.max()):.4g}]; images must lie in "
            "[-1, 1] (normalise with mean 0.5, std 0.5)"
        )


def minimise(loss_fn: LossFn, x_start: Tensor, eps: float, norm: str, steps: int, lr: float,
             random_init: bool, generator: torch.Generator | None, normalize_grad: bool,
             keep_best: bool) -> Tensor:
    """Projected Adamax on ``delta`` for ``min sum_b loss_fn(x_start + delta)[b]``.

    ``loss_fn`` maps a batch ``[B, ...]`` to per-sample losses ``[B]``.  Gradients are taken
    with :func:`torch.autograd.grad` w.r.t. ``delta`` only, so no parameter ``.grad`` is
    touched.  Every sample's loss is summed (not averaged) and ``h`` is per sample, so each
    sample's trajectory does not depend on the rest of the batch.  With ``keep_best`` each
    sample's lowest-loss iterate is returned, else the last one.  Returns the detached
    ``x_out = clamp(x_start + delta, -1, 1)``.
    """
    x_start = x_start.detach().clamp(-1.0, 1.0)
    batch = x_start.shape[0]
    if batch == 0 or eps == 0:
        return x_start.clone()
    delta = random_start(x_start, eps, norm, generator) if random_init else torch.zeros_like(x_start)
    delta = project(delta, x_start, eps, norm).requires_grad_(True)
    optimiser = torch.optim.Adamax([delta], lr=lr)
    best_loss = torch.full((batch,), math.inf, device=x_start.device, dtype=x_start.dtype)
    best_delta = delta.detach().clone()
    first_loss: float | None = None
    for step in range(steps + 1):  # the extra pass only scores the final iterate
        last = step == steps
        with torch.set_grad_enabled(not last):
            loss = loss_fn(x_start + delta)
            if not isinstance(loss, Tensor):
                raise InvalidTypeError(f"the attack loss must be a tensor of one value per sample, got a "
                                       f"{type(loss).__name__} (score_fn must return a [B] tensor)")
            if loss.shape != (batch,):
                raise InvalidArgumentError(
                    f"the attack loss must give one value per sample, shape ({batch},); got "
                    f"{tuple(loss.shape)} (score_fn must return a [B] tensor)"
                )
            if not last:
                grad = (torch.autograd.grad(loss.sum(), delta, allow_unused=True)[0]
                        if loss.requires_grad else None)
                if grad is None:
                    raise InvalidArgumentError("the attack loss does not depend differentiably on the input "
                                     "(is score_fn/encoder run under torch.no_grad() or detached?)")
        with torch.no_grad():
            value = loss.detach().to(best_loss.dtype)
            if first_loss is None and logger.isEnabledFor(logging.DEBUG):
                first_loss = float(value.mean())
            if keep_best:  # NaN losses never count as better
                better = value < best_loss
                best_loss = torch.where(better, value, best_loss)
                best_delta = torch.where(better.view(-1, *([1] * (delta.ndim - 1))), delta, best_delta)
            if last:
                if not keep_best:
                    best_loss, best_delta = value, delta.detach()
                break
            delta.grad = transform_grad(grad, norm) if normalize_grad else grad
            optimiser.step()
            delta.copy_(project(delta, x_start, eps, norm))
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("attack (%s, eps=%g, %d steps): mean loss %.4g -> %.4g", norm, eps, steps,
                     first_loss, float(best_loss.mean()))
    return (x_start + best_delta).clamp(-1.0, 1.0).detach()
