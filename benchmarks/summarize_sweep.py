"""One Markdown table per sweep file: python benchmarks/summarize_sweep.py [DIR].

Reads ``DIR/*.jsonl`` (rows written by ``benchmarks/sweep.py``), groups the rows of a setting
over its seeds and writes ``DIR/sweep.md`` with the mean and the range of each number, so a
difference can be read against the seed-to-seed spread.
"""
from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from niood_plugin.bench.report import md_table
from niood_plugin.files import atomic_write_text

NEAR = {"fashionmnist": "mnist", "mnist": "fashionmnist"}   # the near-OOD column of each ID set

COMMANDS = {  # file stem -> the sweep.py arguments that wrote it (GPU files: plus --device cuda --threads 1)
    "fmnist-ncf64": "--id fashionmnist --grid fmnist-ncf64 --jobs 9",
    "fmnist": "--id fashionmnist --grid fmnist --jobs 8",
    "mnist": "--id mnist --grid mnist --jobs 8",
    "fmnist-lr": "--id fashionmnist --grid lr --jobs 6",
    "mnist-lr": "--id mnist --grid lr --jobs 6",
    "mnist-ablate": "--id mnist --grid ablate --jobs 11",
    "fmnist-ablate": "--id fashionmnist --grid ablate --jobs 12 --only <all but report-like; seed 1 only for "
                     "cond-vector-matrix and garbage-per-class>",
    # CPU screening of the novelty term (one worker, 2 threads)
    "fmnist-novelty-cpu-e4": "--id fashionmnist --grid novelty --epochs 4 --only base-s0,novelty1-s0,novelty10-s0",
    "fmnist-novelty-cpu": "--id fashionmnist --grid novelty --only <see the table's settings>",
    # CPU: jigsaw negatives (its base rows are the novelty file's, same settings and seeds)
    "fmnist-jigsaw-cpu": "--id fashionmnist --grid jigsaw --only <see the table's settings> (jigsaw0.5-s0 alone "
                         "with 2 threads; from9-s1 with --threads 1 beside a benchmark run, from9-s2 alone; the others two at "
                         "a time: --jobs 2 --threads 1; train s is inflated by the sharing)",
    # CPU: late jigsaw negatives, with and without the recipe's novelty term and unweighted CE;
    # runs resume from the latest epoch they share with one already trained (exact on the CPU)
    "fmnist-jigsaw-late-cpu": "--id fashionmnist --grid jigsaw-late --ckpt-dir benchmarks/results/sweep/prefixes "
                              "--branch-at 5 --only <settings of one seed> (alone, 2 threads; seed 0 with "
                              "--branch-at 8, its base run slowed by a stray second copy for 13 min; "
                              "jigsaw0.5-from9-s0 also whole, without --ckpt-dir; a resumed row's train s "
                              "counts only the epochs after the one it resumed from; the jigsaw > 1 and rotate "
                              "rows, the negatives_spare row and the warp rows: --only <a few settings of seeds 0-2>, each "
                              "resumed after epoch 8, or after epoch 9 for recipe-warp1-from10)",
    # CPU, MNIST-ID: warped negatives on the defaults (whole run, alone, 2 threads)
    "mnist-warp-cpu": "--id mnist --grid jigsaw-late --only warp1-from9-s1",
}


def _stat(values: list[float], fmt: str = ".4f") -> str:
    mean = sum(values) / len(values)
    if len(values) == 1:
        return format(mean, fmt)
    return f"{mean:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def _id_of(row: dict) -> str:
    return "mnist" if "fashionmnist" in row["ue"] else "fashionmnist"


def _train_s(rows: list[dict]) -> str:
    full = [r["train_s"] for r in rows if "resumed_after_epoch" not in r]
    tails = [r for r in rows if "resumed_after_epoch" in r]
    out = _stat(full, ".0f") if full else ""
    if tails:
        after = "/".join(str(e) for e in sorted({r["resumed_after_epoch"] for r in tails}))
        out += (" + " if out else "") + f"{_stat([r['train_s'] for r in tails], '.0f')} after epoch {after}"
    return out


