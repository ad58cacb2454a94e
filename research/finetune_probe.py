"""Probe fine-tuning settings of ``inversion-ft`` on validation data only (issue 33).

Starts from the cached ``standard`` model of a run folder, gives it a garbage output, runs a
short fine-tune per setting (``lr`` in the recipe's unit) and prints
the ID test accuracy and AUROC of the garbage probability, energy and KNN on the run's OOD
sets (the validation config's: Tiny ImageNet's validation part and noise).  Never point it
at a config with the reported sets.

    python research/finetune_probe.py --config benchmarks/configs/cifar10-recipe.toml \\
        --out runs/val --opt width=64 --opt epochs=25 --set recipe=airbench-no-smoothing \\
        --try lr=2 --try lr=11.5 --epochs 1 [--json research/results/x.json]
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pytorch_ood.detector import KNN

from niood_plugin.bench.config import BenchConfig, apply, apply_sets, load_config_file, parse_value
from niood_plugin.bench.evaluate import ood_metrics
from niood_plugin.bench.runner import load_data, model_source
from niood_plugin.data import build_augmentation
from niood_plugin.models import FlipAveraged, add_garbage_output

sys.path.insert(0, str(Path(__file__).parent))
from validate_detectors import outliers  # noqa: E402  synthetic validation outliers from ID test images


@torch.inference_mode()
def outputs(model, data, device):
    feats, logits = [], []
    for x, _ in data.loader(batch_size=512):
        f = model.features(x.to(device))
        feats.append(f.float().cpu())
        logits.append(model.head(f).float().cpu())
    return torch.cat(feats), torch.cat(logits)


def knn_scores(bank: torch.Tensor, z: torch.Tensor, k: int = 50) -> np.ndarray:
    """pytorch-ood's KNN (normalised features, distance to the k-th nearest of ``bank``)."""
    return KNN(None, k=k).fit_features(bank, torch.zeros(len(bank), dtype=torch.long)).predict_features(z).numpy()


def evaluate(model, data, device, k: int, tta: bool) -> dict:
    model = FlipAveraged(model) if tta else model
    model.eval()
    fit_z, fit_l = outputs(model, data.fit, device)
    id_z, id_l = outputs(model, data.test, device)
    acc = float((id_l[:, :k].argmax(1) == data.test.y).float().mean())
    row = {"id_acc": acc, "finite_logits": bool(torch.isfinite(id_l).all())}
    # ID calibration on the fit set: KNN leave-one-out (k + 1 neighbours, the first is the point itself)
    cal_knn = knn_scores(fit_z, fit_z, 51)
    cal_g = None if fit_l.shape[1] <= k else (fit_l[:, k] - fit_l[:, :k].logsumexp(1)).numpy()

    def cdf(cal, s):
        return np.searchsorted(np.sort(cal), s, side="right") / len(cal)

    def zs(cal, s):
        return (s - np.median(cal)) / (np.percentile(cal, 75) - np.percentile(cal, 25))

    def fused(how):
        def f(l, z):
            if cal_g is None:
                return None
            g, d = (l[:, k] - l[:, :k].logsumexp(1)).numpy(), knn_scores(fit_z, z)
            return cdf(cal_knn, d) + cdf(cal_g, g) if how == "rank" else zs(cal_knn, d) + zs(cal_g, g)
        return f

    scores = {"garbage": lambda l, z: l.softmax(1)[:, k].numpy() if l.shape[1] > k else None,
              "energy": lambda l, z: -torch.logsumexp(l[:, :k], 1).numpy(),
              "knn": lambda l, z: knn_scores(fit_z, z),
              "fuse-rank": fused("rank"), "fuse-z": fused("z")}
    ids = {n: f(id_l, id_z) for n, f in scores.items()}
    for name, ood in {**data.oods, **outliers(data.test)}.items():
        z, l = outputs(model, ood, device)
        for n, f in scores.items():
            s = f(l, z)
            if s is not None:
                if not (np.isfinite(s).all() and np.isfinite(ids[n]).all()):
                    row[f"{n}:{name}"] = float("nan")
                    continue
                row[f"{n}:{name}"] = ood_metrics(np.asarray(ids[n], np.float64), np.asarray(s, np.float64))["auroc"]
    return row


