"""Adapters: the conversions on small tensors (always), and the real libraries when they are
importable (OpenOOD from its GitHub checkout, torch-uncertainty with lightning); nothing of a
third-party library is mocked."""
import importlib.util

import numpy as np
import pytest
import torch

from niood_plugin import UEDetector
from niood_plugin.integrations.convert import batch_xy, ensemble_logits, openood_confidence, ue_and_prediction
from niood_plugin.models import build_classifier


def _have(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def test_openood_confidence_is_the_negated_score_and_keeps_the_ranking():
    scores = torch.tensor([0.1, 0.9, 0.5])
    conf = openood_confidence(scores)
    assert torch.equal(conf, -scores) and torch.equal(conf.argsort(), scores.argsort(descending=True))


def test_batches_of_both_conventions():
    x, y = torch.zeros(2, 1, 4, 4), torch.tensor([3, 4])
    for batch in ({"data": x, "label": y, "image_name": ["a", "b"]}, (x, y), [x, y, "extra"]):
        bx, by = batch_xy(batch)
        assert bx is x and by is y


@pytest.mark.parametrize("batch, match", [
    (torch.zeros(4, 1, 4, 4), "got a Tensor of shape (4, 1, 4, 4)"),             # images alone: no labels
    (np.zeros((4, 1, 4, 4)), "got a numpy.ndarray of shape (4, 1, 4, 4)"),
    ((torch.zeros(4, 1, 4, 4),), "tuple of 1 item"),
    ([torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)], "labels [B]"),                # two images, not (x, y)
    ((torch.zeros(2, 1, 4, 4), torch.tensor([1, 2, 3])), "labels [B]"),          # batch sizes differ
    ((np.zeros((2, 1, 4, 4)), np.array([1, 2])), "x must be a torch.Tensor, got a numpy.ndarray"),
    ((torch.zeros(2, 1, 4, 4), [1, 2]), "y must be a torch.Tensor, got a list"),
    ({"image": torch.zeros(2, 1, 4, 4), "target": torch.tensor([1, 2])}, "got keys ['image', 'target']"),
    ({"data": torch.zeros(2, 1, 4, 4), "label": np.array([1, 2])}, "batch['label'] must be a torch.Tensor"),
    ("x, y", "got a str"),
    (None, "got a NoneType"),
])
def test_batch_xy_refuses_what_is_not_an_x_y_pair(batch, match):
    from niood_plugin.errors import NioodError

    with pytest.raises((TypeError, ValueError)) as info:
        batch_xy(batch)
    assert isinstance(info.value, NioodError) and match in str(info.value) and "\n" not in str(info.value)


def test_other_converters_refuse_non_tensors_by_name():
    with pytest.raises(TypeError, match="scores must be a torch.Tensor, got a numpy.ndarray"):
        openood_confidence(np.zeros(3))
    with pytest.raises(TypeError, match="logits must be a torch.Tensor, got a list"):
        ensemble_logits([[0.0, 1.0]])
    with pytest.raises(TypeError, match="logits must be a torch.Tensor"):
        ue_and_prediction(np.zeros((2, 3)), 2)


def test_the_garbage_index_of_the_adapters_is_required_and_not_negative():
    from niood_plugin.integrations.convert import REQUIRED, check_garbage_index

    with pytest.raises(ValueError, match="needs garbage_index"):
        check_garbage_index(REQUIRED, "combined", "UECriterion")
    with pytest.raises(ValueError, match="garbage_index must be >= 0"):
        check_garbage_index(-1, "combined", "UECriterion")
    assert check_garbage_index(10, "combined", "UECriterion") == 10
    assert check_garbage_index(None, "combined", "UECriterion") is None
    with pytest.raises(ValueError, match="garbage_index must be >= 0"):
        ue_and_prediction(torch.zeros(2, 3), -1)


def test_ue_and_prediction_leave_the_garbage_out_of_the_prediction():
    logits = torch.tensor([[5.0, 0.0, 9.0], [0.0, 4.0, -9.0]])  # K = 2, garbage last
    scores, pred = ue_and_prediction(logits, 2, "combined")
    assert pred.tolist() == [0, 1]  # the garbage logit 9.0 is not a class
    assert torch.allclose(scores, UEDetector(None, 2, "combined").predict_logits(logits))
    assert scores[0] > scores[1]  # the garbage-dominated row is the more OOD one


def test_ensemble_logits():
    logits = torch.randn(4, 3, 11)
    assert torch.equal(ensemble_logits(logits), logits.mean(1)) and ensemble_logits(logits[:, 0]).shape == (4, 11)
    with pytest.raises(ValueError):
        ensemble_logits(torch.randn(2, 2, 2, 2))


def _model():
    torch.manual_seed(0)
    return build_classifier("report28", num_outputs=11, in_channels=1, ncf=8).eval()


@pytest.mark.skipif(not _have("openood"), reason="OpenOOD is not installed (not on PyPI: pip install "
                                                  "git+https://github.com/Jingkang50/OpenOOD)")
