"""Score a committed benchmark's cached model through its pytorch-ood suite and compare.

    python benchmarks/check_suite.py --config benchmarks/configs/mnist.toml \
        --cache-dir benchmarks/results/mnist/models --method inversion --detectors ue,msp

Loads the model ``niood-bench run --config ...`` cached, scores it with
``niood_plugin.suites`` (pytorch-ood's ``Benchmark.evaluate`` and ``OODMetrics``) and prints its
AUROC beside the AUROC in the run's ``results.json``: one definition of each suite means the
two agree.  Detectors: the harness's own (``niood_plugin.bench.detectors.build``) that need no
fitting: ``ue`` (the run's ``ue_variant``), ``ue-id``, ``garbage``, ``msp``, ``energy``, ...
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from niood_plugin.bench.detectors import build
from niood_plugin.bench.runner import ModelSource, load_data
from niood_plugin.cli import _config
from niood_plugin.suites import OneVsRest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--cache-dir", required=True, help="the run's model cache")
    ap.add_argument("--method", default="inversion")
    ap.add_argument("--detectors", default="ue,msp")
    ap.add_argument("--batch-size", type=int, default=512)
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = dataclasses.replace(_config(args.config, {}, ()), cache_dir=args.cache_dir).resolved()
    data = load_data(cfg)
    tm = ModelSource(cfg, data, torch.device("cpu"), False, False, train_missing=False).get(args.method)
    names = args.detectors.split(",")
    suite = OneVsRest(cfg.data_root, id=cfg.id, ood=cfg.ood, ood_optional=cfg.ood_optional,
                      train_limit=cfg.train_limit, test_limit=cfg.test_limit, seed=cfg.seed)
    rows = [(n, r) for n in names  # one detector a call: rows of a list come per data set, then detector
            for r in suite.evaluate(build(n, tm, cfg.ue_variant, None).detector,  # the harness's own detectors
                                    loader_kwargs={"batch_size": args.batch_size})]
    committed = {(r["detector"], r["ood"]): r["auroc"]
                 for r in json.loads((Path(cfg.out) / "results.json").read_text())["results"]
                 if r["method"] == args.method}
    print("| detector | OOD set | suite.evaluate AUROC | results.json AUROC | difference |\n|---|---|---|---|---|")
    worst = 0.0
    for name, r in rows:
        ours = committed[(name, r["Dataset"])]
        worst = max(worst, abs(r["AUROC"] - ours))
        print(f"| {name} | {r['Dataset']} | {r['AUROC']:.6f} | {ours:.6f} | {r['AUROC'] - ours:+.1e} |")
    print(f"\nlargest difference {worst:.1e}; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
