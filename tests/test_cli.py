import json

import pytest
from click.testing import CliRunner

from niood_plugin.bench.report import RESULT_KEYS
from niood_plugin.cli import main

SMOKE = ["run", "--preset", "smoke", "--quiet", "--test-limit", "100"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    result = CliRunner().invoke(main, SMOKE + ["--out", str(out)], catch_exceptions=False)
    return out, result


def test_smoke_run_writes_all_outputs(smoke_run):
    out, result = smoke_run
    assert result.exit_code == 0, result.output
    for name in ("results.json", "results.csv", "results.md", "training_inversion.png"):
        assert (out / name).is_file(), name
    assert list(out.glob("roc_*.png")) and list(out.glob("hist_*.png"))
    assert list((out / "samples" / "inversion").glob("samples_epoch_*.png"))
    payload = json.loads((out / "results.json").read_text())
    assert {"config", "environment", "timings", "id_accuracy", "results"} <= set(payload)
    assert payload["id_accuracy"] == payload["methods"]["inversion"]["id_accuracy"]  # the first method's
    rows = payload["results"]
    assert {(r["method"], r["ood"]) for r in rows} == {(m, o) for m in ("inversion", "standard")
                                                       for o in ("gaussian", "uniform")}
    for r in rows:
        assert set(RESULT_KEYS) <= set(r)
    # garbage-only detectors are scored on the garbage model only
    assert {r["detector"] for r in rows if r["method"] == "standard"}.isdisjoint({"ue-id", "garbage"})
    assert "avg AUROC" in result.output
    env = payload["environment"]  # the hardware line names the CPU's generation where Linux says it
    assert f"- hardware: {env['cpu']} ({env['cpu_count']} cores{', ' + env['cpu_id'] if env['cpu_id'] else ''}, " \
        in (out / "results.md").read_text()


def test_second_run_uses_the_model_cache(smoke_run):
    out, _ = smoke_run
    result = CliRunner().invoke(main, SMOKE + ["--out", str(out), "--detectors", "msp"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "results.json").read_text())
    assert all(m["cached"] for m in payload["methods"].values())
    assert {r["detector"] for r in payload["results"]} == {"msp"}


def test_default_detectors_fit_a_run_of_standard_alone(smoke_run):
    """Without --detectors each method gets the detectors that apply to it; the others are named in a note."""
    out, _ = smoke_run
    result = CliRunner().invoke(main, SMOKE + ["--out", str(out), "--method", "standard"], catch_exceptions=False)
    assert result.exit_code == 0, result.output  # was refused: ue-id and garbage need method inversion
    payload = json.loads((out / "results.json").read_text())
    assert payload["methods"]["standard"]["cached"]
    assert [r["detector"] for r in payload["results"] if r["ood"] == "gaussian"] == [
        "ue", "msp", "odin", "energy", "mahalanobis", "maxlogit", "knn", "vim", "entropy"]
    assert "garbage (method inversion or inversion-ft only) on standard" in (out / "results.md").read_text()


def test_a_registered_detector_is_scored_by_a_run(smoke_run):
    """The example of docs/guide/detectors.md: a KNN with k = 5, registered in Python, named like ours."""
    from pytorch_ood.detector import KNN

    from niood_plugin.bench.detectors import DETECTORS, DetectorEntry

    out, _ = smoke_run
    DETECTORS.register("knn5", DetectorEntry(lambda d: KNN(d.post_hoc.features, k=5).fit_features(*d.fit),
                                             feed="features", needs_fit=True, description="KNN with k = 5"))
    try:
        result = CliRunner().invoke(main, SMOKE + ["--out", str(out), "--detectors", "knn5,msp"],
                                    catch_exceptions=False)
    finally:
        DETECTORS._entries.pop("knn5")
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "results.json").read_text())["results"]
    assert {(r["method"], r["detector"]) for r in rows} == {(m, d) for m in ("inversion", "standard")
                                                           for d in ("knn5", "msp")}
    assert {r["scored_on"] for r in rows if r["detector"] == "knn5"} == {"penultimate features"}


def test_negatives_table_reaches_the_trainer_and_the_cache_key(tmp_path):
    """--set negatives.*: the Negatives recipe is in results.json, active only in the last epoch, and
    part of the cache key (the same run again is cached; without negatives it is another model)."""
    args = SMOKE + ["--method", "inversion", "--detectors", "garbage", "--set", "negatives.kinds=warp",
                    "--set", "negatives.last_epochs=1", "--out", str(tmp_path)]
    for cached in (False, True):
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        payload = json.loads((tmp_path / "results.json").read_text())
        assert payload["config"]["negatives"] == {"kinds": "warp", "per_image": 1.0, "last_epochs": 1}
        assert payload["methods"]["inversion"]["cached"] is cached
    retrain = [h.get("negatives") for h in payload["methods"]["inversion"]["history"] if h.get("epoch", 0) >= 1]
    assert retrain[-1] is True and not any(retrain[:-1])
    assert len(list((tmp_path / "models").glob("inversion-*.pt"))) == 1


