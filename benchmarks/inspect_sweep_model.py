"""Where a Fashion-MNIST sweep model sends each test class, turned garments and MNIST digits.

    python benchmarks/inspect_sweep_model.py recipe-jigsaw2-rotate2 --seed 2
    python benchmarks/inspect_sweep_model.py recipe --seed 0 --epoch 8   # before the negatives

Loads the checkpoint that ``benchmarks/sweep.py --grid jigsaw-late --ckpt-dir
benchmarks/results/sweep/prefixes`` kept for that setting, seed and epoch (default: the last),
and prints, on the full Fashion-MNIST test set and the ``--mnist`` MNIST test digits that the
sweep scored for that seed:

* per class: accuracy over all K + 1 outputs, the share sent to garbage (argmax), and for the
  images turned a quarter left / right the mean probability of their own class and of garbage;
* the share of the test images' 4x4 jigsaw negatives sent to garbage, and how many negatives
  ``negatives_spare`` left out in each epoch (if set);
* the digits: mean garbage probability, the share under 0.5, and the predicted classes;
* UE (combined) and garbage-probability AUROC against MNIST, with every ID class and with one
  class left out of the ID set (``--drop``), to see how much that class costs.

These are the diagnostics quoted in README "More negatives, and quarter turns".
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch

import sweep
from niood_plugin import UEDetector
from niood_plugin.bench.evaluate import ood_metrics
from niood_plugin.data import load_dataset
from niood_plugin.negatives import jigsaw

CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("setting", help="a setting of the jigsaw-late grid without its seed suffix, e.g. recipe-jigsaw1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epoch", type=int, default=10)
    p.add_argument("--ckpt-dir", default="benchmarks/results/sweep/prefixes")
    p.add_argument("--data-root", default=os.environ.get("NIOOD_DATA"))
    p.add_argument("--mnist", type=int, default=2_000, help="MNIST test digits (the sweep's 2,000)")
    p.add_argument("--drop", default="bag", choices=CLASSES)
    a = p.parse_args()
    torch.set_num_threads(2)
    grid = sweep.GRIDS["jigsaw-late"]
    name = f"{a.setting}-s{a.seed}"
    if name not in grid:
        p.error(f"{name} is not in the jigsaw-late grid")
    over, seed, width, epochs = sweep._split(grid[name], a.seed, 10)
    trainer = sweep.build_trainer(over, seed, width, epochs, 10, (1, 28, 28), torch.device("cpu"))
    clf = trainer.classifier
    path = sweep._prefix_path({"id": "fashionmnist", "train_limit": None, "ckpt_dir": a.ckpt_dir}, trainer,
                              a.epoch, width)
    if not path.is_file():
        p.error(f"no checkpoint {path}: run benchmarks/sweep.py with --ckpt-dir {a.ckpt_dir} for {name} first")
    state = torch.load(path, weights_only=False)
    clf.load_state_dict(state["classifier"])
    clf.eval()
    test = load_dataset("fashionmnist", "test", a.data_root)
    digits = load_dataset("mnist", "test", a.data_root, limit=a.mnist, seed=a.seed)  # the sweep row's digits

    @torch.inference_mode()
    def logits(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([clf(x[i:i + 1000]).float() for i in range(0, len(x), 1000)])

    lid, lmn = logits(test.x), logits(digits.x)
    pid = lid.softmax(1)
    turned = [logits(torch.rot90(test.x, k, (2, 3))).softmax(1) for k in (1, -1)]
    y = test.y
    print(f"{name}, epoch {a.epoch} ({path.name}): ID accuracy (K outputs) "
          f"{(lid[:, :10].argmax(1) == y).float().mean():.4f}, to garbage {(pid.argmax(1) == 10).float().mean():.4f}")
    print(f"{'class':8s} {'acc':>6s} {'garbage':>8s} {'turned: p(own) left/right':>26s} {'p(garbage) left/right':>22s}")
    for c, cname in enumerate(CLASSES):
        m = y == c
        own = "/".join(f"{t[m, c].mean():.3f}" for t in turned)
        gar = "/".join(f"{t[m, 10].mean():.3f}" for t in turned)
        print(f"{cname:8s} {(pid[m].argmax(1) == c).float().mean():6.3f} {(pid[m].argmax(1) == 10).float().mean():8.3f} "
              f"{own:>26s} {gar:>22s}")
    shuffled = logits(jigsaw(test.x, 4, torch.Generator().manual_seed(0))).softmax(1)
    print(f"jigsaw negatives (4x4) of the test images sent to garbage: {(shuffled.argmax(1) == 10).float().mean():.4f}")
    spared = [(e["epoch"], e["negatives_spared"]) for e in json.loads(state["history"]) if "negatives_spared" in e]
    if any(n for _, n in spared):
        print(f"negatives left out of the loss (negatives_spare), per epoch: {spared}")
    pm = lmn.softmax(1)
    print(f"MNIST ({len(digits.x)}): mean garbage probability {pm[:, 10].mean():.4f}, under 0.5 "
          f"{(pm[:, 10] < 0.5).float().mean():.4f}, predicted "
          f"{dict(zip(CLASSES + ('garbage',), torch.bincount(pm.argmax(1), minlength=11).tolist()))}")
    keep = (y != CLASSES.index(a.drop)).numpy()
    for variant in ("combined", "garbage"):
        s_id, s_mn = UEDetector.score(lid, 10, variant).numpy(), UEDetector.score(lmn, 10, variant).numpy()

        def auroc(ids: np.ndarray) -> float:
            return ood_metrics(ids, s_mn)["auroc"]

        print(f"AUROC vs MNIST, {variant}: {auroc(s_id):.4f}; without the {a.drop} class in the ID set "
              f"{auroc(s_id[keep]):.4f}")


if __name__ == "__main__":
    main()
