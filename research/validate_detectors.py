"""Choose the default detector (and compare recipes) on validation data only.

The reported OOD sets are never loaded.  The in-distribution side is the ID test split; the
outliers are synthetic and held back from training (no model ever sees them):

* ``val-permuted``: ID test images with their pixels randomly permuted (no shape, ID intensities);
* ``val-inverted``: ID test images with inverted intensities (x -> -x: the shape, not the look);
* ``val-blend``: the average of two ID test images of different classes (near OOD: ID strokes,
  no single ID object);
* ``val-patches``: 7x7 patches of ID test images tiled at random (ID texture, no object).

Usage (trained models come from the run's model cache, or are trained with --train)::

    python research/validate_detectors.py --config benchmarks/configs/mnist.toml --out runs/val-mnist \\
        [--opt epochs=4] [--set negatives=none] [--train] [--json research/results/x.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from niood_plugin.bench.config import BenchConfig, apply, apply_sets, load_config_file, parse_value
from niood_plugin.bench.detectors import applicable, build
from niood_plugin.bench.evaluate import ood_metrics, represent, score
from niood_plugin.bench.runner import load_data, model_source
from niood_plugin.data import TensorData
from niood_plugin.training import accuracy

DETECTORS = ["ue", "ue-id", "garbage", "msp", "energy", "mahalanobis", "knn", "vim"]
VARIANTS = ["combined", "id", "garbage"]


def outliers(test: TensorData, seed: int = 12345, n: int = 2000) -> dict[str, TensorData]:
    g = torch.Generator().manual_seed(seed)
    x, y = test.x[:n], test.y[:n]
    b, c, h, w = x.shape
    perm = torch.argsort(torch.rand(b, h * w, generator=g), dim=1)
    permuted = torch.gather(x.flatten(2), 2, perm[:, None, :].expand(b, c, h * w)).reshape(x.shape)
    other = torch.randperm(len(test.x), generator=g)[:n]
    other = torch.where(test.y[other] == y, torch.roll(other, 1), other)
    blend = 0.5 * (x + test.x[other])
    p = 7 if h % 7 == 0 else 8
    tiles = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, p, p)
    pick = torch.randint(tiles.shape[0], (b * (h // p) * (w // p),), generator=g)
    patches = tiles[pick].reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(x.shape)
    minus = -torch.ones_like(y)
    return {name: TensorData(v.contiguous(), minus, name) for name, v in
            (("val-permuted", permuted), ("val-inverted", -x), ("val-blend", blend), ("val-patches", patches))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True, help="the run folder whose models/ cache holds the models")
    ap.add_argument("--set", action="append", default=[], dest="sets", help="trainer hyperparameter or negatives.KEY")
    ap.add_argument("--opt", action="append", default=[], help="benchmark setting KEY=VALUE (epochs, preset, ...)")
    ap.add_argument("--methods", default="inversion,standard")
    ap.add_argument("--train", action="store_true", help="train models missing from the cache")
    ap.add_argument("--json", help="write the table here")
    args = ap.parse_args()
    cfg = apply(BenchConfig(), load_config_file(args.config), args.config)
    opts = dict(o.split("=", 1) for o in args.opt)
    cfg = apply(cfg, {k: parse_value(v) for k, v in opts.items()}, "--opt")
    cfg = apply_sets(cfg, args.sets)
    cfg = dataclasses.replace(cfg, ood=[], out=args.out, methods=args.methods.split(","))
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    data = load_data(cfg)
    device = torch.device(cfg.device)
    sets = outliers(data.test)
    get = model_source(cfg, data, device, progress=False, resume=False, train_missing=args.train)
    rows = []
    for method in cfg.methods:
        tm = get(method)
        tm.model.to(device).eval()
        id_acc = accuracy(tm.model, data.test.loader(batch_size=cfg.batch_size), device, tm.num_classes)
        reps = {k: represent(tm, v, cfg.batch_size, device) for k, v in {cfg.id: data.test, **sets}.items()}
        fit_rep = represent(tm, data.fit, cfg.batch_size, device)
        fit = (fit_rep.features, data.fit.y)
        for det in DETECTORS:
            if not applicable(det, tm):
                continue
            variants = VARIANTS if det == "ue" and tm.garbage_index is not None else [None]
            for variant in variants:
                sd = build(det, tm, variant or cfg.ue_variant, fit)
                id_s = score(sd, tm, data.test, reps[cfg.id], cfg.batch_size, device)
                aucs = {k: ood_metrics(id_s, score(sd, tm, v, reps[k], cfg.batch_size, device))["auroc"]
                        for k, v in sets.items()}
                name = det if variant is None else f"ue[{variant}]"
                rows.append({"method": method, "detector": name, "id_acc": id_acc, **aucs, "avg": float(np.mean(list(aucs.values()))),
                             "worst": float(min(aucs.values()))})
    print(f"| method | detector | ID acc | {' | '.join(sets)} | avg | worst |")
    print("|---|---|---|" + "---|" * (len(sets) + 2))
    for r in rows:
        print(f"| {r['method']} | {r['detector']} | {r['id_acc']:.4f} | "
              + " | ".join(f"{r[k]:.4f}" for k in [*sets, "avg", "worst"]) + " |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"config": args.config, "opts": args.opt, "sets": args.sets, "rows": rows,
                                               "wall_s": time.perf_counter() - t0}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
