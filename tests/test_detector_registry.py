"""The harness's detectors are one registry (``niood_plugin.bench.detectors.DETECTORS``): each entry
declares what it needs and which methods it applies to; the default list fits every method, and a
user's own detector is registered, listed and scored like ours."""
import pytest
import torch
from click.testing import CliRunner
from pytorch_ood.detector import MaxLogit
from torch import nn

from niood_plugin.bench.config import BenchConfig
from niood_plugin.bench.detectors import DETECTORS, DetectorEntry, applicable, build, for_method, left_out
from niood_plugin.bench.methods import TrainedModel
from niood_plugin.bench.runner import BenchData, _notes, score_method, validate
from niood_plugin.cli import main
from niood_plugin.data import TensorData
from niood_plugin.errors import ConfigError, InvalidArgumentError, InvalidTypeError

K = 3
#: the detectors and their order before the registry (results rows keep this order)
BUILT_IN = ["ue", "ue-id", "garbage", "msp", "odin", "energy", "mahalanobis", "maxlogit", "knn", "vim", "entropy"]


class Tiny(nn.Module):
    """The classifier protocol the harness scores: ``features(x)`` and ``head(f)``."""

    def __init__(self, outputs: int):
        super().__init__()
        self.body = nn.Linear(16, 6)
        self.classifier = nn.Linear(6, outputs)

    def features(self, x):
        return torch.relu(self.body(x.flatten(1)))

    def head(self, f):
        return self.classifier(f)

    def forward(self, x):
        return self.head(self.features(x))


def _trained(method: str, garbage: bool) -> TrainedModel:
    torch.manual_seed(0)
    return TrainedModel(method, Tiny(K + 1 if garbage else K).eval(), K, K if garbage else None, 0.0)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)

    def images(n, name, labelled=True):
        y = torch.arange(n) % K if labelled else -torch.ones(n, dtype=torch.long)
        return TensorData(torch.rand(n, 1, 4, 4, generator=g) * 2 - 1, y, name)

    train = images(60, "synthetic")
    return BenchData(train, images(30, "synthetic"), {"gaussian": images(30, "gaussian", False)}, train)


def _cfg(tmp_path, **kw):
    return BenchConfig(id="synthetic", ood=["gaussian"], out=str(tmp_path / "o"), **kw).resolved()


def _scored(tm, cfg, data):
    rows, _, _ = score_method(tm, cfg, data, torch.device("cpu"))
    return list(dict.fromkeys(r["detector"] for r in rows)), rows


@pytest.fixture
def own_detector():
    """A user's detector: pytorch-ood's MaxLogit over every output of the model."""
    name = "maxlogit-all"
    DETECTORS.register(name, DetectorEntry(lambda d: MaxLogit(d.model), feed="full-logits",
                                           description="maximum over every logit"))
    yield name
    DETECTORS._entries.pop(name)


def test_the_default_detectors_fit_a_run_of_standard_alone(tmp_path):
    validate(_cfg(tmp_path, methods=["standard"]))  # was refused: "detector 'ue-id' scores only ... inversion"
    validate(_cfg(tmp_path, methods=["fig", "logitnorm"]))


def test_the_default_scores_each_method_with_the_detectors_that_apply_to_it(tmp_path, data):
    cfg = _cfg(tmp_path, methods=["inversion", "standard"])
    assert cfg.detectors is None
    inversion, rows = _scored(_trained("inversion", True), cfg, data)
    assert inversion == BUILT_IN  # the same rows, in the same order, as the old default list
    by = {r["detector"]: r["scored_on"] for r in rows}
    assert by["ue"] == "K+1 logits (UE variant 'combined')" and by["msp"] == "K logits (garbage excluded)"
    assert by["odin"] == "K logits (garbage excluded), input perturbation" and by["vim"] == "penultimate features"
    standard, rows = _scored(_trained("standard", False), cfg, data)
    assert standard == [d for d in BUILT_IN if d not in ("ue-id", "garbage")]
    assert {r["scored_on"] for r in rows if r["detector"] in ("ue", "msp")} == {"K logits"}
    note = [n for n in _notes(cfg, data) if n.startswith("detectors not scored")]
    assert note == ["detectors not scored on methods they do not apply to: ue-id (method inversion or inversion-ft only) on "
                    "standard; garbage (method inversion or inversion-ft only) on standard; bal (method bal only) on inversion, "
                    "standard"]


