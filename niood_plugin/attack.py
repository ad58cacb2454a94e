"""OOD attack on a feature encoder (Algorithm 1 of "An algorithm for out-of-distribution
attack to neural network encoder") and an adaptive attack on an OOD score.

**Feature-matching attack.**  Given an in-distribution image ``x_in``, a start image
``x'_out`` that is clearly OOD and an encoder ``f``, look for ``x_out`` close to ``x'_out``
whose features equal those of ``x_in``::

    minimise   J(x_out) = ||f(x_out) - f(x_in)||_2^2          (sum over feature dims)
    subject to ||x_out - x'_out||_p <= eps,   x_out in [-1, 1]^n,   p in {2, inf}

Projected gradient descent on the perturbation ``delta = x_out - x'_out``:

1. ``delta_0 ~ ball_p(eps)`` (random start; ``delta_0 = 0`` without ``random_init``);
2. for ``t = 1..N``: ``g = h(dJ/d delta)``, one ``torch.optim.Adamax`` step with gradient
   ``g`` and learning rate ``alpha``, then ``delta <- Proj_p(delta)`` and
   ``delta <- clamp(x'_out + delta, -1, 1) - x'_out``.

``h`` is the sign function for ``p = inf`` and ``g / ||g||_2`` (per sample) for ``p = 2``.

**Adaptive attack.**  Same budget and loop, but the loss is a differentiable OOD score
``s(x) -> [B]`` (higher = more OOD), minimised directly: ``min_{x_out} s(x_out)``.
:func:`ue_score_fn` and :func:`garbage_prob_score_fn` build such scores for classifiers
with a garbage class.

**Attack strength** is measured by the paper's mean absolute percentage error::

    MAPE(z_out, z_in) = mean_i |z_out,i - z_in,i| / max_i |z_in,i|

(returned as a fraction; multiply by 100 for percent).

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

import logging
import math
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "NORMS", "GarbageProbScore", "UEScore", "adaptive_attack", "garbage_prob_score_fn", "mape",
    "ood_attack", "pair_targets", "project", "run_attack", "ue_score_fn", "uncertainty_score",
]

logger = logging.getLogger(__name__)

NORMS = ("l2", "linf")
_TINY = 1e-12
_RANGE_TOL = 1e-5

LossFn = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------
def _check_budget(eps: float, norm: str, steps: int, lr: float) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")


def _check_images(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{name} must be a batch [B, C, H, W] (at least 2-D), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.numel() and (x.min() < -1 - _RANGE_TOL or x.max() > 1 + _RANGE_TOL):
        raise ValueError(
            f"{name} has values in [{float(x.min()):.4g}, {float(x.max()):.4g}]; images must lie in "
            "[-1, 1] (normalise with mean 0.5, std 0.5)"
        )


# --------------------------------------------------------------------------------------
# geometry: random start, gradient transform h, projection
# --------------------------------------------------------------------------------------
def _per_sample_l2(t: Tensor) -> Tensor:
    """``||t_b||_2`` for each sample, shaped ``[B, 1, ..., 1]`` to broadcast against ``t``."""
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.ndim - 1)))


def _random_start(x: Tensor, eps: float, norm: str, generator: torch.Generator | None) -> Tensor:
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


def _transform_grad(g: Tensor, norm: str) -> Tensor:
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


# --------------------------------------------------------------------------------------
# eval mode without parameter gradients
# --------------------------------------------------------------------------------------
def _owning_modules(*objs: object) -> list[nn.Module]:
    """The ``nn.Module``s behind callables: the module itself or a bound method's owner."""
    found: list[nn.Module] = []
    for obj in objs:
        owner = obj if isinstance(obj, nn.Module) else getattr(obj, "__self__", None)
        if isinstance(owner, nn.Module) and all(owner is not m for m in found):
            found.append(owner)
    return found


