"""Scores and OOD metrics: data -> representations -> detector scores -> metrics.

Features and logits of each dataset are computed once per model; every logits or
features detector reuses them.  Only input-space detectors (ODIN, BAL) run the model again.
Metrics are pytorch-ood's :class:`~pytorch_ood.metrics.OODMetrics` (OOD = positive class).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pytorch_ood.metrics import OODMetrics
from torch import Tensor

from ..data import TensorData
from ..scores import id_logits
from .detectors import ScoringDetector
from .methods import TrainedModel


@dataclass
class Representation:
    features: Tensor
    logits: Tensor      # all outputs of the model


@torch.inference_mode()
def represent(tm: TrainedModel, data: TensorData, batch_size: int, device: torch.device) -> Representation:
    tm.model.eval()
    feats, logits = [], []
    for x, _ in data.loader(batch_size=batch_size):
        f = tm.model.features(x.to(device))
        feats.append(f.float().cpu())
        logits.append(tm.model.head(f).float().cpu())
    return Representation(torch.cat(feats), torch.cat(logits))


def score(sd: ScoringDetector, tm: TrainedModel, data: TensorData, rep: Representation, batch_size: int,
          device: torch.device) -> np.ndarray:
    """Outlier scores (higher = more OOD) of ``sd`` on ``data``."""
    det = sd.detector
    if sd.feed == "full-logits":
        s = det.predict_logits(rep.logits)
    elif sd.feed == "id-logits":
        s = det.predict_logits(id_logits(rep.logits, tm.garbage_index))
    elif sd.feed == "features":
        s = det.predict_features(rep.features.to(device))
    else:
        tm.model.eval()
        parts = [det.predict(x.to(device)).detach().cpu() for x, _ in data.loader(batch_size=batch_size)]
        s = torch.cat(parts)
    return s.detach().float().cpu().numpy()


def ood_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    """AUROC, AUPR-IN/OUT, FPR@95TPR and score statistics; OOD is the positive class."""
    m = OODMetrics()
    scores = torch.from_numpy(np.concatenate([id_scores, ood_scores]))
    labels = torch.cat([torch.zeros(len(id_scores), dtype=torch.long), -torch.ones(len(ood_scores), dtype=torch.long)])
    r = m.update(scores, labels).compute()
    out = {"auroc": float(r["AUROC"]), "aupr_in": float(r["AUPR-IN"]), "aupr_out": float(r["AUPR-OUT"]),
           "fpr95": float(r["FPR95TPR"])}
    for prefix, s in (("id", id_scores), ("ood", ood_scores)):
        out.update({f"{prefix}_score_mean": float(s.mean()), f"{prefix}_score_std": float(s.std()),
                    f"{prefix}_score_min": float(s.min()), f"{prefix}_score_max": float(s.max())})
    out["separation"] = out["ood_score_mean"] - out["id_score_mean"]
    return out
