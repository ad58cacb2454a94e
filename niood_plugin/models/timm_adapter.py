"""Wrap any timm model so it follows the :mod:`~niood_plugin.models.protocol`."""
from __future__ import annotations

from torch import Tensor, nn
from ..errors import InvalidTypeError


class TimmClassifier(nn.Module):
    """A timm model seen through ``features`` (pooled pre-logits) and ``head`` (its classifier).

    ``features(x) = model.forward_head(model.forward_features(x), pre_logits=True)`` and
    ``head(f) = model.get_classifier()(f)``, so ``forward(x)`` equals timm's own forward.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        for attr in ("forward_features", "forward_head", "get_classifier"):
            if not hasattr(model, attr):
                raise InvalidTypeError(f"{type(model).__name__} is not a timm model: it lacks {attr}()")
        self.model = model
        self.num_features = int(getattr(model, "num_features", 0))

    @classmethod
    def create(cls, name: str, num_outputs: int, in_channels: int, pretrained: bool = False,
               **kwargs) -> "TimmClassifier":
        """``timm.create_model(name, num_classes=num_outputs, in_chans=in_channels, ...)``."""
        timm = _timm()
        return cls(timm.create_model(name, pretrained=pretrained, num_classes=num_outputs,
                                     in_chans=in_channels, **kwargs))

    def features(self, x: Tensor) -> Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def head(self, f: Tensor) -> Tensor:
        return self.model.get_classifier()(f)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _timm():
    try:
        import timm
    except ImportError:  # pragma: no cover
        raise ImportError("timm models need timm: pip install 'niood-plugin[bench]' (or pip install timm)") from None
    return timm
