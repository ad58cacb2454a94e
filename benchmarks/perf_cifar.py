"""Cost of each phase on CIFAR-10 geometry (3x32x32), in images/s, and the report's own CIFAR-10
schedule extrapolated from measured steps (issue 20); benchmarks/perf.py does the same for MNIST.

    python benchmarks/perf_cifar.py        # CPU; writes benchmarks/results/perf-cifar10.{json,md}

For each backbone (``airnet`` at widths 32, 48 and 64 with the preset ``cifar-airbench``: the
``airbench`` recipe, batch 1,024, bf16 where the CPU computes it natively, flip + 2-pixel
translation; ``resnet10-cifar`` at width 16 and the report's ``report32`` at width 64 with the
Adam preset ``cifar`` and crop+flip): a plain epoch (images/s of the ``standard`` loop), an
inversion step (generated samples/s through the frozen classifier and the generator's backward
pass) and a retraining epoch of :class:`InversionTrainer` (ID + garbage images/s), both with
the ``cifar`` preset's garbage settings.  Synthetic pixels: throughput does not depend on them.

    python benchmarks/perf_cifar.py --backbones airnet-w32,airnet-w64    # a subset
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from niood_plugin.bench.provenance import environment, git_state
from niood_plugin.devices import fast_bf16, tune_cpu_allocator
from niood_plugin.presets import create as create_trainer
from niood_plugin.data import TensorData, build_augmentation
from niood_plugin.files import atomic_write_text
from niood_plugin.models import build_classifier, to_channels_last
from niood_plugin.recipes import get_recipe
from niood_plugin.training import train_plain

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf import header, recipe, report_schedule  # noqa: E402  (benchmarks/perf.py: the same measurement for MNIST)

SHAPE, K = (3, 32, 32), 10
#: label -> (classifier, its keywords, preset: the optimisation recipe and batch size, augmentation)
BACKBONES = {**{f"airnet-w{w}": ("airnet", {"width": w}, "cifar-airbench", "flip-translate2") for w in (32, 48, 64)},
             "resnet10-cifar-w16": ("resnet10-cifar", {"width": 16}, "cifar", "crop-flip"),
             "report32-ncf64": ("report32", {"ncf": 64}, "cifar", "crop-flip")}


def fake_data(n: int, seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *SHAPE), generator=g, dtype=torch.uint8).float().div_(127.5).sub_(1.0)
    return TensorData(x, torch.randint(0, K, (n,), generator=g), "fake")


def phases(name: str, kwargs: dict, preset: str, augment: str, device, n_train: int) -> dict:
    """Plain epoch, then one inversion epoch (no negatives) with ``preset``'s recipe and batch
    size and the garbage settings every CIFAR preset shares, on ``n_train`` images."""
    data = fake_data(n_train)
    cfg = recipe(preset)
    loader = data.loader(batch_size=cfg.batch_size, shuffle=True, augment=build_augmentation(augment), device=device)
    torch.manual_seed(0)
    plain = to_channels_last(build_classifier(name, K, 3, **kwargs)).to(device)
    plain_s = train_plain(plain, loader, 1, cfg.lr, device, channels_last=True, recipe=cfg.recipe)[0]["time_s"]
    clf = build_classifier(name, K + 1, 3, **kwargs)
    trainer = create_trainer(preset, clf, K, SHAPE, epochs=1, negatives=None, device=device, progress=False)
    e = trainer.fit(loader)[1]
    samples = cfg.inversion_steps * cfg.samples_per_step
    return {"n_train": n_train, "preset": preset, "recipe": cfg.recipe, "augment": augment,
            "batch_size": cfg.batch_size, "fast_bf16": fast_bf16(device) and get_recipe(cfg.recipe).amp,
            "plain_epoch_s": plain_s, "plain_images_per_s": n_train / plain_s,
            "inversion_s": e["inversion_time_s"], "inversion_samples_per_s": samples / e["inversion_time_s"],
            "retrain_s": e["retrain_time_s"], "retrain_images_per_s": (n_train + e["garbage_size"]) / e["retrain_time_s"],
            "epoch_ratio": e["time_s"] / plain_s}


def render(r: dict) -> str:
    lines = header(r, "perf, CIFAR-10 geometry") + [
             "| backbone | recipe, batch, bf16 | plain epoch img/s | inversion samples/s | retraining img/s | "
             "inversion epoch / plain epoch |", "|---|---|---|---|---|---|"]
    for name, p in r["backbones"].items():
        lines.append(f"| {name} | {p['recipe']}, {p['batch_size']}, {'bf16' if p['fast_bf16'] else 'fp32'} | "
                     f"{p['plain_images_per_s']:.0f} | "
                     f"{p['inversion_samples_per_s']:.0f} | {p['retrain_images_per_s']:.0f} | {p['epoch_ratio']:.2f} |")
    lines += ["", f"Phases measured on {next(iter(r['backbones'].values()))['n_train']} synthetic images, preset "
              "`cifar`'s garbage (100 inversion steps x 220 samples, 2,200 garbage images per epoch), no negatives.", ""]
    if "report_cifar10_schedule" not in r:
        return "\n".join(lines) + "\n"
    rep = r["report_cifar10_schedule"]
    lines += [
              f"The report's CIFAR-10 schedule here (report32, ncf = ngf = 64, 100 steps x 11,000 samples, batch 32): "
              f"one inversion step {rep['inversion_step_s']:.1f} s, classifier {rep['classifier_images_per_s']:.0f} "
              f"img/s, first epoch {rep['first_epoch_s'] / 60:.0f} min, {rep['epochs']} epochs about "
              f"{rep['total_h']:.1f} h (extrapolated from measured steps)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results/perf-cifar10")
    ap.add_argument("--n-train", type=int, default=10_000, help="ID images per measured epoch")
    ap.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated labels: " + ", ".join(BACKBONES))
    ap.add_argument("--no-report-schedule", action="store_true", help="skip the report's CIFAR-10 schedule")
    args = ap.parse_args()
    labels = [b for b in args.backbones.split(",") if b]
    unknown = sorted(set(labels) - set(BACKBONES))
    if unknown:
        ap.error(f"unknown backbone(s) {unknown}; choose from {', '.join(BACKBONES)}")
    device = torch.device(args.device)
    tune_cpu_allocator()  # as niood-bench does
    t0, code = time.perf_counter(), git_state()
    result = {"backbones": {label: phases(*BACKBONES[label], device, args.n_train) for label in labels},
              "environment": environment(device), "command": "python " + " ".join(sys.argv), "code": code}
    if not args.no_report_schedule:
        result["report_cifar10_schedule"] = report_schedule(device, "cifar10")
    result["wall_s"] = time.perf_counter() - t0
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=2))
    atomic_write_text(out.with_suffix(".md"), render(result))
    print(render(result))


if __name__ == "__main__":
    main()
