"""The detectors the harness scores a trained model with, all from pytorch-ood but UE.

On a garbage-class model (K+1 outputs) the post-hoc detectors (MSP, ODIN, Energy,
MaxLogit, Entropy, ViM) see the K in-distribution logits only, as the report did
("garbage class excluded", :class:`~niood_plugin.models.DropOutput`).  ``ue`` uses the
garbage output as :class:`~niood_plugin.UEDetector` ``variant`` says, ``ue-id`` is the
report's garbage-excluded UE, and ``garbage`` the garbage probability alone.  Feature
detectors (Mahalanobis, KNN, ViM) are fitted on ID training features only.
Hyperparameters are pytorch-ood's defaults; none is tuned on OOD data.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

from pytorch_ood.api import Detector
from pytorch_ood.detector import KNN, ODIN, EnergyBased, Entropy, Mahalanobis, MaxLogit, MaxSoftmax, ViM
from torch import Tensor

from ..detector import UEDetector
from ..models import DropOutput, last_linear
from .config import ALL_DETECTORS
from .methods import TrainedModel
from ..errors import InvalidArgumentError

log = logging.getLogger(__name__)


@dataclass
class ScoringDetector:
    """A built detector and how to feed it: ``logits`` (K+1 or K), ``features`` or raw ``inputs``."""

    name: str
    detector: Detector
    feed: str            # "full-logits" | "id-logits" | "features" | "inputs"
    scored_on: str       # for the results: what the score was computed from


def _post_hoc_model(tm: TrainedModel):
    return DropOutput(tm.model, tm.garbage_index) if tm.garbage_index is not None else tm.model


def _id_logits_label(tm: TrainedModel) -> str:
    return "K logits (garbage excluded)" if tm.garbage_index is not None else "K logits"


#: Detectors that only some methods' models have (what :func:`applicable` checks on a model,
#: by method name, so a run can be refused before anything is trained).
NEEDS_METHOD = {"ue-id": ("inversion",), "garbage": ("inversion",), "bal": ("bal",)}


def applicable(name: str, tm: TrainedModel) -> bool:
    """``ue-id`` and ``garbage`` need a garbage class; ``bal`` needs BAL's discriminator."""
    if name in ("ue-id", "garbage"):
        return tm.garbage_index is not None
    if name == "bal":
        return "discriminator" in tm.extra
    return True


def build(name: str, tm: TrainedModel, ue_variant: str, fit: Optional[tuple[Tensor, Tensor]]) -> ScoringDetector:
    """Detector ``name`` for ``tm``; ``fit`` = (ID train features, labels) for feature detectors."""
    post = _post_hoc_model(tm)
    gi = tm.garbage_index
    label = _id_logits_label(tm)
    if name == "ue":
        variant = ue_variant if gi is not None else "combined"
        on = f"K+1 logits (UE variant '{variant}')" if gi is not None else "K logits"
        return ScoringDetector(name, UEDetector(tm.model, gi, variant), "full-logits", on)
    if name == "ue-id":
        return ScoringDetector(name, UEDetector(tm.model, gi, "id"), "full-logits", "K logits (garbage excluded)")
    if name == "garbage":
        return ScoringDetector(name, UEDetector(tm.model, gi, "garbage"), "full-logits", "garbage probability")
    simple: dict[str, Callable] = {"msp": MaxSoftmax, "energy": EnergyBased, "maxlogit": MaxLogit,
                                   "entropy": Entropy}
    if name in simple:
        return ScoringDetector(name, simple[name](post), "id-logits", label)
    if name == "odin":
        return ScoringDetector(name, ODIN(post), "inputs", label + ", input perturbation")
    if name == "bal":
        from ..peers import BALDetector

        return ScoringDetector(name, BALDetector(tm.model, tm.extra["discriminator"]), "inputs",
                               "BAL: MSP x discriminator")
    if fit is None:
        raise InvalidArgumentError(f"detector {name!r} needs ID training features to fit on")
    z, y = fit
    if name == "mahalanobis":
        det = Mahalanobis(post.features).fit_features(z, y)
    elif name == "knn":
        det = KNN(post.features).fit_features(z, y)
    elif name == "vim":
        w, b = last_linear(post)
        d = max(1, min(z.shape[1] - 1, z.shape[1] // 2))
        det = ViM(post.features, d=d, w=w, b=b).fit_features(z, y)
    else:
        raise InvalidArgumentError(f"unknown detector {name!r}; choose from {list(ALL_DETECTORS) + ['bal']}")
    return ScoringDetector(name, det, "features", "penultimate features")