def test_only_named_detectors_that_apply_to_no_method_are_refused(tmp_path, data):
    for named, methods, expect in ((["garbage"], ["standard"], "method inversion"), (["msp", "bal"], ["inversion"],
                                                                                      "method bal")):
        with pytest.raises(ConfigError, match=expect) as err:
            validate(_cfg(tmp_path, methods=methods, detectors=named))
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="unknown detector 'psychic'"):
        validate(_cfg(tmp_path, detectors=["psychic"]))
    cfg = _cfg(tmp_path, methods=["inversion", "standard"], detectors=["garbage", "msp"])
    validate(cfg)  # garbage applies to inversion: scored there, left out for standard with a note
    assert _scored(_trained("standard", False), cfg, data)[0] == ["msp"]
    assert _scored(_trained("inversion", True), cfg, data)[0] == ["garbage", "msp"]
    assert left_out(cfg.detectors, cfg.methods) == {"garbage": ["standard"]}


def test_a_methods_own_detector_is_scored_whether_named_or_not():
    assert for_method(["msp"], "bal") == ["msp", "bal"]
    assert for_method(None, "bal")[-1] == "bal" and "bal" not in for_method(None, "inversion")
    assert DETECTORS.get("bal").own and DETECTORS.get("bal").needs_extra == ("discriminator",)
    assert DETECTORS.get("garbage").needs_garbage and DETECTORS.get("knn").needs_fit
    assert not applicable("bal", _trained("bal", False))  # a bal model without its discriminator


def test_a_users_detector_is_registered_listed_and_scored(tmp_path, data, own_detector):
    cfg = _cfg(tmp_path, methods=["inversion", "standard"], detectors=[own_detector, "msp"])
    validate(cfg)
    names, rows = _scored(_trained("inversion", True), cfg, data)
    assert names == [own_detector, "msp"]
    assert {r["scored_on"] for r in rows if r["detector"] == own_detector} == {"K+1 logits"}
    assert own_detector in for_method(None, "standard")  # part of the default list too
    result = CliRunner().invoke(main, ["list", "--data-root", str(tmp_path)])
    assert result.exit_code == 0 and f"{own_detector} " in result.output and "maximum over every logit" in result.output


def test_a_users_detector_that_needs_a_garbage_output_names_its_methods(tmp_path):
    with pytest.raises(InvalidArgumentError, match="methods="):
        DetectorEntry(lambda d: MaxLogit(d.model), feed="full-logits", needs_garbage=True)
    entry = DetectorEntry(lambda d: MaxLogit(d.model), feed="full-logits", needs_garbage=True, methods=["inversion"])
    assert entry.methods == ("inversion",)
    DETECTORS.register("mine", entry)
    try:
        with pytest.raises(ConfigError, match="method inversion"):
            validate(_cfg(tmp_path, methods=["standard"], detectors=["mine"]))
        validate(_cfg(tmp_path, methods=["standard"]))  # the default leaves it out for standard
    finally:
        DETECTORS._entries.pop("mine")


def test_entries_are_checked_when_declared_and_built():
    with pytest.raises(TypeError, match="build must be a callable"):
        DetectorEntry(3)
    with pytest.raises(ValueError, match="feed must be"):
        DetectorEntry(lambda d: None, feed="pixels")
    with pytest.raises(InvalidTypeError, match="DetectorEntry"):
        DETECTORS.register("x", lambda d: MaxLogit(d.model))
    assert "x" not in DETECTORS
    wrong = DetectorEntry(lambda d: MaxLogit(d.model), needs_garbage=True, methods=("standard",))
    DETECTORS.register("wrong", wrong)
    try:  # an entry that says standard's model has a garbage output: a clear error, not a traceback
        with pytest.raises(ConfigError, match="needs a garbage output"):
            build("wrong", _trained("standard", False), "combined", None)
    finally:
        DETECTORS._entries.pop("wrong")
    DETECTORS.register("nothing", DetectorEntry(lambda d: object()))
    try:
        with pytest.raises(InvalidTypeError, match="predict_logits"):
            build("nothing", _trained("standard", False), "combined", None)
    finally:
        DETECTORS._entries.pop("nothing")
    with pytest.raises(InvalidArgumentError, match="ID training features"):
        build("knn", _trained("standard", False), "combined", None)


def test_list_prints_each_detector_from_its_entry(tmp_path):
    result = CliRunner().invoke(main, ["list", "--data-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "with method bal" not in result.output
    bal = next(x for x in lines if x.strip().startswith("bal "))
    assert "method bal only" in bal
    assert any(x.strip().startswith("garbage ") and "method inversion or inversion-ft only" in x for x in lines)
    assert "suites: cifar10, fashionmnist, mnist, openood" in result.output
