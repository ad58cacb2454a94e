"""Which classifier for CIFAR-10 on a 2-core CPU: accuracy per CPU-minute (issue 20).

Each candidate is trained as the harness's ``standard`` method trains it (``train_plain``: Adam
at 3e-3, per-epoch cosine schedule, crop+flip batches of 128, channels-last) for about the same
CPU time, and its CIFAR-10 test accuracy is measured after every epoch.  Only ID data is used.

    python research/backbones.py            # writes research/results/backbones.{json,md}
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from niood_plugin.bench.provenance import environment, git_state
from niood_plugin.data import CropFlip, load_dataset
from niood_plugin.files import atomic_write_text
from niood_plugin.models import build_classifier, to_channels_last
from niood_plugin.training import accuracy, train_plain

# name -> (classifier, kwargs, epochs): epochs chosen so that each gets about 1.5 minutes here
CANDIDATES = {
    "report32 (ncf 32)": ("report32", {"ncf": 32}, 3),
    "resnet10-cifar (width 16)": ("resnet10-cifar", {"width": 16}, 2),
    "resnet18-cifar (width 16)": ("resnet18-cifar", {"width": 16}, 1),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="research/results/backbones")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t_start, code = time.perf_counter(), git_state()
    train, test = load_dataset("cifar10", "train"), load_dataset("cifar10", "test")
    test_loader = test.loader(batch_size=512, channels_last=True)
    results = {}
    for label, (name, kwargs, epochs) in CANDIDATES.items():
        torch.manual_seed(args.seed)
        model = to_channels_last(build_classifier(name, 10, 3, **kwargs))
        loader = train.loader(batch_size=128, shuffle=True, seed=args.seed, augment=CropFlip())
        curve, wall = [], 0.0

        def record(m, entry):
            nonlocal wall
            wall += entry["time_s"]
            curve.append({"epoch": entry["epoch"] + 1, "train_s": wall, "test_acc": accuracy(m, test_loader, "cpu")})
            print(label, curve[-1], flush=True)

        train_plain(model, loader, epochs, 3e-3, "cpu", lr_schedule="cosine", channels_last=True, on_epoch_end=record)
        final = curve[-1]
        results[label] = {"classifier": name, "kwargs": kwargs, "epochs": epochs,
                          "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "curve": curve,
                          "test_acc": final["test_acc"], "train_min": final["train_s"] / 60,
                          "acc_per_min": final["test_acc"] / (final["train_s"] / 60)}
    payload = {"results": results, "command": "python " + " ".join(sys.argv), "code": code, "seed": args.seed,
               "environment": environment(torch.device("cpu")), "wall_s": time.perf_counter() - t_start,
               "data": "cifar10 (offline: the lossy JPEG copy)"}
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(payload, indent=2))
    lines = ["| classifier | params (M) | epochs | train min | test acc | acc after each epoch |", "|---|---|---|---|---|---|"]
    for label, r in results.items():
        lines.append(f"| {label} | {r['params_m']:.2f} | {r['epochs']} | {r['train_min']:.1f} | {r['test_acc']:.4f} | "
                     + ", ".join(f"{c['test_acc']:.3f}" for c in r["curve"]) + " |")
    env = payload["environment"]
    lines += ["", f"`{payload['command']}`, seed {args.seed}, {env['cpu']} ({env['cpu_count']} cores), code "
              f"{code.get('commit', '?')[:7]}, wall {payload['wall_s'] / 60:.0f} min."]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
