"""BAL's out-of-distribution pairs for the discriminator: trivial OOD features (eq. 4-5),
shuffled labels :math:`T(c)` (eq. 8) and hard OOD latents by an FGSM step (eq. 6-7)."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor, nn

from ...validation import Interval, check_param
from ...errors import InvalidArgumentError

__all__ = ["uniform_ood_features", "shuffle_labels", "fgsm_latent"]


def uniform_ood_features(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    generator: Optional[torch.Generator] = None,
    margin: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Trivial OOD pairs (eq. 4-5): features uniform in the batch's bounding box, random labels.

    The box is :math:`[a, b]` with :math:`a_j = \\min_i f_i^{(j)}` and
    :math:`b_j = \\max_i f_i^{(j)}` over the batch, widened by ``margin`` times its width
    :math:`b_j - a_j` on each side (``margin=0``: the box of eq. 4-5).

    :param features: ``[B, D]`` ID features of one batch
    :param labels: ``[B]`` their labels (only checked; the OOD labels are drawn uniformly)
    :param num_classes: K
    :param generator: random source (on CPU or on the features' device)
    :param margin: non-negative widening of the box, in units of its per-dimension width
    :return: ``(f_hat [B, D], c_hat [B])``
    """
    if features.dim() != 2 or features.shape[0] == 0:
        raise InvalidArgumentError(f"features must be a non-empty [B, D] tensor, got shape {tuple(features.shape)}")
    if labels.shape[0] != features.shape[0]:
        raise InvalidArgumentError(f"labels has {labels.shape[0]} entries for {features.shape[0]} features")
    check_param("num_classes", num_classes, [Interval(int, 2, None)])
    check_param("margin", margin, [Interval(float, 0, None, closed="left")])
    lo = features.min(dim=0).values
    hi = features.max(dim=0).values
    if margin:
        width = hi - lo
        lo, hi = lo - margin * width, hi + margin * width
    rand_device = generator.device if generator is not None else features.device
    u = torch.rand(features.shape, generator=generator, device=rand_device, dtype=features.dtype)
    c = torch.randint(0, num_classes, (features.shape[0],), generator=generator, device=rand_device)
    f_hat = lo + (hi - lo) * u.to(features.device)
    return f_hat, c.to(labels.device)


def shuffle_labels(labels: Tensor, num_classes: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """:math:`T(c)`: a label that always differs from ``labels`` (uniform over the other K-1)."""
    rand_device = generator.device if generator is not None else labels.device
    offset = torch.randint(1, num_classes, labels.shape, generator=generator, device=rand_device)
    return (labels + offset.to(labels.device)) % num_classes


def fgsm_latent(
    generator: nn.Module,
    discriminator: nn.Module,
    z: Tensor,
    c: Tensor,
    eps: Union[float, Tensor],
) -> Tensor:
    """Hard OOD latents (eq. 6-7): :math:`\\tilde z = z - \\epsilon\\,\\mathrm{sign}(\\partial D(G(z;c);c)/\\partial z)`.

    Only the gradient with respect to ``z`` is computed (network ``.grad`` are not touched).
    The sign of the logit gradient equals that of the probability gradient and does not vanish
    when the sigmoid saturates.

    :param eps: scalar or per-sample ``[B]`` step sizes (non-negative steps lower D)
    :return: ``z_tilde`` (detached)
    """
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(discriminator(generator(z, c), c).sum(), z)
    eps = torch.as_tensor(eps, dtype=z.dtype, device=z.device)
    if eps.dim() == 1:
        eps = eps[:, None]
    return (z - eps * grad.sign()).detach()
