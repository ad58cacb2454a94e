"""LogitNorm and VOS: the training baselines built on pytorch-ood's losses (issue 21)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from pytorch_ood.loss import VirtualOutlierSynthesizingRegLoss, logit_norm_loss
from torch import nn

from niood_plugin.cli import main
from niood_plugin.peers import LogitNormObjective, VOSObjective
from niood_plugin.training import train_plain


class _MLP(nn.Module):
    """A features/head classifier on vectors."""

    def __init__(self, d_in: int = 2, d_feat: int = 8, k: int = 3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, 32), nn.ReLU(), nn.Linear(32, d_feat), nn.ReLU())
        self.classifier = nn.Linear(d_feat, k)

    def features(self, x):
        return self.body(x)

    def head(self, f):
        return self.classifier(f)

    def forward(self, x):
        return self.head(self.features(x))


def _blobs(n: int = 600, k: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    centres = torch.tensor([[4.0, 0.0], [-2.0, 3.5], [-2.0, -3.5]])[:k]
    return centres[y] + 0.5 * torch.randn(n, 2, generator=g), y


def _batches(x, y, bs=64):
    return [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]


def test_logitnorm_objective_is_pytorch_oods_loss():
    model = _MLP()
    x, y = _blobs(64)
    loss, logits = LogitNormObjective(t=0.04)(model, x, y, 0)
    assert torch.allclose(logits, model(x))
    assert torch.allclose(loss, logit_norm_loss(model(x), y, t=0.04))
    with pytest.raises(ValueError, match="t"):
        LogitNormObjective(t=0.0)


def test_logitnorm_keeps_logit_norms_from_growing():
    """The paper's point: cross-entropy buys confidence with the logit norm, LogitNorm cannot."""
    x, y = _blobs()
    norms = {}
    for name, objective in (("ce", None), ("logitnorm", LogitNormObjective())):
        torch.manual_seed(0)
        model = _MLP()
        kwargs = {} if objective is None else {"objective": objective}
        train_plain(model, _batches(x, y), 30, 1e-2, "cpu", **kwargs)
        with torch.no_grad():
            norms[name] = model(x).norm(dim=1).mean().item()
    assert norms["ce"] > 3 * norms["logitnorm"], norms


def _full_vos(model, epochs=4, **kw):
    objective = VOSObjective(model, epochs, sample_number=20, sample_from=500, **kw)
    return objective


def test_vos_is_cross_entropy_before_its_start_epoch():
    model = _MLP()
    objective = _full_vos(model, epochs=10)  # start at epoch 4
    assert objective.start_epoch == 4
    x, y = _blobs(64)
    loss, logits = objective(model, x, y, 3)
    assert torch.allclose(loss, F.cross_entropy(model(x), y))


def test_vos_regulariser_engages_and_trains_its_own_parameters():
    torch.manual_seed(0)
    model = _MLP()
    objective = _full_vos(model, epochs=4)
    x, y = _blobs(300)
    for i in range(0, 300, 60):  # fill the queues (20 per class)
        objective(model, x[i:i + 60], y[i:i + 60], 3)
    assert objective.virtual_outliers().shape == (3, 8)
    loss, logits = objective(model, x[:60], y[:60], 3)
    assert loss.item() > F.cross_entropy(logits, y[:60]).item() + 1e-4
    loss.backward()
    trained = [*objective.criterion.logistic_regression.parameters(), objective.criterion.weights_energy.weight]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)  # (the energy uses no bias)
    assert {id(p) for p in trained} <= {id(p) for p in objective.trainable()}
    # the head is the model's own layer, trained through the model's parameters
    assert objective.criterion.fc is model.classifier


