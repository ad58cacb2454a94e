"""FIG's sampler: sign-gradient Langevin dynamics on the classifier's modified energy
(eq. 17-18, Algorithm 1 of FIG)."""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ...devices import module_device
from ...validation import InstanceOf, Interval, validate_params
from ...validation import SequenceOf
from .objectives import modified_energy
from ...errors import InvalidArgumentError

__all__ = ["langevin_sample"]

#: ``(C, H, W)`` of one input: positive ints.
IMAGE_SHAPE = SequenceOf(Interval(int, 1, None), min_length=1, what="sizes")
#: The step-size decay rate gamma.
DECAY = Interval(float, 0, 1, closed="right")
_POSITIVE = Interval(float, 0, None, closed="neither")
_NON_NEGATIVE = Interval(float, 0, None, closed="left")

_SAMPLER_CONSTRAINTS: dict = {
    "classifier": [InstanceOf(nn.Module, "a torch.nn.Module")],
    "n": [Interval(int, 1, None)],
    "image_shape": [IMAGE_SHAPE],
    "c": [_POSITIVE],
    "eps0": [_POSITIVE],
    "decay": [DECAY],
    "decay_every": [Interval(int, 1, None)],
    "tol": [_NON_NEGATIVE],
    "window": [Interval(int, 1, None)],
    "noise_std": [_NON_NEGATIVE, None],
    "steps": [Interval(int, 0, None), None],
    "min_steps": [Interval(int, 0, None)],
    "max_steps": [Interval(int, 0, None)],
}


def _device_of(module: nn.Module) -> torch.device:
    return module_device(module) or torch.device("cpu")


def langevin_sample(
    classifier: nn.Module,
    n: int,
    image_shape: Sequence[int],
    *,
    c: float = 5.0,
    steps: Optional[int] = None,
    eps0: float = 0.1,
    decay: float = 0.9,
    decay_every: int = 100,
    noise_std: Optional[float] = None,
    min_steps: int = 10,
    max_steps: int = 100,
    tol: float = 0.01,
    window: int = 5,
    generator: Optional[torch.Generator] = None,
    device: Union[str, torch.device, None] = None,
    return_info: bool = False,
) -> Union[Tensor, tuple[Tensor, dict]]:
    """Draw ``n`` samples from the classifier's implicit generator (Algorithm 1 of FIG).

    Starts from :math:`\\mathcal U(-1, 1)` and takes sign-gradient Langevin steps that *descend*
    the modified energy :func:`~niood_plugin.peers.modified_energy` (eq. 18), clipping to
    ``[-1, 1]`` after every step.  The whole batch is updated at once; the classifier is put in
    eval mode for sampling (and restored afterwards), and only the gradient with respect to the
    samples is computed, so no ``.grad`` of the classifier's parameters is touched.

    :param classifier: maps ``[n, *image_shape]`` to logits ``[n, K]``
    :param n: number of samples
    :param image_shape: ``(C, H, W)`` of one input
    :param c: energy scale of eq. 16
    :param steps: if given, take exactly this many steps (no early stop), e.g. for visualisation
    :param eps0: initial step size :math:`\\epsilon_0`
    :param decay: decay rate :math:`\\gamma`
    :param decay_every: decay period :math:`L` (in steps)
    :param noise_std: standard deviation of the injected Gaussian noise; ``None`` (default)
        uses the paper's :math:`\\sqrt{\\epsilon_t}`, ``0`` disables the noise
    :param min_steps: fewest steps before early stopping is allowed
    :param max_steps: most steps
    :param tol: stop once the batch-mean max-softmax confidence changed by less than this
        over the last ``window`` steps
    :param window: number of steps over which the change in confidence is measured
    :param generator: random source for the start points and the noise
    :param device: where to sample; default: the classifier's device
    :param return_info: also return ``{"steps", "confidence", "energy"}`` (plain Python numbers)
    :return: samples ``[n, *image_shape]`` in ``[-1, 1]`` (detached), optionally with the info dict
    """
    if steps is not None:
        min_steps = max_steps = steps
    validate_params(dict(classifier=classifier, n=n, image_shape=image_shape, c=c, eps0=eps0, decay=decay,
                         decay_every=decay_every, tol=tol, window=window, noise_std=noise_std, steps=steps,
                         min_steps=min_steps, max_steps=max_steps), _SAMPLER_CONSTRAINTS, "langevin_sample")
    if min_steps > max_steps:
        raise InvalidArgumentError(f"min_steps ({min_steps}) must be <= max_steps ({max_steps})")
    return _langevin(classifier, n, tuple(int(s) for s in image_shape), c=c, eps0=eps0, decay=decay,
                     decay_every=decay_every, noise_std=noise_std, min_steps=min_steps, max_steps=max_steps,
                     tol=tol, window=window, generator=generator, device=device, return_info=return_info)


def _langevin(classifier: nn.Module, n: int, shape: tuple[int, ...], *, c: float, eps0: float, decay: float,
              decay_every: int, noise_std: Optional[float], min_steps: int, max_steps: int, tol: float,
              window: int, generator: Optional[torch.Generator], device: Union[str, torch.device, None],
              return_info: bool) -> Union[Tensor, tuple[Tensor, dict]]:
    """:func:`langevin_sample` without the argument checks (for callers that checked them once)."""
    device = torch.device(device) if device is not None else _device_of(classifier)
    rand_device = generator.device if generator is not None else device

    def _noise(size: tuple[int, ...]) -> Tensor:
        return torch.randn(size, generator=generator, device=rand_device).to(device)

    was_training = classifier.training
    classifier.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            x = (torch.rand((n, *shape), generator=generator, device=rand_device) * 2 - 1).to(device)
            confs: list[float] = []  # batch-mean confidence after 0, 1, ..., t steps
            t = 0
            while True:
                x.requires_grad_(True)
                logits = classifier(x)
                conf = logits.detach().softmax(dim=1).max(dim=1).values.mean().item()
                confs.append(conf)
                if t >= max_steps or (
                    t >= max(min_steps, window) and abs(conf - confs[t - window]) < tol
                ):
                    break
                energy = modified_energy(logits, c).sum()
                (grad,) = torch.autograd.grad(energy, x)
                eps_t = eps0 * decay ** (t // decay_every)
                std = math.sqrt(eps_t) if noise_std is None else noise_std
                step = x.detach() - 0.5 * eps_t * grad.sign()
                if std > 0:
                    step = step + std * _noise(step.shape)
                x = step.clamp_(-1.0, 1.0)
                t += 1
            energy_mean = modified_energy(logits.detach(), c).mean().item()
    finally:
        classifier.train(was_training)

    x = x.detach()
    if return_info:
        return x, {"steps": t, "confidence": conf, "energy": energy_mean}
    return x
