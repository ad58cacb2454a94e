import math

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from niood_plugin.losses import (InversionLossWeights, ce_loss, cosine_loss,
                                 inversion_loss, kl_loss, novelty_loss, orthogonality_loss)


def test_kl_known_value():
    target = torch.tensor([[0.5, 0.5]])
    logits = torch.log(torch.tensor([[0.25, 0.75]]))
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)
    assert kl_loss(torch.log(target), target).item() == pytest.approx(0.0, abs=1e-7)


def test_ce_known_value():
    logits = torch.log(torch.tensor([[0.2, 0.8], [0.6, 0.4]]))
    assert ce_loss(logits, torch.tensor([1, 0])).item() == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)


def test_cosine_orthogonal_identical_and_labels():
    eye = torch.eye(4)
    assert cosine_loss(eye).item() == pytest.approx(0.0, abs=1e-7)
    same = torch.ones(3, 5)
    assert cosine_loss(same).item() == pytest.approx(1.0, abs=1e-6)
    # pairs (0,1) identical, (2,3) opposite, cross pairs orthogonal
    f = torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0], [0, -1.0]])
    assert cosine_loss(f, torch.tensor([0, 0, 1, 1])).item() == pytest.approx(0.0, abs=1e-6)  # (1 + 1 - 1 - 1) / 4
    assert cosine_loss(f).item() == pytest.approx((2 * 1 + 2 * -1) / 12, abs=1e-6)
    assert cosine_loss(f[:2], torch.tensor([0, 1])).item() == 0.0  # no same-label pairs


def test_orthogonality_known_values():
    assert orthogonality_loss(torch.eye(3)).item() == pytest.approx(0.0, abs=1e-7)
    # N identical rows: G = 1 everywhere, off-diagonal (N^2 - N) ones -> (N^2 - N) / N^2
    assert orthogonality_loss(torch.ones(4, 2)).item() == pytest.approx(12 / 16, abs=1e-6)


def test_novelty_known_values():
    means = torch.eye(3)[:2]  # class 0 along e0, class 1 along e1 (unit rows)
    f = torch.tensor([[2.0, 0, 0], [0, 0, 5.0], [1.0, 1.0, 0], [7.0, 7.0, 7.0]])
    # label 2 is a garbage output (>= K = 2): the last row does not count
    got = novelty_loss(f, torch.tensor([0, 1, 1, 2]), means)
    assert got.item() == pytest.approx((1.0 + 0.0 + 2 ** -0.5) / 3, abs=1e-6)
    assert novelty_loss(f[3:], torch.tensor([2]), means).item() == 0.0  # only garbage labels


def test_inversion_loss_combines_terms():
    torch.manual_seed(0)
    logits, feats = torch.randn(6, 3), torch.randn(6, 5)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    target = torch.softmax(torch.randn(6, 3), 1)
    w = InversionLossWeights(alpha=0.5, beta=2.0, gamma=3.0, delta=4.0)
    total, parts = inversion_loss(logits, feats, labels, target, w)
    expected = (0.5 * kl_loss(logits, target) + 2 * ce_loss(logits, labels) + 3 * cosine_loss(feats, labels)
                + 4 * orthogonality_loss(feats))
    assert total.item() == pytest.approx(expected.item(), abs=1e-6)
    assert set(parts) == {"kl", "ce", "cosine", "ortho"}
    _, only_ce = inversion_loss(logits, feats, labels, target, InversionLossWeights())
    assert set(only_ce) == {"ce"}


@pytest.mark.parametrize("kwargs", [dict(alpha=-1.0), dict(gamma=float("nan")), dict(beta=0.0)])
def test_bad_weights(kwargs):
    with pytest.raises(ValueError):
        InversionLossWeights(**kwargs)


def test_class_weights_are_sklearns_balanced_weights():
    from sklearn.utils.class_weight import compute_class_weight

    from niood_plugin.training import class_weights

    counts = torch.tensor([5, 1, 30, 7])
    y = np.repeat(np.arange(4), counts.numpy())
    expected = compute_class_weight("balanced", classes=np.arange(4), y=y)
    assert np.allclose(class_weights(counts).numpy(), expected)
    assert class_weights(torch.tensor([3, 0, 3])).tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="every class count is 0"):
        class_weights(torch.tensor([0, 0]))
