"""LogitNorm: cross-entropy on L2-normalised logits (a training baseline without outliers).

Wei, Xie, Cheng, Feng, An and Li, *Mitigating Neural Network Overconfidence with Logit
Normalization* (ICML 2022, arXiv:2205.09310, code: https://github.com/hongxin001/logitnorm_ood).

The loss is pytorch-ood's :class:`~pytorch_ood.loss.LogitNorm`:

.. math:: \\mathcal L(x, y) = -\\log \\frac{\\exp(f_y(x) / (\\tau \\lVert f(x) \\rVert_2))}
          {\\sum_k \\exp(f_k(x) / (\\tau \\lVert f(x) \\rVert_2))}

so the norm of the logits can no longer grow to buy confidence; only their direction is learnt.
The model is scored afterwards by any post-hoc detector (the paper reports max-softmax).
:class:`LogitNormObjective` plugs the loss into :func:`niood_plugin.training.train_plain`, so the
method trains exactly like the ``standard`` baseline (architecture, optimiser, schedule, epochs,
augmentation) with the loss swapped.
"""
from __future__ import annotations

from typing import Any

from pytorch_ood.loss import LogitNorm
from torch import Tensor, nn

from ..validation import Interval, validate_params

__all__ = ["LogitNormObjective"]


class LogitNormObjective:
    """``objective(model, x, y, epoch) -> (loss, logits)`` with the LogitNorm loss.

    :param t: temperature :math:`\\tau`; 0.04 is the paper's value for CIFAR-10 (section 5,
        also OpenOOD's), used here for every ID set since the paper gives no other default
        (pytorch-ood's own default, 1.0, barely changes cross-entropy's optimum)
    """

    _parameter_constraints: dict = {"t": [Interval(float, 0, None, closed="neither")]}

    def __init__(self, t: float = 0.04):
        self.t = t
        validate_params({"t": t}, self._parameter_constraints, type(self).__name__)
        self.loss = LogitNorm(t=t)

    def get_params(self) -> dict[str, Any]:
        return {"t": self.t}

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, epoch: int) -> tuple[Tensor, Tensor]:
        logits = model(x)
        return self.loss(logits, y), logits
