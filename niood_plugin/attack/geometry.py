"""Geometry of the attack's feasible set: random start, gradient transform ``h``, projection.

The feasible set for a start image ``x'_out`` and budget ``eps`` is::

    { x_out :  ||x_out - x'_out||_p <= eps,  x_out in [-1, 1]^n },   p in {2, inf}

and the attack works on the perturbation ``delta = x_out - x'_out``.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["NORMS", "project"]

NORMS = ("l2", "linf")
_TINY = 1e-12


def _per_sample_l2(t: Tensor) -> Tensor:
    """``||t_b||_2`` for each sample, shaped ``[B, 1, ..., 1]`` to broadcast against ``t``."""
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.ndim - 1)))


def random_start(x: Tensor, eps: float, norm: str, generator: torch.Generator | None) -> Tensor:
    """A random ``delta`` with ``||delta||_p <= eps`` (per sample).

    * ``linf``: ``delta ~ U[-eps, eps]^n`` (uniform in the cube);
    * ``l2``: ``delta = eps * r * u / ||u||_2`` with ``u ~ N(0, I)`` (uniform direction) and
      ``r ~ U(0, 1)``.  The paper only asks for ``||xi|| <= eps``; ``r ~ U(0, 1)`` spreads
      starts over all radii, whereas the volume-uniform ``r = U^(1/n)`` would put almost
      every start on the sphere for image-sized ``n``.

    Numbers are drawn on ``generator``'s device (the default generator of ``x``'s device
    without one) and moved to ``x``'s device, so a CPU generator is reproducible on CUDA.
    """
    gen_device = generator.device if generator is not None else x.device
    shape = tuple(x.shape)
    if norm == "linf":
        delta = (torch.rand(shape, generator=generator, device=gen_device, dtype=x.dtype) * 2 - 1) * eps
    else:
        u = torch.randn(shape, generator=generator, device=gen_device, dtype=x.dtype)
        r = torch.rand((shape[0],), generator=generator, device=gen_device, dtype=x.dtype)
        r = r.view(-1, *([1] * (len(shape) - 1)))
        delta = eps * r * u / _per_sample_l2(u).clamp_min(_TINY)
    return delta.to(x.device)


def transform_grad(g: Tensor, norm: str) -> Tensor:
    """Algorithm 1's ``h``: ``sign(g)`` for L-inf, ``g / ||g||_2`` (per sample) for L2."""
    if norm == "linf":
        return g.sign()
    return g / _per_sample_l2(g).clamp_min(_TINY)


def project(delta: Tensor, x_start: Tensor, eps: float, norm: str) -> Tensor:
    """Map ``delta`` into the feasible set of the attack and return the new ``delta``.

    First the eps-ball (per sample)::

        linf:  delta_i <- clamp(delta_i, -eps, eps)
        l2:    delta   <- delta * min(1, eps / ||delta||_2)

    then the image box: ``delta <- clamp(x_start + delta, -1, 1) - x_start``.

    The box step cannot leave the ball, so no second projection is needed.  For
    ``x_start_i`` in ``[-1, 1]``, ``c(v) = clamp(v, -1, 1)`` is monotone, 1-Lipschitz and
    fixes ``x_start_i``; hence the new coordinate ``c(x_start_i + delta_i) - x_start_i`` has
    the sign of ``delta_i`` (or is 0) and absolute value at most ``|delta_i|``.  Every
    coordinate shrinks towards 0, and both ``||.||_inf`` and ``||.||_2`` are monotone in
    the coordinate magnitudes, so neither norm can grow.
    """
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        norms = _per_sample_l2(delta)
        # norms > eps >= 0 guards the division (no 0/0 when eps == 0 and delta == 0)
        scale = torch.where(norms > eps, eps / norms.clamp_min(_TINY), torch.ones_like(norms))
        delta = delta * scale
    return (x_start + delta).clamp(-1.0, 1.0) - x_start
