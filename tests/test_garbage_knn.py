"""``GarbageKNN``: the garbage output's and the KNN distance's ID quantiles, summed."""
import pytest
import torch
from pytorch_ood.api import ModelNotSetException, RequiresFittingException
from torch import nn

from niood_plugin.errors import InvalidArgumentError, InvalidTypeError
from niood_plugin.garbage_knn import GarbageKNN


class Toy(nn.Module):
    """features = the input; head: K = 3 ID logits and a garbage logit that is the input's last coordinate."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.d = d

    def features(self, x):
        return x

    def head(self, f):
        return torch.cat([f[:, :3] * 4, f[:, -1:] * 4], 1)

    def forward(self, x):
        return self.head(self.features(x))


def _id(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.zeros(n, 8)
    z[torch.arange(n), torch.arange(n) % 3] = 1.0  # one of three directions
    return z + 0.05 * torch.randn(n, 8, generator=g)


def test_scores_are_id_quantiles_and_each_term_moves_them():
    det = GarbageKNN(Toy(), garbage_index=3, k=5)
    z = _id(300)
    assert det.fit_features(z, torch.arange(300) % 3) is det
    inside = det.predict_features(_id(60, seed=1))
    assert inside.shape == (60,) and inside.min() >= 0 and inside.max() <= 2
    assert 0.5 < inside.mean() < 1.5  # ID test points sit in the middle of the ID quantiles
    far = torch.zeros(20, 8)
    far[:, 5] = 1.0  # a direction no ID feature has, garbage logit 0
    garbage = _id(20, seed=2)
    garbage[:, -1] = 3.0  # ID direction, but a high garbage logit
    s_far, s_garbage = det.predict_features(far), det.predict_features(garbage)
    assert (s_far > inside.max()).all() and (s_garbage > inside.max()).all()
    assert torch.allclose(det.predict(far), s_far)


def test_it_needs_a_fit_a_model_and_a_valid_garbage_index():
    with pytest.raises(RequiresFittingException):
        GarbageKNN(Toy(), 3).predict_features(_id(4))
    with pytest.raises(ModelNotSetException):
        GarbageKNN(None, 3, k=2).fit_features(_id(10), torch.zeros(10, dtype=torch.long))
    with pytest.raises(InvalidArgumentError):
        GarbageKNN(Toy(), -1)
    with pytest.raises(InvalidTypeError):
        GarbageKNN(Toy(), 3.0)
    with pytest.raises(InvalidArgumentError):
        GarbageKNN(Toy(), 3, k=0)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        GarbageKNN(Toy(), 9, k=2).fit_features(_id(10), torch.zeros(10, dtype=torch.long))