@contextmanager
def _eval_mode(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Put ``modules`` in eval mode and restore every submodule's own flag afterwards."""
    saved = [(m, m.training) for root in modules for m in root.modules()]
    try:
        for root in modules:
            root.eval()
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def _resolve_encoder(encoder: nn.Module | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``encoder.features`` for a :class:`~niood_plugin.models.FeatureClassifier`, else ``encoder``."""
    if isinstance(encoder, nn.Module) and callable(getattr(encoder, "features", None)):
        return encoder.features  # type: ignore[return-value]
    if not callable(encoder):
        raise TypeError(f"encoder must be callable (x -> features), got {type(encoder).__name__}")
    return encoder


# --------------------------------------------------------------------------------------
# the shared optimisation loop
# --------------------------------------------------------------------------------------
def _minimise(loss_fn: LossFn, x_start: Tensor, eps: float, norm: str, steps: int, lr: float,
              random_init: bool, generator: torch.Generator | None, normalize_grad: bool,
              keep_best: bool) -> Tensor:
    """Projected Adamax on ``delta`` for ``min sum_b loss_fn(x_start + delta)[b]``.

    ``loss_fn`` maps a batch ``[B, ...]`` to per-sample losses ``[B]``.  Gradients are taken
    with :func:`torch.autograd.grad` w.r.t. ``delta`` only, so no parameter ``.grad`` is
    touched.  Returns the detached ``x_out = clamp(x_start + delta, -1, 1)``.
    """
    x_start = x_start.detach().clamp(-1.0, 1.0)
    batch = x_start.shape[0]
    if batch == 0 or eps == 0:
        return x_start.clone()
    delta = _random_start(x_start, eps, norm, generator) if random_init else torch.zeros_like(x_start)
    delta = project(delta, x_start, eps, norm).requires_grad_(True)
    optimiser = torch.optim.Adamax([delta], lr=lr)
    best_loss = torch.full((batch,), math.inf, device=x_start.device, dtype=x_start.dtype)
    best_delta = delta.detach().clone()
    first_loss: float | None = None
    for step in range(steps + 1):  # the extra pass only scores the final iterate
        last = step == steps
        with torch.set_grad_enabled(not last):
            loss = loss_fn(x_start + delta)
            if loss.shape != (batch,):
                raise ValueError(
                    f"the attack loss must give one value per sample, shape ({batch},); got "
                    f"{tuple(loss.shape)} (score_fn must return a [B] tensor)"
                )
            if not last:
                grad = (torch.autograd.grad(loss.sum(), delta, allow_unused=True)[0]
                        if loss.requires_grad else None)
                if grad is None:
                    raise ValueError("the attack loss does not depend differentiably on the input "
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
            delta.grad = _transform_grad(grad, norm) if normalize_grad else grad
            optimiser.step()
            delta.copy_(project(delta, x_start, eps, norm))
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("attack (%s, eps=%g, %d steps): mean loss %.4g -> %.4g", norm, eps, steps,
                     first_loss, float(best_loss.mean()))
    return (x_start + best_delta).clamp(-1.0, 1.0).detach()


# --------------------------------------------------------------------------------------
# public attacks
# --------------------------------------------------------------------------------------
def ood_attack(encoder: nn.Module | Callable[[Tensor], Tensor], x_in: Tensor, x_start: Tensor,
               eps: float, norm: str = "l2", steps: int = 100, lr: float = 0.01,
               random_init: bool = True, generator: torch.Generator | None = None, *,
               normalize_grad: bool = True, keep_best: bool = True) -> Tensor:
    """Algorithm 1: OOD images ``x_out`` near ``x_start`` with ``f(x_out) ~= f(x_in)``.

    Minimises ``J_b = ||f(x_out,b) - f(x_in,b)||_2^2`` (features flattened after the batch
    dimension) subject to ``||x_out,b - x_start,b||_p <= eps`` and ``x_out in [-1, 1]``;
    see the module docstring for the update.  ``x_in[b]`` and ``x_start[b]`` form a pair.

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
    _check_budget(eps, norm, steps, lr)
    _check_images(x_in, "x_in")
    _check_images(x_start, "x_start")
    if x_in.shape != x_start.shape:
        raise ValueError(f"x_in and x_start must have the same shape, got {tuple(x_in.shape)} "
                         f"and {tuple(x_start.shape)}")
    if x_in.device != x_start.device:
        raise ValueError(f"x_in is on {x_in.device} but x_start on {x_start.device}")
    f = _resolve_encoder(encoder)
    with _eval_mode(_owning_modules(encoder, f)):
        with torch.no_grad():
            z_in = f(x_in).flatten(1)

        def loss_fn(x: Tensor) -> Tensor:
            return (f(x).flatten(1) - z_in).pow(2).sum(dim=1)

        return _minimise(loss_fn, x_start, eps, norm, steps, lr, random_init, generator,
                         normalize_grad, keep_best)


def adaptive_attack(score_fn: Callable[[Tensor], Tensor], x_start: Tensor, eps: float,
                    norm: str = "l2", steps: int = 100, lr: float = 0.01, random_init: bool = True,
                    generator: torch.Generator | None = None, *, normalize_grad: bool = True,
                    keep_best: bool = True) -> Tensor:
    """Minimise an OOD score directly: ``min s(x_out)`` s.t. ``||x_out - x_start||_p <= eps``.

    ``score_fn(x) -> [B]`` must be differentiable, with higher values meaning "more OOD"
    (e.g. :func:`ue_score_fn` / :func:`garbage_prob_score_fn`).  Budget, projection,
    optimiser and arguments are those of :func:`ood_attack`.  If ``score_fn`` is an
    ``nn.Module`` (the helpers here are) or a bound method of one, that module runs in eval
    mode during the attack.
    """
    _check_budget(eps, norm, steps, lr)
    _check_images(x_start, "x_start")
    if not callable(score_fn):
        raise TypeError(f"score_fn must be callable (x -> [B] scores), got {type(score_fn).__name__}")
    with _eval_mode(_owning_modules(score_fn)):
        return _minimise(score_fn, x_start, eps, norm, steps, lr, random_init, generator,
                         normalize_grad, keep_best)


# --------------------------------------------------------------------------------------
# MAPE
# --------------------------------------------------------------------------------------
def mape(z_out: Tensor, z_in: Tensor) -> Tensor:
    """Per-sample ``MAPE = mean_i |z_out,i - z_in,i| / max_i |z_in,i|``.

    Both inputs are ``[B, ...]`` (flattened after the batch dimension) and give ``[B]``;
    1-D inputs are one vector and give a 0-d tensor.  The value is a fraction (the paper's
    "0.1 %" is ``1e-3``).  An all-zero ``z_in`` gives ``inf`` (or ``nan`` for equal vectors).
    """
    if not isinstance(z_out, Tensor) or not isinstance(z_in, Tensor):
        raise ValueError("mape expects two tensors")
    if z_out.shape != z_in.shape:
        raise ValueError(f"z_out and z_in must have the same shape, got {tuple(z_out.shape)} "
                         f"and {tuple(z_in.shape)}")
    if z_in.ndim == 0:
        raise ValueError("mape needs feature vectors [B, D] or [D], got a scalar")
    single = z_in.ndim == 1
    a, b = (z_out[None], z_in[None]) if single else (z_out.flatten(1), z_in.flatten(1))
    if b.shape[1] == 0:
        raise ValueError(f"mape needs non-empty feature vectors, got shape {tuple(z_in.shape)}")
    if not b.is_floating_point():
        a, b = a.double(), b.double()
    value = (a - b).abs().mean(dim=1) / b.abs().amax(dim=1)
    return value[0] if single else value


# --------------------------------------------------------------------------------------
# differentiable OOD scores
# --------------------------------------------------------------------------------------
def _garbage_index(index: int, num_logits: int) -> int:
    if not -num_logits <= index < num_logits:
        raise ValueError(f"garbage_index {index} is out of range for {num_logits} logits")
    return index % num_logits


def uncertainty_score(logits: Tensor, garbage_index: int | None = None) -> Tensor:
    """UE score per sample from logits ``[B, M]`` (higher = more OOD).

    Without a garbage class (``K = M``), with ``p = softmax(logits)``::

        UE = K / (K - 1) * (1 - sum_k p_k^2)          (0 for one-hot, 1 for uniform p)

    With ``garbage_index = g``: ``UE_id`` is the formula above on the softmax of the
    ``K = M - 1`` in-distribution logits, ``p_g = softmax(logits)_g`` and::

        score = 1 - (1 - p_g) * (1 - UE_id)
    """
    from .detector import UEDetector  # one definition of UE for the whole library

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
        if logits.ndim != 2:
            raise ValueError(f"expected logits [B, M], got shape {tuple(logits.shape)}")
        return F.softmax(logits, dim=1)[:, _garbage_index(self.garbage_index, logits.shape[1])]


def ue_score_fn(model: nn.Module, garbage_index: int | None = None) -> UEScore:
    """Score for :func:`adaptive_attack`: the UE score of ``model``'s logits.

    See :func:`uncertainty_score` for the formula with and without a garbage class.
    """
    if not callable(model):
        raise TypeError(f"model must be callable, got {type(model).__name__}")
    if garbage_index is not None and (not isinstance(garbage_index, int) or isinstance(garbage_index, bool)):
        raise ValueError(f"garbage_index must be an int or None, got {garbage_index!r}")
    return UEScore(model, garbage_index)


def garbage_prob_score_fn(model: nn.Module, garbage_index: int) -> GarbageProbScore:
    """Score for :func:`adaptive_attack`: ``p_garbage = softmax(model(x))[garbage_index]``."""
    if not callable(model):
        raise TypeError(f"model must be callable, got {type(model).__name__}")
    if not isinstance(garbage_index, int) or isinstance(garbage_index, bool):
        raise ValueError(f"garbage_index must be an int, got {garbage_index!r}")
    return GarbageProbScore(model, garbage_index)


# --------------------------------------------------------------------------------------
# convenience for benchmarks
# --------------------------------------------------------------------------------------
def pair_targets(num_ood: int, num_id: int, seed: int = 0) -> Tensor:
    """Indices of the ID image paired with each OOD start image, ``[num_ood]`` (long, CPU).

    A random permutation of the ID indices (distinct targets) when ``num_id >= num_ood``,
    draws with replacement otherwise.  Deterministic in ``seed``; :func:`run_attack` uses it.
    """
    if num_ood < 0 or num_id <= 0:
        raise ValueError(f"need num_ood >= 0 and num_id > 0, got {num_ood} and {num_id}")
    gen = torch.Generator().manual_seed(seed)
    if num_id >= num_ood:
        return torch.randperm(num_id, generator=gen)[:num_ood]
    return torch.randint(num_id, (num_ood,), generator=gen)


def _module_device(obj: object) -> torch.device | None:
    for module in _owning_modules(obj):
        for tensor in module.parameters():
            return tensor.device
        for tensor in module.buffers():
            return tensor.device
    return None


def run_attack(encoder: nn.Module | Callable[[Tensor], Tensor], id_images: Tensor,
               ood_images: Tensor, eps: float, norm: str = "l2", steps: int = 100,
               lr: float = 0.01, batch_size: int = 256, seed: int = 0,
               score_fn: Callable[[Tensor], Tensor] | None = None, *, random_init: bool = True,
               device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Attack every OOD image towards a random ID image; return ``(x_adv, mape_values)``.

    OOD image ``j`` starts the attack and is paired with ID image
    ``pair_targets(len(ood_images), len(id_images), seed)[j]``.  Without ``score_fn`` this
    is :func:`ood_attack` (feature matching); with it, :func:`adaptive_attack` on
    ``score_fn`` (the paired ID image then only serves the MAPE).  ``mape_values[j]`` is
    ``mape(f(x_adv[j]), f(x_in[target[j]]))`` with ``f`` the encoder's features.

    Work is done in batches of ``batch_size`` on ``device`` (default: the encoder's
    parameter device, else the images' device); results come back on ``ood_images``'
    device.  The random starts use a CPU generator seeded with ``seed``, so runs are
    reproducible for a fixed ``batch_size``.
    """
    _check_budget(eps, norm, steps, lr)
    _check_images(id_images, "id_images")
    _check_images(ood_images, "ood_images")
    if id_images.shape[1:] != ood_images.shape[1:]:
        raise ValueError(f"ID and OOD images differ in shape: {tuple(id_images.shape[1:])} vs "
                         f"{tuple(ood_images.shape[1:])}")
    if len(id_images) == 0:
        raise ValueError("id_images is empty: need at least one ID target")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    f = _resolve_encoder(encoder)
    if device is None:
        device = _module_device(encoder)
        if device is None:
            device = ood_images.device
    targets = pair_targets(len(ood_images), len(id_images), seed)
    generator = torch.Generator().manual_seed(seed + 1)
    advs: list[Tensor] = []
    mapes: list[Tensor] = []
    n_batches = math.ceil(len(ood_images) / batch_size)
    with _eval_mode(_owning_modules(encoder, f, score_fn)):
        for i, lo in enumerate(range(0, len(ood_images), batch_size)):
            idx = targets[lo:lo + batch_size]
            x_in = id_images[idx.to(id_images.device)].to(device)
            x_start = ood_images[lo:lo + batch_size].to(device)
            if score_fn is None:
                x_adv = ood_attack(encoder, x_in, x_start, eps, norm, steps, lr, random_init, generator)
            else:
                x_adv = adaptive_attack(score_fn, x_start, eps, norm, steps, lr, random_init, generator)
            with torch.no_grad():
                values = mape(f(x_adv).flatten(1), f(x_in).flatten(1))
            advs.append(x_adv.to(ood_images.device))
            mapes.append(values.to(ood_images.device))
            logger.info("attack batch %d/%d: median MAPE %.4g", i + 1, n_batches, float(values.median()))
    if not advs:
        empty = ood_images.new_empty((0,))
        return ood_images.clone(), empty
    return torch.cat(advs), torch.cat(mapes)