def test_openood_postprocessor_and_metrics(digits28):
    from openood.evaluators.metrics import compute_all_metrics
    from openood.postprocessors import BasePostprocessor
    from pytorch_ood.metrics import OODMetrics

    from niood_plugin.integrations.openood import UEPostprocessor

    x, y = digits28
    net, post = _model(), UEPostprocessor(garbage_index=10)
    assert isinstance(post, BasePostprocessor) and not post.APS_mode
    with pytest.raises(ValueError, match="needs garbage_index"):
        UEPostprocessor()  # no default: the network does not say which output is the garbage one
    ood = torch.rand(200, 1, 28, 28) * 2 - 1
    batches = [{"data": x[:200], "label": y[:200]}, {"data": ood, "label": -torch.ones(200, dtype=torch.long)}]
    pred, conf, label = post.inference(net, batches)
    fpr, auroc, aupr_in, aupr_out, acc = compute_all_metrics(conf, label, pred)  # OpenOOD's own metrics
    ue = UEDetector(net, 10, "combined").predict(torch.cat([x[:200], ood]))
    ours = OODMetrics().update(ue, torch.from_numpy(label)).compute()
    assert auroc == pytest.approx(ours["AUROC"], abs=1e-6) and fpr == pytest.approx(ours["FPR95TPR"], abs=1e-2)
    assert np.array_equal(pred[:200], net(x[:200])[:, :10].argmax(1).numpy())


@pytest.mark.skipif(not _have("openood"), reason="OpenOOD is not installed")
def test_openood_trainer_epoch_shape(digits28):
    from openood.utils import Config

    from niood_plugin.integrations.openood import InversionOpenOODTrainer

    x, y = digits28
    loader = [{"data": x[i:i + 64], "label": y[i:i + 64]} for i in range(0, 320, 64)]
    config = Config({"optimizer": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "num_epochs": 2},
                     "dataset": {"num_classes": 10}, "seed": 0})
    from niood_plugin import GarbageSampler, presets

    smoke = {**presets.get_preset("smoke").garbage, "inversion_steps": 2, "samples_per_step": 66, "latent_dim": 8,
             "generator_width": 8}
    garbage = GarbageSampler(10, (1, 28, 28), **smoke)
    trainer = InversionOpenOODTrainer(_model(), loader, config, garbage=garbage)
    for epoch in (1, 2):
        net, metrics = trainer.train_epoch(epoch)
        assert set(metrics) == {"epoch_idx", "loss"} and metrics["epoch_idx"] == epoch and np.isfinite(metrics["loss"])
    assert len(garbage.pool) == 66  # the second epoch refreshed the garbage by inversion
    normalised = [{"data": (b["data"] + 1) / 2 * 4 - 2, "label": b["label"]} for b in loader]  # mean/std style
    with pytest.raises(ValueError, match="Normalize"):
        InversionOpenOODTrainer(_model(), normalised, config, garbage=garbage)


@pytest.mark.skipif(not _have("torch_uncertainty"), reason="torch-uncertainty is not installed")
def test_torch_uncertainty_criterion():
    from torch_uncertainty.ood_criteria import OODCriterionInputType, TUOODCriterion, get_ood_criterion

    from niood_plugin.integrations.torch_uncertainty import UECriterion

    with pytest.raises(ValueError, match="needs garbage_index"):
        UECriterion()
    crit = get_ood_criterion(UECriterion(garbage_index=10))
    assert isinstance(crit, TUOODCriterion) and crit.input_type == OODCriterionInputType.LOGIT
    logits = torch.randn(8, 1, 11)  # the routine's [batch, estimators, classes]
    assert torch.allclose(crit(logits), UEDetector(None, 10, "combined").predict_logits(logits[:, 0]))


@pytest.mark.skipif(not _have("openood"), reason="OpenOOD is not installed")
def test_openood_example_runs(monkeypatch, capsys):
    import runpy
    import sys
    from pathlib import Path

    monkeypatch.setattr(sys, "argv", ["openood_adapter.py", "--tiny"])
    runpy.run_path(str(Path(__file__).parent.parent / "examples" / "openood_adapter.py"), run_name="__main__")
    assert "OpenOOD metrics" in capsys.readouterr().out


@pytest.mark.skipif(not (_have("torch_uncertainty") and _have("lightning")), reason="torch-uncertainty is not installed")
def test_torch_uncertainty_routine_reports_ue(digits28):
    """ClassificationRoutine(eval_ood=True, ood_criterion=UECriterion(...)) in Lightning's test
    loop: its ood/AUROC is UE's AUROC."""
    from lightning.pytorch import Trainer
    from pytorch_ood.metrics import OODMetrics
    from torch.utils.data import DataLoader, TensorDataset
    from torch_uncertainty.routines import ClassificationRoutine

    from niood_plugin.integrations.torch_uncertainty import UECriterion

    x, y = digits28[0][:300], digits28[1][:300]
    ood = torch.rand(300, 1, 28, 28) * 2 - 1
    model = _model()
    routine = ClassificationRoutine(model, num_classes=11, loss=torch.nn.CrossEntropyLoss(), eval_ood=True,
                                    ood_criterion=UECriterion(garbage_index=10))
    loaders = [DataLoader(TensorDataset(x, y), batch_size=100),
               DataLoader(TensorDataset(ood, torch.zeros(300, dtype=torch.long)), batch_size=100)]
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    result = trainer.test(routine, dataloaders=loaders, verbose=False)[0]
    with torch.no_grad():
        scores = UEDetector(model.eval(), 10, "combined").predict(torch.cat([x, ood]))
    ours = OODMetrics().update(scores, torch.cat([torch.zeros(300), -torch.ones(300)]).long()).compute()
    assert result["ood/AUROC"] == pytest.approx(ours["AUROC"], abs=1e-4)
