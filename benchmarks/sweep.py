"""Hyperparameter sweep of the inversion method: many trainer settings, one table.

Each setting trains the report28 classifier with :class:`InversionTrainer` exactly as
``niood-bench`` does (same loader, seed, model construction) and scores it with UE
(``combined``) and the garbage probability against every OOD set.  Settings run in parallel
worker processes, which is what makes a sweep affordable on a GPU; on the 2-core CPU use
``--jobs 1``.  The sweep chooses settings; the committed benchmark numbers come from
``run_mnist.sh`` / ``run_fashionmnist.sh`` on the CPU, not from here.

    python benchmarks/sweep.py --id fashionmnist --grid fmnist --device cuda --jobs 6 \\
        --out benchmarks/results/sweep/fmnist.jsonl

``--ood-file`` takes a ``.pt`` of the real OOD sets already converted to the ID geometry
({name: half tensor [N, C, H, W] in [-1, 1]}), made by ``--make-ood-file`` from the data
root: for a machine that holds only the ID set.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from niood_plugin import InversionTrainer, UEDetector
from niood_plugin.bench.evaluate import ood_metrics
from niood_plugin.data import load_dataset
from niood_plugin.models import MergeGarbage, build_classifier, to_channels_last
from niood_plugin.trainer import InversionConfig

OOD_SETS = {"mnist": ["fashionmnist", "cifar10-jpeg", "tinyimagenet", "gaussian", "uniform"],
            "fashionmnist": ["mnist", "cifar10-jpeg", "tinyimagenet", "gaussian", "uniform"]}

# name -> overrides of the `fast` preset; "seed" and "width" (the classifier's ncf, default 32
# as in niood-bench) are sweep keys, not trainer fields.
def _seeds(variants: dict[str, dict[str, Any]], seeds: dict[str, tuple[int, ...]],
           default: tuple[int, ...] = (0,)) -> dict[str, dict[str, Any]]:
    return {f"{name}-s{seed}": {**over, "seed": seed} for name, over in variants.items()
            for seed in seeds.get(name, default)}


_RECIPE_BASE = {"novelty": 1.0, "weighted_ce": False}  # the recipe without its negatives
_RECIPE_WARP = {**_RECIPE_BASE, "jigsaw": 1.0, "jigsaw_from": 9, "negatives": "warp"}  # the 10-epoch FMNIST benchmark's


_COMMON = {
    "base": {},
    "lr2e-3": {"classifier_lr": 2e-3},
    "garbage6600": {"garbage_per_epoch": 6_600},
    "lr2e-3-garbage6600": {"classifier_lr": 2e-3, "garbage_per_epoch": 6_600},
    "per-class": {"garbage_classes": "per-class"},
    "width48": {"width": 48},
}
GRIDS: dict[str, dict[str, dict[str, Any]]] = {
    # first sweep (ncf 64, one seed each)
    "fmnist-ncf64": {name: {**over, "width": 64} for name, over in {
        "base": {}, "base-seed1": {"seed": 1}, "base-seed2": {"seed": 2},
        "per-class": {"garbage_classes": "per-class"}, "gamma10": {"gamma": 10.0}, "delta10": {"delta": 10.0},
        "alpha1": {"alpha": 1.0}, "matrix": {"conditioning": "matrix"},
        "vector-matrix": {"conditioning": "vector-matrix"}, "garbage6600": {"garbage_per_epoch": 6_600},
        "steps200": {"inversion_steps": 200}, "temp1": {"vector_temperature": 1.0},
        "pool20k": {"pool_capacity": 20_000}, "fifo": {"pool_policy": "fifo"},
        "ngf64": {"generator_width": 64}, "lr2e-3": {"classifier_lr": 2e-3},
        "noise-only": {"garbage_source": "noise"},
        "per-class-gamma10": {"garbage_classes": "per-class", "gamma": 10.0}}.items()},
    # second sweep (ncf 32 as in the benchmark, seeds replicated)
    "fmnist": _seeds({**_COMMON, "fifo": {"pool_policy": "fifo"}, "epochs12": {"epochs": 12}},
                     {"base": (0, 1, 2), **{n: (0, 1) for n in _COMMON if n != "base"}}),
    "mnist": _seeds({**_COMMON, "lr5e-4": {"classifier_lr": 5e-4}, "batch64": {"batch_size": 64},
                     "pretrain2": {"pretrain_epochs": 2}},
                    {"base": (0, 1, 2), **{n: (0, 1) for n in _COMMON if n != "base"}}),
    # third sweep: the learning rate, more seeds (for both --id)
    "lr": _seeds({"lr2e-3": {"classifier_lr": 2e-3}, "lr3e-3": {"classifier_lr": 3e-3},
                  "lr2e-3-batch64": {"classifier_lr": 2e-3, "batch_size": 64}},
                 {"lr2e-3": (2,), "lr3e-3": (0, 1, 2), "lr2e-3-batch64": (0, 1)}),
    # the rows of benchmarks/ablations.sh at the full budget, on the current fast preset
    "ablate": _seeds({
        "base": {}, "noise-only": {"garbage_source": "noise"},
        "report-like": {"classifier_lr": 1e-4, "lr_schedule": "constant", "batch_size": 32,
                        "vector_temperature": 1.0, "garbage_per_epoch": 0, "generator_width": 64,
                        "pool_policy": "all", "pool_capacity": None},
        "temperature-1": {"vector_temperature": 1.0}, "cond-matrix": {"conditioning": "matrix"},
        "cond-vector-matrix": {"conditioning": "vector-matrix"}, "loss-ce+kl": {"alpha": 1.0},
        "loss-ce+kl+cos": {"alpha": 1.0, "gamma": 1.0}, "loss-ce+kl+cos+orth": {"alpha": 1.0, "gamma": 1.0, "delta": 1.0},
        "pool-fifo-2000": {"pool_policy": "fifo", "pool_capacity": 2_000},
        "garbage-per-class": {"garbage_classes": "per-class"}},
        {"report-like": (0,), **{n: (0, 1) for n in ("base", "noise-only", "temperature-1", "cond-matrix",
                                                     "cond-vector-matrix", "loss-ce+kl", "loss-ce+kl+cos",
                                                     "loss-ce+kl+cos+orth", "pool-fifo-2000", "garbage-per-class")}}),
    # fourth sweep (CPU, screening): the novelty term, pushing generated features off their class mean
    "novelty": _seeds({"base": {}, "novelty1": {"novelty": 1.0}, "novelty3": {"novelty": 3.0},
                       "novelty10": {"novelty": 10.0}}, {"base": (0, 1, 2), "novelty1": (0, 1, 2)}),
    # fifth sweep (CPU): jigsaw negatives in the garbage class (base rows: the novelty grid's)
    # (unweighted: weighted_ce=False, so the garbage class weighs by its sample count, not as 1/(K+1))
    "jigsaw": _seeds({"jigsaw0.5": {"jigsaw": 0.5}, "jigsaw0.25": {"jigsaw": 0.25},
                      "jigsaw0.5-novelty1": {"jigsaw": 0.5, "novelty": 1.0},
                      "jigsaw0.5-unweighted": {"jigsaw": 0.5, "weighted_ce": False},
                      "jigsaw0.5-novelty1-unweighted": {"jigsaw": 0.5, "novelty": 1.0, "weighted_ce": False},
                      "jigsaw0.5-novelty1-unweighted-headonly": {"jigsaw": 0.5, "novelty": 1.0, "weighted_ce": False,
                                                                 "jigsaw_head_only": True},
                      "jigsaw0.5-novelty1-unweighted-from9": {"jigsaw": 0.5, "novelty": 1.0, "weighted_ce": False,
                                                              "jigsaw_from": 9}},
                     {"jigsaw0.5": (0, 1, 2), "jigsaw0.5-novelty1-unweighted": (0, 1, 2),
                      "jigsaw0.5-novelty1-unweighted-from9": (0, 1, 2)}),
    # sixth sweep (CPU): which parts of the late-negatives recipe do the work.  Settings that
    # differ only in jigsaw_from >= 6 share their first epochs, so with `--ckpt-dir` and
    # `--branch-at 5` each seed trains those once per family (default; unweighted; recipe)
    "jigsaw-late": _seeds({"base": {}, "jigsaw0.5-from9": {"jigsaw": 0.5, "jigsaw_from": 9},
                           "jigsaw0.5-from8": {"jigsaw": 0.5, "jigsaw_from": 8},
                           "jigsaw0.5-from6": {"jigsaw": 0.5, "jigsaw_from": 6},
                           "jigsaw1-from9": {"jigsaw": 1.0, "jigsaw_from": 9},
                           "jigsaw0.5-from10": {"jigsaw": 0.5, "jigsaw_from": 10},
                           "jigsaw0.5-grid7-from9": {"jigsaw": 0.5, "jigsaw_grid": 7, "jigsaw_from": 9},
                           "jigsaw0.5-grid2-from9": {"jigsaw": 0.5, "jigsaw_grid": 2, "jigsaw_from": 9},
                           # the committed recipe (novelty 1, unweighted CE) and its neighbours
                           "novelty1-unweighted": _RECIPE_BASE,
                           "recipe": {**_RECIPE_BASE, "jigsaw": 0.5, "jigsaw_from": 9},
                           "recipe-jigsaw1": {**_RECIPE_BASE, "jigsaw": 1.0, "jigsaw_from": 9},
                           "recipe-from8": {**_RECIPE_BASE, "jigsaw": 0.5, "jigsaw_from": 8},
                           # seventh sweep: more negatives than ID images (jigsaw > 1)
                           "recipe-jigsaw2": {**_RECIPE_BASE, "jigsaw": 2.0, "jigsaw_from": 9},
                           "recipe-jigsaw4": {**_RECIPE_BASE, "jigsaw": 4.0, "jigsaw_from": 9},
                           # ... and quarter-turned ID images instead of, or beside, the jigsaw ones
                           "recipe-rotate1": {**_RECIPE_BASE, "jigsaw": 1.0, "jigsaw_from": 9, "negatives": "rotate"},
                           "recipe-jigsaw1-rotate1": {**_RECIPE_BASE, "jigsaw": 2.0, "jigsaw_from": 9,
                                                      "negatives": "jigsaw+rotate"},
                           "recipe-jigsaw2-rotate2": {**_RECIPE_BASE, "jigsaw": 4.0, "jigsaw_from": 9,
                                                      "negatives": "jigsaw+rotate"},
                           # eighth sweep: ... leaving out negatives the classifier still takes for their source class (seed 2)
                           "recipe-jigsaw2-rotate2-spare0.5": {**_RECIPE_BASE, "jigsaw": 4.0, "jigsaw_from": 9,
                                                               "negatives": "jigsaw+rotate", "negatives_spare": 0.5},
                           # ninth sweep: ID images bent along a smooth random field (warp), alone and beside jigsaw
                           "recipe-warp1": _RECIPE_WARP,
                           "recipe-jigsaw1-warp1": {**_RECIPE_WARP, "jigsaw": 2.0, "negatives": "jigsaw+warp"},
                           "recipe-warp0.5": {**_RECIPE_WARP, "jigsaw": 0.5},
                           "recipe-warp1-headonly": {**_RECIPE_WARP, "jigsaw_head_only": True},
                           "recipe-warp1-spare0.5": {**_RECIPE_WARP, "negatives_spare": 0.5},
                           "recipe-warp1-from10": {**_RECIPE_WARP, "jigsaw_from": 10},
                           # tenth sweep (--id mnist): warped negatives on the library defaults, for digits
                           "warp1-from9": {"jigsaw": 1.0, "jigsaw_from": 9, "negatives": "warp"},
                           "unweighted": {"weighted_ce": False},
                           "unweighted-jigsaw0.5-from9": {"weighted_ce": False, "jigsaw": 0.5, "jigsaw_from": 9},
                           "unweighted-jigsaw1-from9": {"weighted_ce": False, "jigsaw": 1.0, "jigsaw_from": 9}},
                          {}, default=(0, 1, 2)),
}


def make_ood_file(id_name: str, data_root: str | None, limit: int, path: str) -> None:
    shape = load_dataset(id_name, "test", data_root, limit=10).image_shape
    sets = {name: load_dataset(name, "test", data_root, image_shape=shape, limit=limit).x.half()
            for name in OOD_SETS[id_name] if name not in ("gaussian", "uniform")}
    torch.save(sets, path)


def _prefix_path(args: dict[str, Any], trainer: InversionTrainer, epoch: int, width: int) -> Path:
    """Where the state after ``epoch`` of every run that agrees with this one so far is kept."""
    what = f"{trainer.run_signature(epoch)} width={width} id={args['id']} limit={args['train_limit']}"
    return Path(args["ckpt_dir"]) / f"{epoch}-{hashlib.sha256(what.encode()).hexdigest()[:16]}.pt"


def _split(overrides: dict[str, Any], seed: int, epochs: int) -> tuple[dict[str, Any], int, int, int]:
    """A grid entry as (trainer overrides, seed, classifier width, epochs), defaults filled in."""
    over = dict(overrides)
    return over, over.pop("seed", seed), over.pop("width", 32), over.pop("epochs", epochs)


def _phases(names: list[str], grid: dict[str, dict[str, Any]], branch_at: int | None, seed: int,
            epochs: int) -> list[list[str]]:
    """With ``branch_at``: first one run per shared prefix (it writes the prefix checkpoint),
    then the others (they resume from it).  Without: one phase."""
    if branch_at is None:
        return [names]
    first: dict[str, str] = {}
    for n in names:
        over, run_seed, width, run_epochs = _split(grid[n], seed, epochs)
        ident = InversionConfig.from_preset("fast", epochs=run_epochs, **over).identity(branch_at)
        first.setdefault(json.dumps([ident, run_seed, width], sort_keys=True), n)
    lead = list(first.values())
    return [lead, [n for n in names if n not in lead]]


def build_trainer(overrides: dict[str, Any], seed: int, width: int, epochs: int, k: int,
                  shape: tuple[int, ...], device: torch.device) -> InversionTrainer:
    """The trainer (and its untrained classifier) of one grid entry, as ``run_one`` trains it."""
    cfg = InversionConfig.from_preset("fast", epochs=epochs, **overrides)
    outputs = 2 * k if cfg.garbage_classes == "per-class" else k + 1
    torch.manual_seed(seed)
    clf = build_classifier("report28", outputs, shape[0], ncf=width)
    if cfg.channels_last:
        clf = to_channels_last(clf)
    return InversionTrainer(clf, k, shape, device=device, seed=seed, progress=False, **asdict(cfg))


def run_one(name: str, overrides: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(args["threads"])
    overrides, seed, width, epochs = _split(overrides, args["seed"], args["epochs"])
    device = torch.device(args["device"])
    train = load_dataset(args["id"], "train", args["data_root"], limit=args["train_limit"], seed=seed)
    test = load_dataset(args["id"], "test", args["data_root"], seed=seed)
    shape, k = train.image_shape, train.num_classes
    pre = torch.load(args["ood_file"], weights_only=True) if args["ood_file"] else {}
    ood = {}
    for o in OOD_SETS[args["id"]]:
        if o in pre:
            ood[o] = pre[o].float()
        else:
            ood[o] = load_dataset(o, "test", args["data_root"], image_shape=shape, limit=args["test_limit"],
                                  seed=seed).x
    trainer = build_trainer(overrides, seed, width, epochs, k, shape, device)
    cfg, clf = trainer.config, trainer.classifier
    fit_kw: dict[str, Any] = {}
    if args["ckpt_dir"]:  # resume from the latest epoch this run shares with one already trained
        cached = [e for e in range(epochs, -1, -1) if _prefix_path(args, trainer, e, width).is_file()]
        if cached:
            fit_kw["resume"] = _prefix_path(args, trainer, cached[0], width)
        fit_kw["checkpoint"] = Path(args["ckpt_dir"]) / f"tmp-{os.getpid()}-{{epoch}}.pt"
    t0 = time.perf_counter()
    history = trainer.fit(train.loader(batch_size=cfg.batch_size, shuffle=True, seed=seed), **fit_kw)
    train_s = time.perf_counter() - t0
    if args["ckpt_dir"]:  # keep every epoch under the key of what determined it
        for e in range(epochs + 1):
            done = Path(str(fit_kw["checkpoint"]).replace("{epoch}", str(e)))
            if done.is_file():
                done.replace(_prefix_path(args, trainer, e, width))
    view = (MergeGarbage(clf, k) if cfg.garbage_classes == "per-class" else clf).eval()

    @torch.inference_mode()
    def logits(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([view(x[i:i + 1024].to(device)).float().cpu() for i in range(0, len(x), 1024)])

    lid = logits(test.x)
    acc = float((lid[:, :k].argmax(1) == test.y).float().mean())
    row: dict[str, Any] = {"name": name, "overrides": overrides, "seed": seed, "epochs": epochs, "width": width,
                           "id_acc": acc, "train_s": round(train_s, 1)}
    if "resume" in fit_kw:  # train_s then covers the epochs after the shared prefix only
        row["resumed_after_epoch"] = cached[0]
    for det, variant in (("ue", "combined"), ("garbage", "garbage")):
        s_id = UEDetector.score(lid, k, variant).numpy()
        per = {o: ood_metrics(s_id, UEDetector.score(logits(x), k, variant).numpy()) for o, x in ood.items()}
        row[det] = {o: round(m["auroc"], 4) for o, m in per.items()}
        row[det]["avg"] = round(sum(m["auroc"] for m in per.values()) / len(per), 4)
        row[det]["fpr95_avg"] = round(sum(m["fpr95"] for m in per.values()) / len(per), 4)
    row["last_epoch"] = {key: history[-1].get(key) for key in ("inversion_accuracy", "train_id_acc", "pool_size")}
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--id", default="fashionmnist", choices=sorted(OOD_SETS))
    p.add_argument("--grid", default="fmnist", choices=sorted(GRIDS))
    p.add_argument("--only", default="", help="comma-separated setting names (default: the whole grid)")
    p.add_argument("--data-root", default=os.environ.get("NIOOD_DATA"))
    p.add_argument("--ood-file", default=None)
    p.add_argument("--make-ood-file", default=None, help="write the converted OOD sets here and exit")
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--test-limit", type=int, default=2_000)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=False)
    p.add_argument("--ckpt-dir", default=None,
                   help="keep every epoch's checkpoint here, keyed by what determined it, and start each "
                        "run from the latest epoch it shares with a run already trained (exact: see "
                        "InversionTrainer.run_signature); benchmarks/results/sweep/prefixes is git-ignored")
    p.add_argument("--branch-at", type=int, default=None,
                   help="with --ckpt-dir: of the runs that agree up to this epoch (0 = pre-training), "
                        "train one first, so the others start from its checkpoint")
    a = p.parse_args()
    if a.make_ood_file:
        make_ood_file(a.id, a.data_root, a.test_limit, a.make_ood_file)
        return
    grid = GRIDS[a.grid]
    names = [n for n in a.only.split(",") if n] or list(grid)
    args = {"id": a.id, "data_root": a.data_root, "ood_file": a.ood_file, "device": a.device, "epochs": a.epochs,
            "seed": a.seed, "train_limit": a.train_limit, "test_limit": a.test_limit, "threads": a.threads,
            "ckpt_dir": a.ckpt_dir}
    if a.branch_at is not None and not a.ckpt_dir:
        p.error("--branch-at needs --ckpt-dir")
    if a.ckpt_dir:
        os.makedirs(a.ckpt_dir, exist_ok=True)
    env = {"host": platform.node(), "device": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else
           platform.processor() or platform.machine(), "torch": torch.__version__, "jobs": a.jobs}
    t0 = time.perf_counter()
    out = open(a.out, "a") if a.out else None
    with ProcessPoolExecutor(max_workers=a.jobs, mp_context=get_context("spawn")) as pool:
        for phase in _phases(names, grid, a.branch_at, a.seed, a.epochs):
            futures = {pool.submit(run_one, n, grid[n], args): n for n in phase}
            for fut in as_completed(futures):
                row = fut.result()
                row["env"] = env
                line = json.dumps(row)
                print(f"{row['name']:>20}  acc {row['id_acc']:.4f}  ue avg {row['ue']['avg']:.4f}  "
                      f"garbage avg {row['garbage']['avg']:.4f}  ue {row['ue']}  {row['train_s']} s", flush=True)
                if out:
                    out.write(line + "\n")
                    out.flush()
    print(f"sweep wall {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
