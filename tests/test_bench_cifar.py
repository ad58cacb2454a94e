"""CIFAR harness pieces: ID-dependent defaults, CIFAR ResNets, the quality probe, the new plots
and optional OOD sets (no real data, no network)."""
import types

import pytest
import torch
from sklearn.metrics import roc_auc_score

from niood_plugin.bench.config import DEFAULT_WIDTH, BenchConfig, id_defaults
from niood_plugin.bench.feature_plots import feature_space
from niood_plugin.bench.methods import TrainedModel
from niood_plugin.bench.plots import time_to_quality
from niood_plugin.bench.probe import QualityProbe, probe_seconds
from niood_plugin.bench.runner import _notes, load_data
from niood_plugin.data import TensorData
from niood_plugin.detector import UEDetector
from niood_plugin.models import build_classifier, check_feature_classifier

CPU = torch.device("cpu")


# ----------------------------------------------------------------------------- defaults by ID geometry

def test_id_defaults():
    assert id_defaults("cifar10") == {"preset": "cifar-airbench", "classifier": "airnet", "augment": "flip-translate2",
                                      "tta": "flip"}
    assert id_defaults("mnist") == {"preset": "fast", "classifier": "report28", "augment": "none", "tta": "none"}


def test_resolved_fills_only_what_is_missing():
    cfg = BenchConfig(id="cifar10")
    r = cfg.resolved()
    assert (r.preset, r.classifier, r.width, r.augment, r.tta) == ("cifar-airbench", "airnet", 64, "flip-translate2",
                                                                   "flip")
    assert cfg.preset is None and cfg.width is None and cfg.classifier is None  # a copy
    explicit = BenchConfig(id="cifar10", preset="fast", classifier="resnet10-cifar", width=8, augment="none",
                           tta="none")
    r = explicit.resolved()
    assert (r.preset, r.classifier, r.width, r.augment, r.tta) == ("fast", "resnet10-cifar", 8, "none", "none")
    # the width default follows the explicitly chosen classifier
    assert BenchConfig(id="cifar10", classifier="report32").resolved().width == DEFAULT_WIDTH["report32"] == 32
    assert BenchConfig(id="mnist").resolved().width == 32
    assert BenchConfig(id="mnist").resolved().classifier == "report28"


# ----------------------------------------------------------------------------- CIFAR ResNets

@pytest.mark.parametrize("name,blocks", [("resnet18-cifar", 2), ("resnet10-cifar", 1)])
def test_cifar_resnet(name, blocks):
    torch.manual_seed(0)
    clf = build_classifier(name, 11, 3, width=8).eval()
    check_feature_classifier(clf)
    assert len(clf.model.layer1) == blocks
    stem_out = []
    clf.model.layer1.register_forward_hook(lambda m, i, o: stem_out.append(tuple(i[0].shape)))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        logits, f = clf(x), clf.features(x)
        assert logits.shape == (2, 11)
        assert f.shape == (2, 64)
        assert torch.allclose(clf.head(f), logits, atol=1e-5)
    # 3x3 stride-1 stem and no max-pool: the first stage sees the full 32x32 at width 8
    assert stem_out[0] == (2, 8, 32, 32)
    conv1 = clf.model.conv1
    assert isinstance(conv1, torch.nn.Conv2d) and conv1.stride == (1, 1) and conv1.kernel_size == (3, 3)
    assert isinstance(clf.model.maxpool, torch.nn.Identity)


@pytest.mark.parametrize("width", [7, 1, 0])
def test_cifar_resnet_bad_width(width):
    with pytest.raises(ValueError, match="width"):
        build_classifier("resnet18-cifar", 10, 3, width=width)


# ----------------------------------------------------------------------------- quality probe

def _probe_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    id_test = TensorData(torch.rand(40, 1, 28, 28, generator=g) * 2 - 1, torch.arange(40) % 10, "rand-id")
    ood = TensorData(torch.rand(30, 1, 28, 28, generator=g) * 2 - 1, torch.full((30,), -1), "rand-ood")
    return id_test, ood


@pytest.mark.parametrize("garbage_index,outputs", [(10, 11), (None, 10)])
@pytest.mark.parametrize("training", [True, False])
def test_quality_probe(garbage_index, outputs, training):
    torch.manual_seed(0)
    model = build_classifier("report28", outputs, 1, ncf=4)
    model.train(training)
    id_test, ood = _probe_data()
    probe = QualityProbe(id_test, {"a": ood, "b": ood}, 10, garbage_index, CPU, n=100, batch_size=16)
    modes = []
    model.register_forward_pre_hook(lambda m, i: modes.append(m.training))
    entry = {"epoch": 1}
    probe(model, entry)
    assert modes and not any(modes)            # scored in eval mode
    assert model.training is training          # mode restored
    assert 0.0 <= entry["probe_id_acc"] <= 1.0
    assert set(entry["probe_auroc"]) == {"a", "b"}
    assert all(0.0 <= v <= 1.0 for v in entry["probe_auroc"].values())
    assert entry["probe_auroc_avg"] == pytest.approx(sum(entry["probe_auroc"].values()) / 2)
    assert entry["probe_time_s"] > 0
    # n >= the set sizes: everything is scored; check against a direct computation
    model.eval()
    with torch.no_grad():
        l_id, l_ood = model(id_test.x), model(ood.x)
    acc = float((l_id[:, :10].argmax(1) == id_test.y).float().mean())
    assert entry["probe_id_acc"] == pytest.approx(acc, abs=1e-6)
    det = UEDetector(None, garbage_index=garbage_index)
    s = torch.cat([det.predict_logits(l_id), det.predict_logits(l_ood)]).numpy()
    auroc = roc_auc_score([0] * 40 + [1] * 30, s)  # OOD positive, higher score = more OOD
    assert entry["probe_auroc"]["a"] == pytest.approx(auroc, abs=1e-4)


