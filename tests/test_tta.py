"""Flip test-time augmentation (``models.FlipAveraged``) and the harness's ``--tta`` option."""
import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from niood_plugin.bench import runner
from niood_plugin.bench.config import BenchConfig, check
from niood_plugin.cli import main
from niood_plugin.errors import ConfigError, InvalidTypeError
from niood_plugin.models import FlipAveraged, build_classifier, last_linear


def _model():
    torch.manual_seed(0)
    return build_classifier("airnet", 11, 3, width=4).eval()


def test_features_and_logits_are_the_means_of_the_two_views():
    model, x = _model(), torch.rand(6, 3, 32, 32) * 2 - 1
    tta = FlipAveraged(model).eval()
    with torch.no_grad():
        f, f_flip = model.features(x), model.features(x.flip(-1))
        assert torch.allclose(tta.features(x), (f + f_flip) / 2, atol=1e-6)
        assert torch.allclose(tta(x), (model(x) + model(x.flip(-1))) / 2, atol=1e-6)  # linear head
        assert not torch.allclose(f, f_flip, atol=1e-4)  # so the test above can fail
        mirror = torch.cat([x[..., :16], x[..., :16].flip(-1)], -1)  # symmetric images: the model's own output
        assert torch.allclose(tta(mirror), model(mirror), atol=1e-5)
    assert torch.equal(last_linear(tta)[0], last_linear(model)[0])  # ViM / VOS find the same head


def test_it_refuses_models_without_the_protocol_and_a_second_wrap():
    with pytest.raises(InvalidTypeError):
        FlipAveraged(nn.Linear(3, 2))
    with pytest.raises(InvalidTypeError, match="already"):
        FlipAveraged(FlipAveraged(_model()))


def test_the_config_takes_none_or_flip():
    check(BenchConfig(tta="flip"))
    with pytest.raises(ConfigError, match="tta"):
        check(BenchConfig(tta="rotate"))


def test_the_harness_scores_and_measures_accuracy_through_it_when_asked(tmp_path, monkeypatch):
    made = []

    class Spy(FlipAveraged):
        def __init__(self, model):
            super().__init__(model)
            made.append(self)

    monkeypatch.setattr(runner, "FlipAveraged", Spy)
    args = ["run", "--id", "synthetic", "--ood", "gaussian", "--preset", "smoke", "--quiet", "--test-limit", "40",
            "--train-limit", "200", "--method", "standard", "--epochs", "1", "--detectors", "msp"]
    results = {}
    for tta in ("none", "flip"):
        out = tmp_path / tta
        result = CliRunner().invoke(main, args + ["--tta", tta, "--out", str(out)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        results[tta] = json.loads((out / "results.json").read_text())
        assert results[tta]["config"]["tta"] == tta
        assert len(made) == (tta == "flip")
    auroc = {t: r["results"][0]["auroc"] for t, r in results.items()}
    assert auroc["none"] != auroc["flip"]  # the same trained model, scored another way