def table(rows: list[dict]) -> str:
    """Rows of one ID set and width, grouped by setting over seeds."""
    groups: dict[str, list[dict]] = defaultdict(list)
    seen = set()
    for r in rows:
        if (r["name"], r["seed"]) in seen:
            continue  # the same run again (see branch_check()): counted once
        seen.add((r["name"], r["seed"]))
        groups[re.sub(r"-s(eed)?\d+$", "", r["name"])].append(r)
    near = NEAR[_id_of(rows[0])]
    out = []
    for name in sorted(groups, key=lambda n: (n != "base", n)):
        rs = groups[name]
        out.append([name, ",".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"])),
                    _stat([r["id_acc"] for r in rs]), _stat([r["ue"]["avg"] for r in rs]),
                    _stat([r["ue"][near] for r in rs]), _stat([r["ue"]["fpr95_avg"] for r in rs]),
                    _stat([r["garbage"]["avg"] for r in rs]), _stat([r["garbage"][near] for r in rs]),
                    _train_s(rs)])
    return md_table(["setting", "seeds", "ID acc", "UE avg AUROC", f"UE AUROC {near}", "UE avg FPR95",
                     "garbage avg AUROC", f"garbage AUROC {near}", "train s"], out) + "\n"


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/sweep")
    rows, runs = [], []
    for stem, cmd in COMMANDS.items():
        path = root / f"{stem}.jsonl"
        if not path.is_file():
            continue
        part = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        env = part[0]["env"]
        gpu = "NVIDIA" in env["device"]
        flags = " --device cuda --threads 1" if gpu else ""
        runs.append(f"- `{stem}.jsonl`: `python benchmarks/sweep.py {cmd}{flags}` "
                    f"({len(part)} runs) on {env['device'] if gpu else 'the 2-core CPU'}, torch {env['torch']}")
        # the first sweep predates the width key; the ablate grids ran after the preset's
        # classifier_lr moved from 1e-3 to 3e-3 (the other grids chose that move), as did the CPU files
        preset_lr = "3e-3" if stem.endswith("-ablate") or not gpu else "1e-3"
        # GPU grids mix epoch counts within a setting list (the name says so); CPU files are
        # grouped by their epoch count
        rows += [{**r, "width": r.get("width", 64), "preset_lr": preset_lr, "hw": "GPU" if gpu else "CPU",
                  "group_epochs": 10 if gpu else r["epochs"]} for r in part]
    groups: dict[tuple[str, int, str, str, int], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(_id_of(r), r["width"], r["preset_lr"], r["hw"], r["group_epochs"])].append(r)
    text = ("# Hyperparameter sweep (for choosing settings)\n\n"
            "Each row: `benchmarks/sweep.py` trains the inversion method as `niood-bench` does (fast "
            "preset, 10 epochs unless the name says otherwise) and scores it with UE (combined) and the "
            "garbage probability on 2,000 images per OOD set. Numbers are the mean over the seeds listed, "
            "(min-max) where there are several; `train s` is with 6-9 runs sharing the GPU, or one run on "
            "the 2-core CPU for the CPU sections. These runs "
            "choose settings; the committed benchmark numbers are the CPU runs. "
            "Summarised by `python benchmarks/summarize_sweep.py` from:\n\n" + "\n".join(runs) + "\n\n")
    for (id_name, width, lr, hw, epochs), rs in sorted(
            groups.items(), key=lambda kv: (kv[0][3] != "GPU", kv[0][0] != "mnist", kv[0][2] != "3e-3", kv[0][1] != 32,
                                            -kv[0][4])):
        if hw == "CPU":
            what = f"CPU screening of the novelty term and jigsaw negatives, {epochs} epochs"
        else:
            what = "the ablations on the current defaults" if lr == "3e-3" else "choosing the defaults"
        text += (f"## {id_name} in-distribution, classifier ncf {width}, fast preset with classifier_lr {lr} "
                 f"({what})\n\n" + table(rs) + "\n")
    text += repeats(root) + branch_check(rows)
    atomic_write_text(root / "sweep.md", text)


# The same settings and seed run twice: `lr3e-3` over the old preset is today's `base`.
REPEATS = [("fmnist-lr", "lr3e-3", "fmnist-ablate", "base"), ("mnist-lr", "lr3e-3", "mnist-ablate", "base")]


def repeats(root: Path) -> str:
    """Identical runs from different calls: how far GPU non-determinism (cuDNN kernels) moves them."""
    out = []
    for stem_a, name_a, stem_b, name_b in REPEATS:
        pa, pb = root / f"{stem_a}.jsonl", root / f"{stem_b}.jsonl"
        if not (pa.is_file() and pb.is_file()):
            continue
        a = {r["name"]: r for r in map(json.loads, pa.read_text().splitlines())}
        b = {r["name"]: r for r in map(json.loads, pb.read_text().splitlines())}
        for seed in range(3):
            ra, rb = a.get(f"{name_a}-s{seed}"), b.get(f"{name_b}-s{seed}")
            if ra and rb:
                out.append([_id_of(ra), seed, f"{ra['id_acc']:.4f} / {rb['id_acc']:.4f}",
                            f"{ra['ue']['avg']:.4f} / {rb['ue']['avg']:.4f}",
                            f"{ra['garbage']['avg']:.4f} / {rb['garbage']['avg']:.4f}"])
    if not out:
        return ""
    return ("## The same run twice (GPU non-determinism)\n\n`lr3e-3` in the lr grid and `base` in the ablate "
            "grid are the same settings and seed, run in different calls. cuDNN's kernels are not "
            "deterministic, so on the GPU a seed does not fix the result; read differences smaller than "
            "these as noise.\n\n" + md_table(["ID set", "seed", "ID acc (lr grid / ablate grid)", "UE avg AUROC",
                                                "garbage avg AUROC"], out) + "\n")


def branch_check(rows: list[dict]) -> str:
    """CPU runs made more than once: whole, in another file, or from a shared prefix checkpoint."""
    same: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["hw"] == "CPU":
            same[(_id_of(r), r["name"], r["seed"], r["epochs"], r["width"])].append(r)
    out = []
    for (id_name, name, _, _, _), rs in same.items():
        if len(rs) > 1:
            how = " / ".join(f"after epoch {r['resumed_after_epoch']}" if "resumed_after_epoch" in r else "whole"
                             for r in rs)
            out.append([id_name, name, how] + [" / ".join(f"{v:.4f}" for v in vals) for vals in (
                [r["id_acc"] for r in rs], [r["ue"]["avg"] for r in rs], [r["garbage"]["avg"] for r in rs])])
    if not out:
        return ""
    return ("\n## The same CPU run more than once\n\nA run started from a shared checkpoint (`--ckpt-dir`, "
            "`--branch-at`: it trains only the epochs after the one named) or repeated in another file. On "
            "the CPU, with the same number of threads, the numbers must be the same:\n\n"
            + md_table(["ID set", "setting", "runs", "ID acc", "UE avg AUROC", "garbage avg AUROC"], out) + "\n")


if __name__ == "__main__":
    main()
