"""The garbage output fused with a nearest-neighbour distance in the model's own feature space."""
from __future__ import annotations

from typing import Optional

import torch
from pytorch_ood.api import DetectorInfo, FeaturesDetector, ModelNotSetException, Paper, RequiresFittingException, \
    Task
from pytorch_ood.detector import KNN
from torch import Tensor, nn

from .detector import _check_garbage_index
from .errors import InvalidArgumentError
from .models import check_feature_classifier

__all__ = ["GarbageKNN"]


class GarbageKNN(FeaturesDetector):
    """
    The garbage output of a K+1-way classifier and the KNN distance in its own feature space,
    each ranked against in-distribution data and summed, higher = more OOD:

    .. math:: s(x) = F_g\\big(g(z)\\big) + F_d\\big(d_k(z)\\big), \\qquad z = f(x)

    with :math:`g(z) = l_K - \\log\\sum_{i<K} e^{l_i}` the garbage log-odds of the logits
    :math:`l = h(z)`, :math:`d_k` the distance of :math:`z / \\lVert z \\rVert` to its
    :math:`k`-th nearest normalised ID training feature (pytorch-ood's :class:`~pytorch_ood.detector.KNN`,
    Sun et al., ICML 2022), and :math:`F_g`, :math:`F_d` the empirical distribution functions
    of the two scores on the fitted ID features (a feature's own distance counts itself as
    its nearest neighbour).  The garbage class sees what inversion and the negatives taught
    it (noise, generated and transformed images); the distance sees natural images far from
    every ID image in the features the garbage training shaped.  Each term is an ID quantile
    in [0, 1], so neither dominates by its scale; nothing is fitted on OOD data.

    :param model: a ``features`` / ``head`` classifier (:mod:`~niood_plugin.models.protocol`)
        with K + 1 outputs
    :param garbage_index: the garbage output's index, K
    :param k: the neighbour whose distance counts (pytorch-ood's default, 50)
    """

    info = DetectorInfo(
        paper=Paper(title="Out-of-Distribution Detection with Deep Nearest Neighbors", venue="ICML", year=2022,
                    url="https://proceedings.mlr.press/v162/sun22d.html"),
        tasks={Task.CLASSIFICATION},
    )
    requires_fit = True

    def __init__(self, model: Optional[nn.Module], garbage_index: int, k: int = 50):
        if model is not None:
            check_feature_classifier(model)
        _check_garbage_index(garbage_index)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidArgumentError(f"k must be a positive int, got {k!r}")
        self.model, self.garbage_index, self.k = model, garbage_index, k
        self.knn = KNN(None, k=k)
        self.garbage_cal_: Optional[Tensor] = None
        self.distance_cal_: Optional[Tensor] = None

    def predict(self, x: Tensor) -> Tensor:
        """:param x: inputs; :return: outlier scores of shape ``[B]``."""
        if self.model is None:
            raise ModelNotSetException()
        with torch.inference_mode():
            return self.predict_features(self.model.features(x))

    def fit_features(self, z: Tensor, y: Tensor) -> "GarbageKNN":
        """Fit on ID training features ``z`` ``[N, D]`` (labels ``y``, for pytorch-ood's KNN)."""
        self.knn.fit_features(z.float().cpu(), y.cpu())
        self.garbage_cal_ = torch.sort(self._garbage(z).cpu()).values
        self.distance_cal_ = torch.sort(self.knn.predict_features(z.float().cpu()).float().cpu()).values
        return self

    def predict_features(self, z: Tensor) -> Tensor:
        """:param z: features ``[B, D]``; :return: outlier scores ``[B]`` in [0, 2]."""
        if self.garbage_cal_ is None:
            raise RequiresFittingException()
        g = self._garbage(z).cpu()
        d = self.knn.predict_features(z.float().cpu()).float().cpu()
        return (_quantile(self.garbage_cal_, g) + _quantile(self.distance_cal_, d)).to(z.device)

    def _garbage(self, z: Tensor) -> Tensor:
        if self.model is None:
            raise ModelNotSetException()
        with torch.inference_mode():
            logits = self.model.head(z).float()
        n = logits.shape[1]
        if self.garbage_index >= n:
            raise InvalidArgumentError(f"garbage_index {self.garbage_index} is out of range for {n} outputs")
        rest = torch.cat([logits[:, :self.garbage_index], logits[:, self.garbage_index + 1:]], 1)
        return logits[:, self.garbage_index] - torch.logsumexp(rest, 1)


def _quantile(sorted_cal: Tensor, s: Tensor) -> Tensor:
    """The share of ``sorted_cal`` at or below each of ``s`` (the empirical distribution function)."""
    return torch.searchsorted(sorted_cal, s.to(sorted_cal.dtype), right=True).float() / len(sorted_cal)
