"""The BAL detector: maximum softmax times the conditional discriminator's ID probability."""
from __future__ import annotations

from typing import Optional

import torch
from pytorch_ood.api import DetectorInfo, FeaturesDetector, ModelNotSetException, Paper, Task
from torch import Tensor, nn

__all__ = ["BALDetector"]


class BALDetector(FeaturesDetector):
    """
    Boundary aware learning (BAL) detector, from *Out-of-distribution Detection with Boundary
    Aware Learning* (Pei et al., ECCV 2022, arXiv:2112.11648).

    With :math:`f = h(x)` the penultimate features,
    :math:`p = \\mathrm{softmax}(\\mathrm{head}(f))`, :math:`\\hat c = \\arg\\max_y p_y` and
    :math:`D` the conditional discriminator trained by :class:`~niood_plugin.peers.BALTrainer`,
    the outlier score is

    .. math:: -\\max_y p_y \\cdot D(f; \\hat c)

    i.e. the negated ID confidence :math:`p_1 p_2` of Algorithm 1 (the approximate posterior
    of eq. 2), so that larger values indicate outliers.  Models are called as they are; the
    trainer leaves the classifier and the discriminator in eval mode.  Nothing is fitted here
    (``fit`` returns the detector unchanged): train the discriminator with ``BALTrainer``.
    """

    info = DetectorInfo(
        paper=Paper(
            title="Out-of-distribution Detection with Boundary Aware Learning",
            venue="ECCV",
            year=2022,
            url="https://arxiv.org/abs/2112.11648",
            code="https://github.com/ForeverPs/BAL",
        ),
        tasks={Task.CLASSIFICATION},
        ai_coded=True,
    )

    def __init__(self, classifier: Optional[nn.Module], discriminator: Optional[nn.Module]):
        """
        :param classifier: frozen K-way classifier with ``features(x) -> [B, D]`` and
            ``head(f) -> [B, K]``. Can be ``None`` only if nothing is predicted.
        :param discriminator: conditional discriminator returning ID *logits* for ``(f, c)``
            (e.g. :class:`~niood_plugin.peers.FeatureDiscriminator`)
        """
        super().__init__()
        self.classifier = classifier
        self.discriminator = discriminator

    def _require(self, *, features_only: bool) -> None:
        if self.classifier is None:
            raise ModelNotSetException("BALDetector needs a classifier (got None)")
        if self.discriminator is None:
            raise ModelNotSetException("BALDetector needs a trained discriminator (got None)")
        needed = ("head",) if features_only else ("features", "head")
        missing = [m for m in needed if not callable(getattr(self.classifier, m, None))]
        if missing:
            raise ModelNotSetException(
                f"classifier {type(self.classifier).__name__} lacks {', '.join(missing)}()"
            )

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """
        :param x: inputs, passed through ``classifier.features``
        :return: outlier scores of shape :math:`B`
        :raises ModelNotSetException: if the classifier or the discriminator is missing
        """
        self._require(features_only=False)
        device = self.device
        if device is not None:
            x = x.to(device)
        return self.predict_features(self.classifier.features(x))

    @torch.no_grad()
    def predict_features(self, x: Tensor) -> Tensor:
        """
        :param x: penultimate features of shape :math:`B \\times D`
        :return: outlier scores of shape :math:`B`
        :raises ModelNotSetException: if the classifier or the discriminator is missing
        """
        self._require(features_only=True)
        f = x.flatten(1)
        logits = self.classifier.head(f)
        id_prob = torch.sigmoid(self.discriminator(f, logits.argmax(dim=1)))
        return BALDetector.score(logits, id_prob)

    @staticmethod
    def score(logits: Tensor, id_prob: Tensor) -> Tensor:
        """
        Negated BAL confidence.

        :param logits: classifier logits of shape :math:`B \\times K`
        :param id_prob: discriminator ID probabilities :math:`D(f; \\hat c)` of shape :math:`B`
        :return: :math:`-\\max_y \\mathrm{softmax}(\\text{logits})_y \\cdot` ``id_prob``, shape :math:`B`
        """
        return -logits.softmax(dim=1).max(dim=1).values * id_prob