def test_fast_sampler_draws_pytorch_oods_virtual_outliers():
    """Same distribution as pytorch-ood's MultivariateNormal sampler: the Mahalanobis distance of
    the kept outliers to their class mean (the quantity VOS selects on) and their mean direction."""
    torch.manual_seed(0)
    model = _MLP(d_feat=8)
    objective = VOSObjective(model, 4, sample_number=200, sample_from=2000)
    crit = objective.criterion
    scale = torch.linspace(0.5, 2.0, 8)
    for k in range(3):
        crit.data_dict[k] = torch.randn(200, 8) * scale + 3 * k
        crit.number_dict[k] = 200
    mu = crit.data_dict.mean(dim=1)
    centred = (crit.data_dict - mu[:, None]).reshape(-1, 8)
    precision = torch.linalg.inv(centred.T @ centred / len(centred) + 1e-4 * torch.eye(8))

    def distances(sampler):
        d = torch.cat([sampler().reshape(3, -1, 8) - mu[:, None] for _ in range(200)], dim=1)
        return torch.einsum("kni,ij,knj->kn", d, precision, d).sqrt(), d

    ours, d_ours = distances(crit._sample_virtual_outliers)
    ref, d_ref = distances(lambda: VirtualOutlierSynthesizingRegLoss._sample_virtual_outliers(crit))
    assert abs(ours.mean() - ref.mean()) < 0.05 * ref.mean()   # chi(8) tail of 2,000 draws: about 5.9
    assert abs(ours.std() - ref.std()) < 0.25 * ref.std() + 0.05
    assert d_ours.mean(dim=1).norm(dim=1).max() < 1.0 and d_ref.mean(dim=1).norm(dim=1).max() < 1.0


def test_vos_samples_in_fp32_under_bf16_autocast():
    """Training steps run under the recipe's bf16 autocast (airbench on a CPU with native bf16):
    VOS's shared covariance of 256-d features, if computed in bf16, is not positive-definite for
    its 1e-4 ridge and the Cholesky factorisation fails mid-training (it did, in epoch 18 of the
    CIFAR-10 default). The sampling runs in fp32 and draws what it draws without autocast."""
    torch.manual_seed(0)
    model = _MLP(d_feat=256)
    objective = VOSObjective(model, 4, sample_number=100, sample_from=500)
    crit = objective.criterion
    crit.data_dict.copy_(torch.randn(3, 100, 40) @ torch.randn(40, 256) * 0.05 + torch.randn(3, 1, 256))
    crit.number_dict = {k: 100 for k in range(3)}
    torch.manual_seed(1)
    reference = objective.virtual_outliers()
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        drawn = objective.virtual_outliers()
    assert drawn.dtype == torch.float32 and torch.equal(drawn, reference)


def test_vos_validates_params():
    with pytest.raises(ValueError, match="start_fraction"):
        VOSObjective(_MLP(), 4, start_fraction=1.0)
    with pytest.raises(ValueError, match="select"):
        VOSObjective(_MLP(), 4, select=10, sample_from=5)


def test_harness_trains_logitnorm_and_vos(tmp_path):
    args = ["run", "--preset", "smoke", "--quiet", "--test-limit", "100", "--method", "standard,logitnorm,vos",
            "--detectors", "msp,energy", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    res = json.loads((tmp_path / "results.json").read_text())
    rows = {(r["method"], r["detector"]) for r in res["results"]}
    assert {("logitnorm", "msp"), ("vos", "energy")} <= rows
    models = sorted(p.name.split("-")[0] for p in (tmp_path / "models").iterdir())
    assert models == ["logitnorm", "standard", "vos"]
    # LogitNorm trains differently from cross-entropy on the same data, seed and architecture
    loss = {m: res["methods"][m]["history"][0]["train_loss"] for m in ("standard", "logitnorm")}
    assert loss["standard"] != pytest.approx(loss["logitnorm"])


def test_vos_state_dict_holds_its_queues():
    """Its queues (pytorch-ood keeps them out of the state dict) travel with the state, so a
    checkpointed VOS training resumes with them; a state of other queues is refused."""
    from niood_plugin.errors import InvalidArgumentError

    torch.manual_seed(0)
    model = _MLP()
    objective = _full_vos(model)
    x, y = _blobs(45)
    objective(model, x, y, 3)  # 15 features per class queued of 20
    copy = _full_vos(_MLP())
    copy.load_state_dict(objective.state_dict())
    assert torch.equal(copy.criterion.data_dict, objective.criterion.data_dict)
    assert copy.criterion.number_dict == {0: 15, 1: 15, 2: 15}
    assert all(torch.equal(a, b) for a, b in zip(copy.trainable(), objective.trainable()))
    with pytest.raises(InvalidArgumentError, match="feature queues of shape \\(3, 30, 8\\)"):
        VOSObjective(_MLP(), 4, sample_number=30, sample_from=500).load_state_dict(objective.state_dict())
