"""Our benchmarks as pytorch-ood benchmarks (niood_plugin.suites), the OpenOOD-style CSV and
``--suite``: one definition of each suite, used by niood-bench and by pytorch-ood's evaluate."""
import csv
import json

import pytest
import torch
from click.testing import CliRunner
from pytorch_ood.benchmark import Benchmark
from pytorch_ood.detector import MaxSoftmax

from niood_plugin import UEDetector
from niood_plugin.bench.runner import ModelSource, load_data
from niood_plugin.cli import _config, main
from niood_plugin.models import DropOutput
from niood_plugin.suites import (SUITES, CIFAR10OneVsRest, FashionMNISTOneVsRest, MNISTOneVsRest, OneVsRest, OpenOOD,
                                 list_suites, load_suite, suite_settings)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite-run")
    result = CliRunner().invoke(main, ["run", "--preset", "smoke", "--quiet", "--test-limit", "100", "--out", str(out),
                                       "--detectors", "ue,msp"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def test_suite_evaluate_gives_the_numbers_of_niood_bench(smoke):
    payload = json.loads((smoke / "results.json").read_text())
    cfg = _config(None, {"preset": "smoke", "test_limit": 100, "out": str(smoke), "detectors": ["ue", "msp"]}, ())
    cfg = cfg.resolved()
    tm = ModelSource(cfg, load_data(cfg), torch.device("cpu"), False, False, train_missing=False).get("inversion")
    assert tm.cached
    suite = OneVsRest(id="synthetic", ood=["gaussian", "uniform"], test_limit=100, seed=0)
    assert isinstance(suite, Benchmark) and suite.ood_names == ["gaussian", "uniform"]
    # the harness's "ue" is the "combined" variant (its ue_variant), its "msp" sees the K ID logits
    rows = suite.evaluate([UEDetector(tm.model, 10, "combined"), MaxSoftmax(DropOutput(tm.model, 10))],
                          loader_kwargs={"batch_size": 64})
    ours = {(r["detector"], r["ood"]): r for r in payload["results"] if r["method"] == "inversion"}
    names = {"UEDetector": "ue", "MaxSoftmax": "msp"}
    assert len(rows) == 4
    for r in rows:
        mine = ours[(names[r["Detector"]], r["Dataset"])]
        assert r["AUROC"] == pytest.approx(mine["auroc"], abs=1e-6), r
        assert r["FPR95TPR"] == pytest.approx(mine["fpr95"], abs=1e-6), r


def test_test_sets_mark_ood_targets_negative():
    suite = OneVsRest(id="synthetic", ood=["gaussian"], test_limit=30, seed=0)
    (pair,) = suite.test_sets()
    ys = torch.tensor([int(pair[i][1]) for i in range(len(pair))])
    assert len(pair) == len(suite.test) + 30 and (ys[-30:] == -1).all() and (ys[:len(suite.test)] >= 0).all()
    assert len(suite.test_sets(unknown=False)) == 1 and len(suite.test_sets(known=False)[0]) == 30
    assert len(suite.train_set()) == len(suite.train)
    with pytest.raises(ValueError):
        suite.test_sets(known=False, unknown=False)


def test_named_suites_are_the_committed_benchmarks():
    assert list_suites() == ["cifar10", "fashionmnist", "mnist", "openood"]
    assert SUITES.get("mnist") is MNISTOneVsRest and SUITES.get("cifar10") is CIFAR10OneVsRest
    assert suite_settings("fashionmnist") == {"id": "fashionmnist", "ood": list(FashionMNISTOneVsRest.default_ood),
                                              "ood_optional": []}
    assert "svhn" in suite_settings("cifar10")["ood_optional"]


def test_suite_flag_sets_the_id_and_ood_sets():
    cfg = _config(None, {"suite": "mnist", "preset": "smoke"}, ())
    assert (cfg.id, cfg.ood, cfg.suite) == ("mnist", list(MNISTOneVsRest.default_ood), "mnist")
    from niood_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="--suite mnist sets ood"):  # one definition: no mixing
        _config(None, {"suite": "mnist", "ood": ["gaussian"]}, ())
    with pytest.raises(ConfigError, match="--suite mnist sets id"):
        _config(None, {"suite": "mnist", "id": "cifar10"}, ())
    assert _config(None, {"suite": "mnist", "id": "mnist"}, ()).ood == list(MNISTOneVsRest.default_ood)


def test_a_suite_in_the_python_api_must_match_its_sets(tmp_path):
    import dataclasses

    from niood_plugin.bench.config import BenchConfig
    from niood_plugin.bench.runner import validate
    from niood_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="leave those to it"):
        validate(BenchConfig(suite="cifar10", out=str(tmp_path / "a")).resolved())  # the default id is mnist
    validate(dataclasses.replace(BenchConfig(**suite_settings("mnist")), suite="mnist",
                                 out=str(tmp_path / "b")).resolved())


