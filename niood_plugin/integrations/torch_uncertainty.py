"""torch-uncertainty adapter: UE as a ``TUOODCriterion``.

Needs ``pip install torch-uncertainty lightning``::

    from torch_uncertainty.routines import ClassificationRoutine
    from niood_plugin.integrations.torch_uncertainty import UECriterion

    routine = ClassificationRoutine(model, num_classes=11, eval_ood=True,
                                    ood_criterion=UECriterion(garbage_index=10))

The routine hands a logit criterion ``[batch, estimators, classes]`` logits; the estimators'
mean logits are scored (one model: one estimator).  Higher is more OOD, as torch-uncertainty
expects.  With ``num_classes=11`` the routine's accuracy counts the garbage output as a class;
its OOD figures (``ood/AUROC``, ``ood/FPR95``, ...) are UE's.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor

from .convert import REQUIRED, check_garbage_index, ensemble_logits, ue_and_prediction

try:
    from torch_uncertainty.ood_criteria import OODCriterionInputType, TUOODCriterion
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("niood_plugin.integrations.torch_uncertainty needs torch-uncertainty: pip install "
                      "torch-uncertainty lightning") from exc

__all__ = ["UECriterion"]


class UECriterion(TUOODCriterion):
    """UE of a K+1-way model's logits.

    :param garbage_index: required: the output trained as the garbage class (``K``), or
        ``None`` for a plain K-way model (plain UE)
    :param variant: :class:`~niood_plugin.UEDetector`'s variant (default ``"combined"``)
    """

    input_type = OODCriterionInputType.LOGIT

    def __init__(self, garbage_index: Any = REQUIRED, variant: str = "combined"):
        super().__init__()
        self.garbage_index, self.variant = check_garbage_index(garbage_index, variant, "UECriterion"), variant

    def forward(self, inputs: Tensor) -> Tensor:
        return ue_and_prediction(ensemble_logits(inputs), self.garbage_index, self.variant)[0]
