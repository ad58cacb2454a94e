"""Attacking a whole set and measuring the attack's strength.

Strength is the paper's mean absolute percentage error between the features of the attacked
OOD image and of its ID target::

    MAPE(z_out, z_in) = mean_i |z_out,i - z_in,i| / max_i |z_in,i|

(returned as a fraction; multiply by 100 for percent).
"""
from __future__ import annotations

import logging
import math
from typing import Callable

import torch
from torch import Tensor, nn

from ..validation import Interval, check_param
from ._modules import encode, eval_mode, module_device, owning_modules, resolve_encoder
from .adaptive import adaptive_attack
from .feature import ood_attack
from .optimise import check_budget, check_images
from ..errors import InvalidArgumentError

__all__ = ["mape", "pair_targets", "run_attack"]

logger = logging.getLogger(__name__)


def mape(z_out: Tensor, z_in: Tensor) -> Tensor:
    """Per-sample ``MAPE = mean_i |z_out,i - z_in,i| / max_i |z_in,i|``.

    Both inputs are ``[B, ...]`` (flattened after the batch dimension) and give ``[B]``;
    1-D inputs are one vector and give a 0-d tensor.  The value is a fraction (the paper's
    "0.1 %" is ``1e-3``).  An all-zero ``z_in`` gives ``inf`` (or ``nan`` for equal vectors).
    """
    if not isinstance(z_out, Tensor) or not isinstance(z_in, Tensor):
        raise InvalidArgumentError("mape expects two tensors")
    if z_out.shape != z_in.shape:
        raise InvalidArgumentError(f"z_out and z_in must have the same shape, got {tuple(z_out.shape)} "
                         f"and {tuple(z_in.shape)}")
    if z_in.ndim == 0:
        raise InvalidArgumentError("mape needs feature vectors [B, D] or [D], got a scalar")
    single = z_in.ndim == 1
    a, b = (z_out[None], z_in[None]) if single else (z_out.flatten(1), z_in.flatten(1))
    if b.shape[1] == 0:
        raise InvalidArgumentError(f"mape needs non-empty feature vectors, got shape {tuple(z_in.shape)}")
    if not b.is_floating_point():
        a, b = a.double(), b.double()
    value = (a - b).abs().mean(dim=1) / b.abs().amax(dim=1)
    return value[0] if single else value


def pair_targets(num_ood: int, num_id: int, seed: int = 0) -> Tensor:
    """Indices of the ID image paired with each OOD start image, ``[num_ood]`` (long, CPU).

    A random permutation of the ID indices (distinct targets) when ``num_id >= num_ood``,
    draws with replacement otherwise.  Deterministic in ``seed``; :func:`run_attack` uses it.
    """
    check_param("num_ood", num_ood, [Interval(int, 0, None)], "pair_targets")
    check_param("num_id", num_id, [Interval(int, 1, None)], "pair_targets")
    gen = torch.Generator().manual_seed(seed)
    if num_id >= num_ood:
        return torch.randperm(num_id, generator=gen)[:num_ood]
    return torch.randint(num_id, (num_ood,), generator=gen)


def run_attack(encoder: nn.Module | Callable[[Tensor], Tensor], id_images: Tensor,
               ood_images: Tensor, eps: float, norm: str = "l2", steps: int = 100,
               lr: float = 0.01, batch_size: int = 256, seed: int = 0,
               score_fn: Callable[[Tensor], Tensor] | None = None, *, random_init: bool = True,
               device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Attack every OOD image towards a random ID image; return ``(x_adv, mape_values)``.

    OOD image ``j`` starts the attack and is paired with ID image
    ``pair_targets(len(ood_images), len(id_images), seed)[j]``.  Without ``score_fn`` this
    is :func:`~niood_plugin.attack.ood_attack` (feature matching); with it,
    :func:`~niood_plugin.attack.adaptive_attack` on ``score_fn`` (the paired ID image then
    only serves the MAPE).  ``mape_values[j]`` is ``mape(f(x_adv[j]), f(x_in[target[j]]))``
    with ``f`` the encoder's features.

    Work is done in batches of ``batch_size`` on ``device`` (default: the encoder's
    parameter device, else the images' device); results come back on ``ood_images``'
    device.  The random starts use a CPU generator seeded with ``seed``, so runs are
    reproducible for a fixed ``batch_size``.
    """
    check_budget(eps, norm, steps, lr, "run_attack")
    check_images(id_images, "id_images", "run_attack")
    check_images(ood_images, "ood_images", "run_attack")
    if id_images.shape[1:] != ood_images.shape[1:]:
        raise InvalidArgumentError(f"ID and OOD images differ in shape: {tuple(id_images.shape[1:])} vs "
                         f"{tuple(ood_images.shape[1:])}")
    if len(id_images) == 0:
        raise InvalidArgumentError("id_images is empty: need at least one ID target")
    check_param("batch_size", batch_size, [Interval(int, 1, None)], "run_attack")
    f = resolve_encoder(encoder)
    if device is None:
        device = module_device(encoder)
        if device is None:
            device = ood_images.device
    targets = pair_targets(len(ood_images), len(id_images), seed)
    generator = torch.Generator().manual_seed(seed + 1)
    advs: list[Tensor] = []
    mapes: list[Tensor] = []
    n_batches = math.ceil(len(ood_images) / batch_size)
    with eval_mode(owning_modules(encoder, f, score_fn)):
        for i, lo in enumerate(range(0, len(ood_images), batch_size)):
            idx = targets[lo:lo + batch_size]
            x_in = id_images[idx.to(id_images.device)].to(device)
            x_start = ood_images[lo:lo + batch_size].to(device)
            if score_fn is None:
                x_adv = ood_attack(encoder, x_in, x_start, eps, norm, steps, lr, random_init, generator)
            else:
                x_adv = adaptive_attack(score_fn, x_start, eps, norm, steps, lr, random_init, generator)
            with torch.no_grad():
                values = mape(encode(f, x_adv), encode(f, x_in))
            advs.append(x_adv.to(ood_images.device))
            mapes.append(values.to(ood_images.device))
            logger.info("attack batch %d/%d: median MAPE %.4g", i + 1, n_batches, float(values.median()))
    if not advs:
        empty = ood_images.new_empty((0,))
        return ood_images.clone(), empty
    return torch.cat(advs), torch.cat(mapes)