def test_quality_probe_subsets_and_callback():
    torch.manual_seed(0)
    model = build_classifier("report28", 11, 1, ncf=4)
    id_test, ood = _probe_data(1)
    probe = QualityProbe(id_test, {"ood": ood}, 10, 10, CPU, n=20, batch_size=8, seed=3)
    assert len(probe.id_test) == 20 and len(probe.oods["ood"]) == 20
    assert sorted(probe.id_test.y.tolist()) == sorted(list(range(10)) * 2)  # class-balanced
    entry = {}
    probe.on_epoch_end(types.SimpleNamespace(classifier=model), entry)
    assert {"probe_id_acc", "probe_auroc", "probe_auroc_avg", "probe_time_s"} <= set(entry)


def test_probe_seconds():
    assert probe_seconds([]) == 0.0
    assert probe_seconds([{"probe_time_s": 1.5}, {"time_s": 9.0}, {"probe_time_s": 0.25}]) == pytest.approx(1.75)


# ----------------------------------------------------------------------------- plots

def _history(probed):
    rows = []
    for e in range(1, 4):
        h = {"epoch": e, "time_s": 2.0 * e}
        if probed:
            h.update(probe_id_acc=0.3 * e, probe_auroc={"x": 0.5 + 0.1 * e}, probe_auroc_avg=0.5 + 0.1 * e,
                     probe_time_s=0.1)
        rows.append(h)
    return rows


def test_time_to_quality(tmp_path):
    methods = {"inversion": {"history": _history(True)}, "standard": {"history": _history(False)}}
    path = time_to_quality(tmp_path, methods)
    assert path == tmp_path / "time_to_quality.png"
    assert path.is_file() and path.stat().st_size > 1000
    none_dir = tmp_path / "none"
    none_dir.mkdir()
    assert time_to_quality(none_dir, {"standard": {"history": _history(False)}}) is None
    assert time_to_quality(none_dir, {}) is None
    assert not (none_dir / "time_to_quality.png").exists()


def test_feature_space(tmp_path):
    torch.manual_seed(0)
    model = build_classifier("report28", 11, 1, ncf=4).eval()
    with torch.no_grad():
        d = model.features(torch.zeros(1, 1, 28, 28)).shape[1]
    samples = torch.randint(0, 256, (12, 1, 28, 28), dtype=torch.uint8)
    tm = TrainedModel("inversion", model, 10, 10, 0.0, samples=samples)
    seen, features = [], model.features
    model.features = lambda x: (seen.append(x), features(x))[1]  # the generated outliers get embedded
    feats = {"synthetic": torch.randn(30, d), "gaussian": torch.randn(25, d)}
    # torch's 2 OpenMP threads (conftest) make sklearn's t-SNE up to 20x slower on a busy 2-core box
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = feature_space(tmp_path, tm, feats, "synthetic", CPU, n=12, seed=0, batch_size=5)  # 36 > perplexity
    finally:
        torch.set_num_threads(threads)
    assert path == tmp_path / "features_inversion.png"
    assert path.is_file() and path.stat().st_size > 1000
    assert [len(x) for x in seen] == [5, 5, 2]
    assert all(x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1 for x in seen)


# ----------------------------------------------------------------------------- optional OOD sets

def test_optional_ood_skipped_offline(tmp_path, monkeypatch):
    import torchvision.datasets.svhn as tv_svhn

    def offline(*args, **kwargs):
        raise OSError("offline (test): no network")

    monkeypatch.setattr(tv_svhn, "download_url", offline)
    cfg = BenchConfig(id="synthetic", ood=["gaussian"], ood_optional=["gaussian", "uniform", "svhn"],
                      data_root=str(tmp_path), train_limit=100, test_limit=20, fit_limit=50)
    data = load_data(cfg)
    assert set(data.oods) == {"gaussian", "uniform"}          # an optional set that is there is used
    assert list(data.skipped) == ["svhn"]
    assert "svhn" in data.skipped["svhn"]
    assert data.oods["uniform"].image_shape == data.image_shape
    notes = _notes(cfg, data)
    assert any("svhn" in n and "skipped" in n for n in notes)
    plain = BenchConfig(id="synthetic", ood=["gaussian"], data_root=str(tmp_path), train_limit=100, test_limit=20,
                        fit_limit=50)
    data2 = load_data(plain)
    assert data2.skipped == {}
    assert not any("skipped" in n for n in _notes(plain, data2))
