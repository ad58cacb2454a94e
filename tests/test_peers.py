"""Tests of the peer methods FIG (niood_plugin.peers.fig) and BAL (niood_plugin.peers.bal), both packages."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from pytorch_ood.api import Detector, ModelNotSetException, RequiresFittingException
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from niood_plugin.models import build_classifier
from niood_plugin.peers import (BALDetector, BALTrainer, FIGTrainer, fig_loss, langevin_sample,
                                modified_energy, uniform_ood_features)
from niood_plugin.peers.bal import (FeatureDiscriminator, FeatureGenerator, bal_discriminator_loss,
                                    bal_generator_loss, fgsm_latent, shuffle_labels)

from peer_task import (K, SHAPE, LinearOnIdentity, one_thread, template_data,  # noqa: F401 (autouse)
                       train_template_model)


@pytest.fixture(scope="module")
def pretrained():
    """A report28 classifier (ncf=8) trained to ~100% on the template task (3 epochs: it is then
    only moderately confident on uniform noise, ~0.45 mean max-softmax)."""
    model = train_template_model(200)
    x, y = template_data(200)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.95
    return model


def _loader(n: int = 200, batch_size: int = 50, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *SHAPE), generator=g) * 2 - 1
    y = torch.randint(0, K, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- FIG


def test_modified_energy_hand_value():
    logits = torch.tensor([[5.0, 0.0, -5.0]])
    expected = 1 * (1 - math.e) + 0 + (-1) * (1 - math.exp(-1))
    assert modified_energy(logits, c=5.0).item() == pytest.approx(expected, rel=1e-6)


def test_langevin_raises_confidence_and_restores_the_model(pretrained):
    model = copy.deepcopy(pretrained).train()  # sampler must switch to eval and back
    n = 16
    start = torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(3)) * 2 - 1
    x, info = langevin_sample(model, n, SHAPE, generator=torch.Generator().manual_seed(3),
                              min_steps=10, max_steps=100, return_info=True)
    assert x.shape == (n, *SHAPE)
    assert not x.requires_grad
    assert 10 <= info["steps"] <= 100
    assert model.training, "training mode must be restored"
    assert all(p.grad is None for p in model.parameters()), "no parameter grads may accumulate"
    model.eval()
    with torch.no_grad():
        conf_start = model(start).softmax(1).max(1).values.mean().item()
        conf_end = model(x).softmax(1).max(1).values.mean().item()
    assert conf_end > conf_start + 0.2, (conf_start, conf_end)
    assert conf_end > 0.9
    assert info["confidence"] == pytest.approx(conf_end, abs=1e-5)


def test_langevin_fixed_steps_and_early_stop(pretrained):
    _, info = langevin_sample(pretrained, 4, SHAPE, steps=3, generator=torch.Generator().manual_seed(0),
                              return_info=True)
    assert info["steps"] == 3
    # the confidence saturates quickly on this model, so the sampler stops well before 100 steps
    _, info = langevin_sample(pretrained, 8, SHAPE, generator=torch.Generator().manual_seed(0),
                              return_info=True)
    assert 10 <= info["steps"] < 100
    with pytest.raises(ValueError, match="min_steps"):
        langevin_sample(pretrained, 4, SHAPE, min_steps=20, max_steps=10)


def test_fig_loss_hand_value():
    logits_id = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    logits_gen = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    ce = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    h_uniform = math.log(2)
    h_skewed = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    expected = ce - (h_uniform + h_skewed) / 2
    assert fig_loss(logits_id, y, logits_gen).item() == pytest.approx(expected, rel=1e-6)
    assert fig_loss(logits_id, y, None).item() == pytest.approx(ce, rel=1e-6)
    assert fig_loss(logits_id, y, logits_gen[:0]).item() == pytest.approx(ce, rel=1e-6)


def test_fig_trainer_end_to_end(pretrained):
    model = copy.deepcopy(pretrained)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = FIGTrainer(model, K, SHAPE, max_steps=20, progress=False, seed=1)
    history = trainer.fit(_loader(), epochs=2)
    assert trainer.classifier is model
    assert len(history) == 2 and [h["epoch"] for h in history] == [1, 2]
    for h in history:
        assert {"loss", "ce", "entropy", "id_train_acc", "sampler_steps", "time_s"} <= set(h)
        assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in h.values())
        assert 10 <= h["sampler_steps"] <= 20
        assert h["num_generated"] == 4 * 5  # 4 batches of 50, gen_fraction 0.1
        assert h["loss"] == pytest.approx(h["ce"] - h["entropy"], abs=1e-4)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_fig_trainer_validates_params(pretrained):
    with pytest.raises(ValueError, match="num_classes"):
        FIGTrainer(pretrained, 1, SHAPE)
    with pytest.raises(ValueError, match="gen_fraction"):
        FIGTrainer(pretrained, K, SHAPE, gen_fraction=1.5)
    with pytest.raises(ValueError, match="lr"):
        FIGTrainer(pretrained, K, SHAPE, lr=0)
    with pytest.raises(ValueError, match="lr"):
        FIGTrainer(pretrained, K, SHAPE, lr=True)  # a bool is never a number
    with pytest.raises(ValueError, match="min_steps"):
        FIGTrainer(pretrained, K, SHAPE, min_steps=20, max_steps=10)
    with pytest.raises(ValueError, match="image_shape"):
        FIGTrainer(pretrained, K, (1, 0, 28))
    with pytest.raises(ValueError, match="classifier"):
        FIGTrainer(None, K, SHAPE)


# ----------------------------------------------------------------------------- BAL


def test_uniform_ood_features_inside_batch_bounds():
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([1.0, 100.0, 0.01, 5.0])
    shift = torch.tensor([0.0, 50.0, -3.0, 7.0])
    f = torch.rand((64, 4), generator=g) * scale + shift
    y = torch.randint(0, 3, (64,), generator=g)
    f_hat, c_hat = uniform_ood_features(f, y, 3, generator=g)
    lo, hi = f.min(0).values, f.max(0).values
    assert f_hat.shape == f.shape and c_hat.shape == y.shape
    assert (f_hat >= lo).all() and (f_hat <= hi).all()
    # fills the box: each dimension spreads over most of its own range
    assert ((f_hat.max(0).values - f_hat.min(0).values) > 0.7 * (hi - lo)).all()
    assert c_hat.min() >= 0 and c_hat.max() < 3 and len(c_hat.unique()) > 1


def test_shuffle_labels_always_wrong():
    y = torch.randint(0, 3, (500,), generator=torch.Generator().manual_seed(0))
    t = shuffle_labels(y, 3, generator=torch.Generator().manual_seed(1))
    assert (t != y).all() and t.min() >= 0 and t.max() < 3


def test_fgsm_latent_lowers_discriminator():
    torch.manual_seed(0)
    G, D = FeatureGenerator(3, 6, latent_dim=5, hidden_dim=16), FeatureDiscriminator(3, 6, hidden_dim=16)
    z, c = torch.randn(200, 5), torch.randint(0, 3, (200,))
    z_hard = fgsm_latent(G, D, z, c, eps=1e-3)
    with torch.no_grad():
        lowered = (D(G(z_hard, c), c) < D(G(z, c), c)).float().mean()
    assert lowered > 0.9
    assert all(p.grad is None for p in list(G.parameters()) + list(D.parameters()))


def test_bal_losses_hand_values():
    big = torch.full((4,), 30.0)
    parts = bal_discriminator_loss(big, -big, torch.zeros(4), -big, -big, lambda_c=0.7)
    assert parts["l_u"].item() == pytest.approx(0.7 * math.log(2), abs=1e-6)
    assert parts["l_t"].item() == pytest.approx(0.0, abs=1e-6)
    assert parts["loss"].item() == pytest.approx(0.7 * math.log(2), abs=1e-6)
    f_gen = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    f_id = torch.tensor([[1.0, 2.0], [0.0, 1.0], [5.0, 5.0]])
    g_parts = bal_generator_loss(torch.zeros(2), f_gen, torch.tensor([0, 1]), f_id, torch.tensor([0, 1, 0]),
                                 lambda_g=0.01)
    assert g_parts["l1"].item() == pytest.approx(2.0)  # min L1 to own class: 3 and 1
    assert g_parts["adv"].item() == pytest.approx(-math.log(2))  # log(1 - 0.5)
    assert g_parts["loss"].item() == pytest.approx(-math.log(2) + 0.02)


def _identity_2d():
    """features() is the identity on 2-D points; head() a fixed linear classifier."""
    return LinearOnIdentity(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]), torch.zeros(2))


def _blobs(n: int, g: torch.Generator):
    y = torch.arange(n) % 2
    centre = torch.where(y == 0, 3.0, -3.0)[:, None].repeat(1, 2)
    return torch.randn((n, 2), generator=g) * 0.4 + centre, y


def test_bal_discriminator_separates_uniform_from_id():
    g = torch.Generator().manual_seed(0)
    x, y = _blobs(512, g)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    trainer = BALTrainer(_identity_2d(), 2, latent_dim=8, hidden_dim=64, lr_d=1e-3, lr_g=1e-3,
                         progress=False)
    history = trainer.fit(loader, epochs=10)
    assert history[-1]["p_uniform"] < history[-1]["p_id"]
    x_test, y_test = _blobs(512, g)
    f_uni, c_uni = uniform_ood_features(x_test, y_test, 2, generator=g)
    with torch.no_grad():
        p_id = trainer.discriminator.probability(x_test, y_test)
        p_uni = trainer.discriminator.probability(f_uni, c_uni)
    labels = [1] * 512 + [0] * 512
    assert roc_auc_score(labels, torch.cat([p_id, p_uni]).numpy()) > 0.9
    det = trainer.detector()
    scores = torch.cat([det.predict(x_test), det.predict(f_uni)])
    assert roc_auc_score(labels, (-scores).numpy()) > 0.85  # scores: higher = more OOD


def test_bal_trainer_end_to_end_and_detector():
    torch.manual_seed(0)
    clf = build_classifier("report28", num_outputs=K, in_channels=1, ncf=8)
    before = [p.detach().clone() for p in clf.parameters()]
    trainer = BALTrainer(clf, K, progress=False)
    with pytest.raises(RequiresFittingException):
        trainer.detector()
    history = trainer.fit(_loader(), epochs=2)
    assert len(history) == 2
    for h in history:
        assert {"d_loss", "l_t", "l_s", "l_u", "g_loss", "time_s"} <= set(h)
        assert all(math.isfinite(v) for v in h.values())
    assert trainer.feature_dim_ == 16  # 2 * ncf, inferred
    assert all(torch.equal(a, b) for a, b in zip(before, clf.parameters())), "classifier must stay frozen"
    assert all(p.grad is None for p in clf.parameters())
    det = trainer.detector()
    assert isinstance(det, Detector) and det.classifier is clf and det.discriminator is trainer.discriminator
    x = torch.rand((10, *SHAPE)) * 2 - 1
    scores = det.predict(x)
    assert scores.shape == (10,) and torch.isfinite(scores).all()
    with torch.no_grad():
        assert torch.allclose(det.predict_features(clf.features(x)), scores)
        f = clf.features(x)
        logits = clf.head(f)
        expected = -logits.softmax(1).max(1).values * trainer.discriminator.probability(f, logits.argmax(1))
    assert torch.allclose(scores, expected)
    assert det.fit(_loader()) is det


def test_bal_detector_score_formula():
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    s = BALDetector.score(logits, torch.tensor([0.5, 1.0]))
    assert s.tolist() == pytest.approx([-0.375, -0.5])


def test_bal_detector_model_not_set():
    disc = FeatureDiscriminator(K, 16)
    x = torch.rand((2, *SHAPE))
    with pytest.raises(ModelNotSetException):
        BALDetector(None, disc).predict(x)
    with pytest.raises(ModelNotSetException):
        BALDetector(None, disc).predict_features(torch.rand(2, 16))
    clf = build_classifier("report28", num_outputs=K, in_channels=1, ncf=8)
    with pytest.raises(ModelNotSetException):
        BALDetector(clf, None).predict(x)


def test_bal_trainer_validates_params():
    clf = build_classifier("report28", num_outputs=K, in_channels=1, ncf=8)
    with pytest.raises(ValueError, match="num_classes"):
        BALTrainer(clf, 1)
    with pytest.raises(ValueError, match="lambda_c"):
        BALTrainer(clf, K, lambda_c=-0.1)
    with pytest.raises(ValueError, match="betas"):
        BALTrainer(clf, K, betas=(0.5, 1.0))
    with pytest.raises(ValueError, match="device"):
        BALTrainer(clf, K, device="gpu")
    with pytest.raises(ValueError, match="features"):
        BALTrainer(nn.Linear(3, 3), K)
    with pytest.raises(ValueError, match="feature_dim"):
        BALTrainer(clf, K, feature_dim=7).fit(_loader(), epochs=1)