def test_openood_suite_offline_fails_with_one_line(tmp_path):
    result = CliRunner().invoke(main, ["run", "--id", "cifar10", "--suite", "openood", "--preset", "smoke", "--out",
                                       str(tmp_path / "o"), "--data-root", str(tmp_path / "data")])
    assert result.exit_code == 2 and "CIFAR10_OpenOOD" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    result = CliRunner().invoke(main, ["run", "--id", "mnist", "--suite", "openood", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "cifar10 or cifar100" in result.output


def test_openood_is_an_entry_of_the_suite_registry(tmp_path):
    from niood_plugin.bench.config import BenchConfig
    from niood_plugin.bench.runner import validate
    from niood_plugin.errors import ConfigError

    assert SUITES.get("openood") is OpenOOD and suite_settings("openood") == {}  # it fixes no setting
    cfg = _config(None, {"suite": "openood", "id": "cifar100"}, ())
    assert (cfg.suite, cfg.id, cfg.out) == ("openood", "cifar100", "runs/cifar100")
    with pytest.raises(ConfigError, match="cifar10 or cifar100, not 'mnist'"):
        validate(BenchConfig(suite="openood", out=str(tmp_path / "o")).resolved())
    with pytest.raises(ConfigError, match="unknown suite 'nosuch'"):
        _config(None, {"suite": "nosuch"}, ())


def test_openood_loads_through_the_registry_like_every_suite(monkeypatch):
    """pytorch-ood's CIFAR10_OpenOOD (faked here: it downloads) gives the test sets, near and far."""
    import pytorch_ood.benchmark
    from torch.utils.data import TensorDataset

    import niood_plugin.suites as suites
    from niood_plugin.bench.config import BenchConfig
    from niood_plugin.data import TensorData

    class FakeOpenOOD:
        ood_names = ["CIFAR100", "TinyImageNet", "MNIST", "SVHN"]

        def __init__(self, root, transform, download):
            assert root.endswith("openood") and download

        def test_sets(self, known=True, unknown=True):
            if not unknown:
                return [TensorDataset(torch.rand(20, 3, 32, 32), torch.arange(20) % 10)]
            return [TensorDataset(torch.rand(12, 3, 32, 32), -torch.ones(12, dtype=torch.long)) for _ in self.ood_names]

    monkeypatch.setattr(pytorch_ood.benchmark, "CIFAR10_OpenOOD", FakeOpenOOD)
    train = TensorData(torch.rand(40, 3, 32, 32) * 2 - 1, torch.arange(40) % 10, "cifar10")
    monkeypatch.setattr(suites, "load_dataset", lambda *a, **k: train)
    cfg = BenchConfig(id="cifar10", suite="openood", test_limit=10)
    suite = load_suite(cfg)
    assert isinstance(suite, OpenOOD) and isinstance(suite, Benchmark) and suite.near == ("CIFAR100", "TinyImageNet")
    assert list(suite.oods) == FakeOpenOOD.ood_names and len(suite.test) == 10 and suite.train is train
    assert suite.recorded_settings() == {"ood": FakeOpenOOD.ood_names, "ood_optional": []}
    data = load_data(cfg)
    assert data.groups == {"nearood": ["CIFAR100", "TinyImageNet"], "farood": ["MNIST", "SVHN"]}


def test_a_users_suite_is_chosen_like_ours(tmp_path):
    import dataclasses

    from niood_plugin.bench.runner import validate

    class Tiny(OneVsRest):
        id_name = "synthetic"
        default_ood = ("gaussian",)

    SUITES.register("tiny", Tiny)
    try:
        cfg = _config(None, {"suite": "tiny"}, ())
        assert (cfg.id, cfg.ood, cfg.out) == ("synthetic", ["gaussian"], "runs/tiny")
        validate(dataclasses.replace(cfg, out=str(tmp_path / "o")).resolved())
        assert isinstance(load_suite(dataclasses.replace(cfg, test_limit=20)), Tiny)
    finally:
        SUITES._entries.pop("tiny")


def test_openood_style_csv(smoke):
    rows = list(csv.reader((smoke / "results_openood.csv").read_text().splitlines()))
    assert rows[0] == ["method", "detector", "dataset", "FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC"]
    payload = json.loads((smoke / "results.json").read_text())
    r = next(r for r in payload["results"] if (r["method"], r["detector"], r["ood"]) == ("inversion", "ue", "gaussian"))
    line = next(x for x in rows if x[:3] == ["inversion", "ue", "gaussian"])
    assert line[3:] == [f"{100 * r[k]:.2f}" for k in ("fpr95", "auroc", "aupr_in", "aupr_out", "id_accuracy")]
    means = [x for x in rows if x[:3] == ["inversion", "ue", "mean"]]
    assert len(means) == 1


def test_openood_sets_become_tensors_in_the_id_geometry():
    from torch.utils.data import TensorDataset

    from niood_plugin.suites import as_tensor_data

    x01 = torch.rand(40, 3, 8, 8)
    ds = TensorDataset(x01, -torch.ones(40, dtype=torch.long))  # OpenOOD's image lists: (image in [0, 1], -1)
    data = as_tensor_data(ds, "far", (1, 4, 4), 25, seed=0)
    assert data.x.shape == (25, 1, 4, 4) and data.x.min() >= -1 and data.x.max() <= 1 and (data.y == -1).all()
    full = as_tensor_data(ds, "far", (3, 8, 8))
    assert torch.allclose(full.x, x01 * 2 - 1)
