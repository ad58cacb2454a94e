"""benchmarks/results_tables.py: the README and docs tables read from results.json folders."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def tables(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("results_tables", ROOT / "benchmarks" / "results_tables.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "results_tables", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    return module


def write_run(folder: Path, seed: int, aurocs: dict[str, dict[str, dict[str, float]]], cached=(), train_s=60.0):
    """A minimal results.json: ``aurocs[method][detector][ood] = AUROC``."""
    folder.mkdir(parents=True)
    oods = sorted({o for dets in aurocs.values() for per in dets.values() for o in per})
    payload = {
        "command": f"niood-bench run --seed {seed}", "config": {"seed": seed, "ood": oods, "preset": "p"},
        "environment": {"cpu": "cpu", "cpu_count": 2, "torch_threads": 2, "device": "cpu", "torch": "2"},
        "timings": {"total_s": 120.0}, "provenance": {"commit": "abcdef123456", "dirty": False},
        "methods": {m: {"id_accuracy": 0.9, "train_time_s": train_s, "cached": m in cached} for m in aurocs},
        "results": [{"method": m, "detector": d, "ood": o, "auroc": a, "fpr95": 0.1}
                    for m, dets in aurocs.items() for d, per in dets.items() for o, a in per.items()],
    }
    (folder / "results.json").write_text(json.dumps(payload))


def test_airnet_headline_reads_inversion_ft_and_the_test_part(tables, tmp_path):
    default = tables.BENCHES["cifar10-airnet"].default  # chosen on validation data
    other = "garbage" if default != "garbage" else "energy"
    ours = {default: {"tinyimagenet-test": 0.91, "mnist": 0.99}, other: {"tinyimagenet-test": 0.95, "mnist": 0.5}}
    plain = {"msp": {"tinyimagenet-test": 0.80, "mnist": 0.90}, "energy": {"tinyimagenet-test": 0.88, "mnist": 0.86}}
    write_run(tmp_path / "cifar10-airnet", 0, {"standard": plain, "inversion-ft": ours}, cached=("standard",))
    write_run(tmp_path / "cifar10-airnet-seed1", 1, {"standard": plain, "inversion-ft": ours})
    text = tables.headline("cifar10-airnet")
    rows = [line for line in text.splitlines() if line.startswith("| 0 ") or line.startswith("| 1 ")]
    assert len(rows) == 2
    # the benchmark's detector, not our best on these sets (the other one: 0.725 < 0.95)
    assert f"{default} 0.9500 (0.9100)" in rows[0]
    assert "energy 0.8700" in rows[0] and "+0.0800" in rows[0]  # the plain model at its best post-hoc
    assert "0.9100 / energy 0.8800" in rows[0]  # near column on tinyimagenet-test
    assert "(c)" in rows[0] and "(c)" not in rows[1]  # seed 0's models came from the cache
    assert "mean of 2" in text


def test_methods_table_adds_single_method_runs_of_the_same_seed(tables, tmp_path):
    write_run(tmp_path / "cifar10-airnet", 0, {"standard": {"msp": {"tinyimagenet-test": 0.8}},
                                               "inversion-ft": {"garbage": {"tinyimagenet-test": 0.9},
                                                                                "energy": {"tinyimagenet-test": 0.8},
                                                                                "msp": {"tinyimagenet-test": 0.95}}})
    write_run(tmp_path / "cifar10-airnet-peers" / "logitnorm", 0,
              {"logitnorm": {"msp": {"tinyimagenet-test": 0.7}, "energy": {"tinyimagenet-test": 0.75}}})
    write_run(tmp_path / "cifar10-airnet-peers" / "fig", 0,  # a peer run carries the standard model it starts from
              {"standard": {"msp": {"tinyimagenet-test": 0.1}}, "fig": {"msp": {"tinyimagenet-test": 0.85}}})
    write_run(tmp_path / "cifar10-airnet-peers" / "vos-seed1", 1, {"vos": {"energy": {"tinyimagenet-test": 0.6}}})
    text = tables.methods_table("cifar10-airnet")
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert set(rows) == {"method", "standard", "inversion-ft", "logitnorm", "fig"}  # seed 1's vos is not seed 0's
    assert "msp 0.8000" in rows["standard"]  # from the main run, not the peer folder's copy
    own = {"garbage": "0.9000", "energy": "0.8000"}[tables.BENCHES["cifar10-airnet"].default]
    assert "msp 0.7000" in rows["logitnorm"] and f"{tables.BENCHES['cifar10-airnet'].default} {own}" in rows["inversion-ft"]
    assert "logitnorm: `niood-bench run --seed 0`" in text
