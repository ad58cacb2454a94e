"""Tests of the BAL peer's changes for issue 21: the chosen defaults, and the optional widened box
for trivial OOD features (``box_margin``), which lets D reject features far outside the ID
bounding box (where noise images land) -- on low-dimensional toy features."""
from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score

from niood_plugin.peers.bal import BALTrainer, uniform_ood_features

from peer_task import LinearOnIdentity

DIM, K = 16, 3


def _identity_features(centres: torch.Tensor):
    """features() is the identity on DIM-d vectors; head() a fixed linear classifier on the class centres."""
    return LinearOnIdentity(centres, -0.5 * (centres ** 2).sum(1))


def _centres() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand((K, DIM), generator=g) * 3.0  # non-negative, like post-activation features


def _clusters(n: int, centres: torch.Tensor, g: torch.Generator):
    y = torch.arange(n) % K
    return centres[y] + 0.3 * torch.randn((n, DIM), generator=g), y


class _Loader:
    def __init__(self, x, y, batch_size=128, seed=0):
        self.x, self.y, self.bs, self.g = x, y, batch_size, torch.Generator().manual_seed(seed)

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=self.g)
        for i in range(0, len(order), self.bs):
            yield self.x[order[i:i + self.bs]], self.y[order[i:i + self.bs]]


def _train(**kw) -> tuple[BALTrainer, torch.Tensor, torch.Tensor]:
    centres = _centres()
    g = torch.Generator().manual_seed(1)
    x, y = _clusters(3000, centres, g)
    torch.manual_seed(0)
    trainer = BALTrainer(_identity_features(centres), K, latent_dim=8, progress=False, **kw)
    trainer.fit(_Loader(x, y), epochs=10)
    x_test, _ = _clusters(600, centres, g)
    return trainer, x_test, x


def test_uniform_ood_features_margin_widens_the_batch_box():
    g = torch.Generator().manual_seed(0)
    f = torch.rand((256, 5), generator=g) * torch.tensor([1.0, 10.0, 0.1, 2.0, 5.0])
    y = torch.zeros(256, dtype=torch.long)
    lo, hi = f.min(0).values, f.max(0).values
    f0, _ = uniform_ood_features(f, y, 2, generator=torch.Generator().manual_seed(1))
    assert (f0 >= lo).all() and (f0 <= hi).all()  # margin 0: eq. 4-5 exactly
    f1, _ = uniform_ood_features(f, y, 2, generator=torch.Generator().manual_seed(1), margin=1.0)
    w = hi - lo
    assert (f1 >= lo - w - 1e-5).all() and (f1 <= hi + w + 1e-5).all()
    outside = ((f1 < lo) | (f1 > hi)).float().mean(0)  # 2/3 of each coordinate lands outside the ID range
    assert ((outside > 0.55) & (outside < 0.78)).all()
    with pytest.raises(ValueError):
        uniform_ood_features(f, y, 2, margin=-0.5)


def test_bal_defaults_are_the_chosen_reading():
    centres = _centres()
    t = BALTrainer(_identity_features(centres), K, progress=False)
    # chosen on MNIST validation outliers (issue 21); lambda_c, lambda_g and the box are the paper's
    assert t.hidden_dim == 512 and t.fgsm_std == 5.0 and t.lr_g == 1e-3 and t.lr_d == 2e-4
    assert t.box_margin == 0.0 and t.lambda_c == 0.7 and t.lambda_g == 0.01


def test_bal_rejects_features_far_outside_the_id_box():
    """ID features scaled x3 (large norm, MSP ~ 1, like noise images) must get low D and a high BAL
    score once the trivial box is widened; with the paper's batch box (box_margin=0) nothing teaches
    D about that region and this fails (D AUROC 0.48-0.82 on this toy)."""
    trainer, x_test, _ = _train(box_margin=1.0, fgsm_std=2.0, hidden_dim=64, lr_g=2e-4)
    far = 3.0 * x_test
    det = trainer.detector()
    with torch.no_grad():
        c_id, c_far = trainer.classifier.head(x_test).argmax(1), trainer.classifier.head(far).argmax(1)
        p_id = trainer.discriminator.probability(x_test, c_id)
        p_far = trainer.discriminator.probability(far, c_far)
        msp = torch.cat([trainer.classifier.head(v).softmax(1).max(1).values for v in (x_test, far)])
    labels = [0] * len(x_test) + [1] * len(far)  # OOD positive
    assert p_far.mean() < 0.2 and p_id.mean() > 2 * p_far.mean()
    assert roc_auc_score(labels, torch.cat([-p_id, -p_far]).numpy()) > 0.95
    bal = roc_auc_score(labels, torch.cat([det.predict(x_test), det.predict(far)]).numpy())
    assert bal > 0.95 and bal > roc_auc_score(labels, (-msp).numpy()) + 0.2  # MSP is fooled by large norms
