"""BAL's objectives from discriminator logits: :math:`L_d` (eq. 8-11) and :math:`L_g` (eq. 12)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bal_discriminator_loss", "bal_generator_loss"]


def _pos(logit: Tensor) -> Tensor:  # -log D
    return F.softplus(-logit).mean()


def _neg(logit: Tensor) -> Tensor:  # -log(1 - D)
    return F.softplus(logit).mean()


def bal_discriminator_loss(
    d_id: Tensor,
    d_shuffled: Tensor,
    d_uniform: Tensor,
    d_fake: Tensor,
    d_hard: Optional[Tensor] = None,
    *,
    lambda_c: float = 0.7,
) -> dict[str, Tensor]:
    """:math:`L_d = L_t + L_s + L_u` (eq. 8-11) from discriminator *logits*.

    .. math::
        L_t &= -\\log D(f;c) - \\log(1 - D(G(z;c);c)) \\\\
        L_s &= -\\log(1 - D(f;T(c))) - \\log D(f;c) \\\\
        L_u &= -\\lambda_c \\log(1 - D(\\hat f;\\hat c)) - \\log(1 - D(G(\\tilde z;c);c)) - \\log D(f;c)

    (each a batch mean).  The paper writes the negatives of :math:`L_s, L_u` as
    :math:`+\\log D`; the bounded BCE form used here has the same optimum.

    :return: dict with ``loss``, ``l_t``, ``l_s``, ``l_u``
    """
    pos = _pos(d_id)
    l_t = pos + _neg(d_fake)
    l_s = _neg(d_shuffled) + pos
    l_u = lambda_c * _neg(d_uniform) + pos
    if d_hard is not None and d_hard.numel():
        l_u = l_u + _neg(d_hard)
    return {"loss": l_t + l_s + l_u, "l_t": l_t, "l_s": l_s, "l_u": l_u}


def bal_generator_loss(
    d_gen: Tensor,
    f_gen: Tensor,
    c_gen: Tensor,
    f_id: Tensor,
    c_id: Tensor,
    *,
    lambda_g: float = 0.01,
    non_saturating: bool = False,
) -> dict[str, Tensor]:
    """:math:`L_g` of eq. 12 from discriminator logits ``d_gen`` on the generated ``f_gen``.

    .. math:: L_g = \\log(1 - D(G(z;c);c)) + \\lambda \\min_{f_c \\in \\mathcal M_c} \\|f_c - G(z;c)\\|_1

    :math:`\\mathcal M_c` is the set of ID features of class :math:`c` in ``f_id``; rows whose
    class is absent get no L1 term.

    :return: dict with ``loss``, ``adv``, ``l1`` (mean min-L1 distance, unweighted)
    """
    adv = _pos(d_gen) if non_saturating else -F.softplus(d_gen).mean()  # log(1 - sigmoid(l)) = -softplus(l)
    dist = torch.cdist(f_gen, f_id, p=1)  # [M, B]
    same = c_gen[:, None] == c_id[None, :]
    dist = dist.masked_fill(~same, float("inf"))
    nearest = dist.min(dim=1).values
    valid = torch.isfinite(nearest)
    l1 = nearest[valid].mean() if valid.any() else f_gen.new_zeros(())
    return {"loss": adv + lambda_g * l1, "adv": adv, "l1": l1}