def test_compare(smoke_run):
    out, _ = smoke_run
    result = CliRunner().invoke(main, ["compare", str(out), str(out)])
    assert result.exit_code == 0 and "avg AUROC" in result.output


def _fails_cleanly(args, expect):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert expect in result.output
    return result


def test_missing_dataset_exits_2_without_traceback_or_output_folder(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise RuntimeError("offline")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    _fails_cleanly(["run", "--id", "mnist", "--ood", "gaussian", "--data-root", str(tmp_path / "empty"),
                    "--out", str(tmp_path / "o"), "--quiet"], "mnist")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_traceback(tmp_path, where):
    args = ["run", "--id", "nosuchset", "--out", str(tmp_path / "o")]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and result.exception is not None


def test_list_and_data(tmp_path):
    result = CliRunner().invoke(main, ["list", "--data-root", str(tmp_path)])
    assert result.exit_code == 0 and "synthetic" in result.output and "mahalanobis" in result.output
    result = CliRunner().invoke(main, ["data", "--data-root", str(tmp_path)])
    assert result.exit_code == 0 and "looked in" in result.output


def test_attack_command_reuses_cached_models(smoke_run, tmp_path):
    out, _ = smoke_run
    cfg = tmp_path / "smoke.toml"
    cfg.write_text(f'id = "synthetic"\npreset = "smoke"\nwidth = 8\nfit_limit = 1000\nout = "{out}"\n')
    result = CliRunner().invoke(main, ["attack", "--config", str(cfg), "--start", "uniform", "--eps", "0,1",
                                       "--steps", "3", "--n", "40", "--test-limit", "50", "--quiet",
                                       "--detectors", "ue,msp"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    attack_dir = out.with_name(out.name + "-attack")    # a folder of its own, beside the run's
    payload = json.loads((attack_dir / "results.json").read_text())
    assert payload["kind"] == "attack" and payload["attack"]["eps"] == [0.0, 1.0]
    assert all(m["cached"] for m in payload["methods"].values())
    assert {r["eps"] for r in payload["results"]} == {0.0, 1.0}
    assert (attack_dir / "attack_inversion.png").is_file()
    assert json.loads((out / "results.json").read_text())["kind"] == "run"
    assert "smallest eps" in result.output
    # --set reaches the cache key: other hyperparameters name a model that was never trained
    other = CliRunner().invoke(main, ["attack", "--config", str(cfg), "--start", "uniform", "--eps", "0",
                                      "--steps", "1", "--n", "8", "--test-limit", "20", "--quiet",
                                      "--detectors", "msp", "--method", "inversion", "--set", "novelty=1",
                                      "--out", str(tmp_path / "other-attack")])
    assert other.exit_code == 2 and "no cached inversion model" in other.output
    assert not (tmp_path / "other-attack").exists()


@pytest.mark.parametrize("flags, match", [(["--classifier", "no-such-net"], "unknown classifier"),
                                          (["--width", "0"], "width")])
def test_classifier_and_width_flags_are_checked_before_training(tmp_path, flags, match):
    result = CliRunner().invoke(main, SMOKE + ["--out", str(tmp_path / "o"), *flags])
    assert result.exit_code == 2 and match in result.output
    assert not (tmp_path / "o").exists()


def test_classifier_and_width_flags_reach_the_run(tmp_path):
    from niood_plugin.cli import _config

    cfg = _config(None, {"id": "synthetic", "classifier": "airnet", "width": 8}, ())
    assert (cfg.classifier, cfg.width) == ("airnet", 8)


def test_finetune_flags_reach_the_run_and_are_checked(tmp_path):
    from niood_plugin.cli import _config

    cfg = _config(None, {"id": "synthetic", "finetune_epochs": 1, "finetune_lr": 0.5}, ())
    assert (cfg.finetune_epochs, cfg.finetune_lr) == (1, 0.5)
    result = CliRunner().invoke(main, SMOKE + ["--out", str(tmp_path / "o"), "--finetune-lr", "-1"])
    assert result.exit_code == 2 and "finetune_lr" in result.output
    assert not (tmp_path / "o").exists()
