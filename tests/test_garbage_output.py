"""``models.add_garbage_output``: a trained K-way classifier gets a garbage output (K + 1 rows,
the K trained ones unchanged, the new one their mean), ready for a fine-tune."""
import pytest
import torch
from torch import nn

from niood_plugin import GarbageSampler, InversionTrainer
from niood_plugin.errors import InvalidTypeError
from niood_plugin.models import add_garbage_output, build_classifier, head_linear


@pytest.mark.parametrize("name, kwargs", [("airnet", {"width": 4}), ("resnet10-cifar", {"width": 4}),
                                          ("report32", {"ncf": 8})])
def test_the_k_logits_are_kept_and_the_garbage_logit_is_their_mean(name, kwargs):
    torch.manual_seed(0)
    model = build_classifier(name, 10, 3, **kwargs).eval()
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        before = model(x)
        assert add_garbage_output(model) is model
        after = model(x)
    assert after.shape == (5, 11) and head_linear(model).out_features == 11
    assert torch.allclose(after[:, :10], before, atol=1e-5)
    assert torch.allclose(after[:, 10], before.mean(1), atol=1e-5)
    assert all(p.requires_grad for p in head_linear(model).parameters())


def test_a_model_without_a_linear_head_is_refused():
    with pytest.raises(InvalidTypeError):
        add_garbage_output(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))


def test_the_extended_model_fine_tunes_without_pretraining(digits28):
    x, y = digits28
    torch.manual_seed(0)
    model = add_garbage_output(build_classifier("report28", 10, 1, ncf=8))
    garbage = GarbageSampler(10, (1, 28, 28), inversion_steps=2, samples_per_step=66, latent_dim=8,
                             generator_width=8, progress=False)
    trainer = InversionTrainer(model, garbage, epochs=1, pretrain_epochs=0, callbacks=[], progress=False)
    history = trainer.fit(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:128], y[:128]), batch_size=64))
    assert [h["phase"] for h in history] == ["pretrain", "inversion"]
    assert "train_loss" not in history[0] and history[1]["train_garbage_acc"] >= 0.0


def test_the_harness_fine_tunes_the_standard_model_as_inversion_ft(tmp_path):
    import json

    from click.testing import CliRunner

    from niood_plugin.cli import main

    config = tmp_path / "ft.toml"
    config.write_text('id = "synthetic"\nood = ["gaussian"]\nmethods = ["standard", "inversion-ft"]\n'
                      'preset = "smoke"\nfinetune_epochs = 2\nfinetune_lr = 5e-4\ndetectors = ["msp", "garbage"]\n')
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--config", str(config), "--quiet", "--test-limit", "40",
                                       "--train-limit", "200", "--epochs", "1", "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    res = json.loads((out / "results.json").read_text())
    ft, plain = res["methods"]["inversion-ft"], res["methods"]["standard"]
    assert [h["phase"] for h in ft["history"]] == ["pretrain", "inversion", "inversion"]  # no pre-training epochs
    assert "train_loss" not in ft["history"][0] and ft["history"][1]["lr"] < 5e-4 * 1.0001
    assert ft["train_time_s"] > plain["train_time_s"] and ft["garbage_index"] == 10
    assert {r["detector"] for r in res["results"] if r["method"] == "inversion-ft"} == {"msp", "garbage"}