@torch.no_grad()
def bn_check(model, data, device, share: float, batch: int = 1024) -> dict:
    """ID test accuracy when BatchNorm normalises with the statistics of batches of ``batch`` ID
    images plus ``share`` of that many clamped Gaussian-noise images (the noise garbage), the
    weights untouched (a copy of the model in train mode; its running statistics are not kept)."""
    m = copy.deepcopy(model).train()
    g = torch.Generator().manual_seed(0)
    correct = n = 0
    for x, y in data.test.loader(batch_size=batch, shuffle=True, seed=0):  # the test split is sorted by class
        noise = torch.randn(int(share * len(x)), *x.shape[1:], generator=g).clamp_(-1, 1)
        logits = m(torch.cat([x, noise]).to(device))[:len(x)]
        correct += int((logits.argmax(1).cpu() == y).sum())
        n += len(y)
    return {"noise_share": share, "id_acc_batch_stats": correct / n}


def write_json(path, obj) -> None:
    """``obj`` as JSON at ``path`` (its folder made), when a path was given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(obj, indent=1))


def run_config(config: str, opts: list[str], sets: list[str], out: str) -> BenchConfig:
    """The config file ``config`` with ``--opt KEY=VALUE`` and ``--set`` entries applied, writing to ``out``."""
    cfg = apply(BenchConfig(), load_config_file(config), config)
    cfg = apply(cfg, {k: parse_value(v) for k, v in (o.split("=", 1) for o in opts)}, "--opt")
    return dataclasses.replace(apply_sets(cfg, sets), out=out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True, help="the run folder whose models/ cache holds 'standard'")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--opt", action="append", default=[])
    ap.add_argument("--try", action="append", default=[], dest="tries", help="lr=X[,noise=N]: lr in the recipe's unit, N noise garbage images (default: an average class)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("--bn-check", action="store_true", help="only: ID accuracy with batch statistics of ID + noise")
    args = ap.parse_args()
    cfg = dataclasses.replace(run_config(args.config, args.opt, args.sets, args.out), methods=["standard"])
    device = torch.device(cfg.device)
    data = load_data(cfg)
    base = model_source(cfg, data, device, progress=False, resume=False, train_missing=False)("standard")
    k, shape, tta = data.num_classes, tuple(data.image_shape), cfg.resolved().tta == "flip"
    if args.bn_check:  # no training: ID accuracy with BatchNorm on batch statistics of ID + noise
        rows = [bn_check(base.model, data, device, share) for share in (0.0, 0.05, 0.1, 0.2)]
        print(rows, flush=True)
        write_json(args.json, {"argv": sys.argv, "bn_check": rows})
        return 0
    rows = [{"setting": "standard", **evaluate(base.model, data, device, k, tta)}]
    print(rows[-1], flush=True)
    for t in args.tries:
        opts = dict(kv.split("=") for kv in t.split(","))
        clf = add_garbage_output(copy.deepcopy(base.model)).to(device)
        noise = {"noise_samples": int(opts["noise"])} if "noise" in opts else {}  # Gaussian-noise garbage images
        recipe = cfg.recipe().updated(epochs=args.epochs, pretrain_epochs=0, lr=float(opts["lr"]), **noise)
        trainer = recipe.create(clf, k, shape, negatives=cfg.negatives_object(), device=device, seed=cfg.seed,
                                progress=False, callbacks=[])
        loader = data.train.loader(batch_size=recipe.batch_size, shuffle=True, seed=cfg.seed,
                                   augment=build_augmentation(cfg.resolved().augment), device=device)
        t0 = time.perf_counter()
        hist = trainer.fit(loader)
        print(t, [{k: h.get(k) for k in ("train_id_acc", "train_garbage_acc", "train_loss")} for h in hist[1:]],
              flush=True)
        row = {"setting": t, "train_s": time.perf_counter() - t0,
               "train_id_acc": [h.get("train_id_acc") for h in hist[1:]], **evaluate(clf, data, device, k, tta)}
        rows.append(row)
        print(row, flush=True)
    write_json(args.json, {"argv": sys.argv, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
