"""FIG fine-tuning of the cached plain MNIST model, measured per epoch (issue 21).

Settings are chosen on ID data and synthetic validation outliers only (``outliers`` of
:mod:`research.validate_detectors`: val-permuted, val-inverted, val-blend, val-patches built
from ID test images), ID test accuracy and the confidence of the implicit generator's samples.
The reported OOD test sets are scored only with ``--test`` (for the final setting).

Usage::

    OMP_NUM_THREADS=1 python research/fig_finetune.py [--set lr=1e-3 --set gen_fraction=0.1 ...]
        [--epochs N | (stop rule: the trainer's defaults)] [--batches B] [--test] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate_detectors import outliers  # noqa: E402

from niood_plugin.bench.config import parse_value  # noqa: E402
from niood_plugin.data import TensorData, load_dataset  # noqa: E402
from niood_plugin.models import build_classifier, to_channels_last  # noqa: E402
from niood_plugin.peers import FIGTrainer  # noqa: E402

MODEL = "/work/main/benchmarks/results/mnist/models/standard-a63c804db7334711.pt"
TEST_OOD = ["fashionmnist", "cifar10-jpeg", "tinyimagenet", "gaussian", "uniform"]


def load_model() -> torch.nn.Module:
    state = torch.load(MODEL, weights_only=False)
    m = to_channels_last(build_classifier("report28", 10, 1, ncf=32))
    m.load_state_dict(state["model"])
    return m.eval()


@torch.no_grad()
def msp(model: torch.nn.Module, x: torch.Tensor, bs: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    conf, pred = [], []
    for i in range(0, len(x), bs):
        p = model(x[i:i + bs]).softmax(1)
        c, k = p.max(1)
        conf.append(c)
        pred.append(k)
    return torch.cat(conf).numpy(), torch.cat(pred).numpy()


def auroc(id_conf: np.ndarray, ood_conf: np.ndarray) -> float:
    """MSP AUROC with OOD as the positive class (score = -confidence)."""
    y = np.r_[np.zeros(len(id_conf)), np.ones(len(ood_conf))]
    return float(roc_auc_score(y, -np.r_[id_conf, ood_conf]))


def evaluate(model, test: TensorData, sets: dict[str, TensorData], trainer: FIGTrainer | None) -> dict:
    id_conf, pred = msp(model, test.x)
    row = {"id_acc": float((pred == test.y.numpy()).mean())}
    for name, d in sets.items():
        row[name] = auroc(id_conf, msp(model, d.x)[0])
    names = list(sets)
    row["mean_auroc"] = float(np.mean([row[n] for n in names]))
    if trainer is not None:
        row["gen_confidence_fresh"] = trainer.generated_confidence()
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", action="append", default=[], dest="sets", help="FIGTrainer keyword KEY=VALUE")
    ap.add_argument("--epochs", type=int, default=None, help="exactly this many epochs (default: stop rule)")
    ap.add_argument("--batches", type=int, default=None, help="ID training images / 128 per epoch (quick runs)")
    ap.add_argument("--test", action="store_true", help="also score the reported OOD test sets (final setting only)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    kwargs = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.sets)}

    train = load_dataset("mnist", "train")
    if args.batches:
        train = TensorData(train.x[: args.batches * 128], train.y[: args.batches * 128], "mnist-sub")
    test = load_dataset("mnist", "test")
    sets = outliers(test)
    test_sets = {}
    if args.test:
        for name in TEST_OOD:
            try:
                test_sets[name] = load_dataset(name, "test", image_shape=(1, 28, 28), seed=0)
            except Exception as exc:  # optional sets that are not on disk
                print(f"skip {name}: {exc}")

    model = load_model()
    trainer = FIGTrainer(model, 10, (1, 28, 28), progress=False, **kwargs)
    before = evaluate(model, test, sets, trainer)
    if test_sets:
        before["test"] = evaluate(model, test, test_sets, None)
    print("before", json.dumps(before))
    rows = [dict(epoch=0, **before)]
    loader = train.loader(batch_size=128, shuffle=True, seed=0)
    epochs = args.epochs if args.epochs is not None else trainer.max_epochs
    for e in range(epochs):
        t0 = time.perf_counter()
        rec = trainer.fit(loader, epochs=1)[-1]
        fit_s = time.perf_counter() - t0
        row = evaluate(model, test, sets, None)
        row.update(epoch=rec["epoch"], fit_s=fit_s, **{k: rec[k] for k in
                   ("gen_confidence", "gen_confidence_end", "entropy", "ce", "sampler_steps") if k in rec})
        print(json.dumps(row), flush=True)
        rows.append(row)
        if args.epochs is None and trainer.stop_reached(rec):
            print(f"stop rule met after epoch {rec['epoch']}")
            break
    after = rows[-1]
    if test_sets:
        after["test"] = evaluate(model, test, test_sets, None)
        print("test before", json.dumps(before["test"]))
        print("test after ", json.dumps(after["test"]))
    out = {"settings": {k: getattr(trainer, k) for k in trainer._parameter_constraints
                        if k not in ("classifier",)}, "batches": args.batches, "epochs": rows}
    out["settings"]["image_shape"] = list(trainer.image_shape)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
