"""FIG's stop rule, entropy temperature and fine-tuning behaviour (issue 21)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from niood_plugin.peers import FIGTrainer, fig_loss

from peer_task import K, SHAPE, one_thread, template_data, train_template_model  # noqa: F401 (autouse)


@pytest.fixture(scope="module")
def overconfident():
    """A report28 classifier (ncf=8) trained on the template task: over-confident (mean
    max-softmax > 0.9) on its own implicit generator's samples, but not saturated."""
    return train_template_model(200)


def _loader(seed: int = 0, batch_size: int = 50):
    x, y = template_data(200)  # the pretraining task (same templates)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def _trainer(model, **kw):
    kw = dict(dict(max_steps=20, stop_samples=32, progress=False, seed=0, gen_fraction=0.2), **kw)
    return FIGTrainer(model, K, SHAPE, **kw)


def test_generated_confidence_falls_during_fine_tuning(overconfident):
    model = copy.deepcopy(overconfident)
    # the printed eq. 20 (T=1) on this unsaturated toy model; T=10 is exercised on the saturated
    # MNIST model by research/fig_finetune.py and its gradient by the test below
    trainer = _trainer(model, lr=3e-3, gen_fraction=0.5, entropy_temperature=1.0)
    start = trainer.generated_confidence()
    assert start > 0.9, start
    history = trainer.fit(_loader(batch_size=20), epochs=4)
    ends = [h["gen_confidence_end"] for h in history]
    assert ends[-1] < start - 0.2, (start, ends)
    assert min(ends) < 0.75, ends
    with torch.no_grad():  # ID classification survives
        x, y = template_data(400)
        x, y = x[200:], y[200:]  # held-out images of the same task
        assert (model.eval()(x).argmax(1) == y).float().mean() > 0.95


def test_generated_confidence_is_deterministic(overconfident):
    trainer = _trainer(copy.deepcopy(overconfident))
    assert trainer.generated_confidence() == trainer.generated_confidence()


def test_stop_rule_stops_when_met_and_not_before(overconfident, monkeypatch):
    trainer = _trainer(copy.deepcopy(overconfident), stop_confidence=0.4, max_epochs=6)
    assert trainer.stop_threshold == 0.4
    measured = iter([0.95, 0.7, 0.41, 0.39, 0.2, 0.1])
    monkeypatch.setattr(trainer, "generated_confidence", lambda n=None: next(measured))
    history = trainer.fit(_loader())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert [h["stop_met"] for h in history] == [False, False, False, True]
    assert [h["stopped"] for h in history] == [False, False, False, True]
    assert [h["gen_confidence_end"] for h in history] == [0.95, 0.7, 0.41, 0.39]
    assert trainer.stopped_epoch_ == 4


def test_stop_rule_cap_and_fixed_epochs(overconfident, monkeypatch):
    trainer = _trainer(copy.deepcopy(overconfident), stop_confidence=0.3, max_epochs=2)
    monkeypatch.setattr(trainer, "generated_confidence", lambda n=None: 0.99)
    history = trainer.fit(_loader())
    assert len(history) == 2 and not any(h["stopped"] for h in history)
    assert trainer.stopped_epoch_ is None
    # epochs=N: exactly N epochs, even when the rule is met at once
    trainer = _trainer(copy.deepcopy(overconfident), stop_confidence=0.9, max_epochs=1)
    monkeypatch.setattr(trainer, "generated_confidence", lambda n=None: 0.3)
    history = trainer.fit(_loader(), epochs=2)
    assert [h["stop_met"] for h in history] == [True, True]
    assert not any(h["stopped"] for h in history) and trainer.stopped_epoch_ is None
    # stop_confidence=None: max_epochs epochs
    trainer = _trainer(copy.deepcopy(overconfident), stop_confidence=None, max_epochs=2)
    monkeypatch.setattr(trainer, "generated_confidence", lambda n=None: 0.3)
    assert trainer.stop_threshold is None
    assert len(trainer.fit(_loader())) == 2


def test_entropy_temperature_keeps_the_gradient_on_saturated_predictions():
    y = torch.tensor([0])
    logits_id = torch.tensor([[3.0, 0.0, 0.0, 0.0]])
    grads = {}
    for t in (1.0, 10.0):
        gen = torch.tensor([[40.0, 0.0, 0.0, 0.0]], requires_grad=True)  # saturated, as on noise
        fig_loss(logits_id, y, gen, entropy_temperature=t).backward()
        grads[t] = gen.grad.abs().max().item()
    assert grads[1.0] < 1e-12 and grads[10.0] > 1e-2, grads
    # same value at T=1 as before, and every T has the uniform prediction as maximiser
    flat = torch.zeros(1, 4)
    assert fig_loss(logits_id, y, flat, entropy_temperature=10.0).item() == pytest.approx(
        fig_loss(logits_id, y, flat).item())


@pytest.mark.parametrize("kw, match", [
    (dict(stop_confidence=1.5), "stop_confidence"),
    (dict(stop_confidence=1.0), "stop_confidence"),
    (dict(stop_confidence=0.25), "stop_confidence"),  # <= 1/K: could never be met
    (dict(stop_confidence=True), "stop_confidence"),
    (dict(max_epochs=0), "max_epochs"),
    (dict(max_epochs=2.0), "max_epochs"),
    (dict(stop_samples=0), "stop_samples"),
    (dict(entropy_temperature=0.0), "entropy_temperature"),
    (dict(optimizer="rmsprop"), "optimizer"),
])
def test_parameter_validation(overconfident, kw, match):
    with pytest.raises(ValueError, match=match):
        FIGTrainer(overconfident, K, SHAPE, **kw)


def test_fit_epochs_validation(overconfident):
    trainer = _trainer(copy.deepcopy(overconfident))
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="epochs"):
            trainer.fit(_loader(), epochs=bad)
