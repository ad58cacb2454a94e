"""Results tables for README.md and docs/results.md, from the committed results.json files.

    python benchmarks/results_tables.py              # rewrite the tables between the markers
    python benchmarks/results_tables.py --print      # print them instead
    python benchmarks/results_tables.py --check      # exit 1 if a file is out of date

A table lives between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` in a Markdown
file; this script replaces what is between the two lines and leaves the rest alone. Names:

- ``DATASET`` (``mnist``, ``fashionmnist``): the headline table, one row per seed: our
  method's best detector and its UE against the plain model's best post-hoc detector
  (average AUROC over the run's OOD sets), with the command, machine and commit of the runs;
- ``DATASET:detail``: per-OOD-set AUROC of the seed-0 run, for the main detectors;
- ``DATASET:methods``: one row per method of the seed-0 run: its own detector (ours the default,
  a peer its paper's score) and its best post-hoc detector on these sets, with near-OOD AUROC,
  ID accuracy and time;
- ``cifar10:report``: the report's published CIFAR-10 AUROC against our faithful run of its
  settings (``benchmarks/results/cifar10-report``) and our main configuration, on shared sets;
- ``default-run``: the default ``niood-bench run`` (``benchmarks/results/default-run``);
- ``cifar10:recipe``: the CIFAR-10 training recipe's points (``benchmarks/results/cifar10-recipe/*``:
  the plain model against Tiny ImageNet's validation part): passes, training minutes, ID
  accuracy, validation AUROC, numerics, machine and commit of each.

A run is the directory ``benchmarks/results/DATASET`` (seed 0, the config's ``out``) or
``DATASET-seedN``; the methods table adds the seed-0 runs of single methods under
``DATASET-peers/*`` (``BENCHES``: each benchmark's method and detector of ours). The tables are
built with the standard library alone, except ``cifar10:recipe``, which asks the installed
package for each run's preset recipe and its numerics: run this where ``niood_plugin`` imports.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FILES = [ROOT / "README.md", ROOT / "docs" / "results.md", ROOT / "docs" / "research.md"]
OURS, PLAIN = "inversion", "standard"
DEFAULT = "garbage"  # UEDetector's default for a garbage-class model (research/results/README.md)


@dataclass(frozen=True)
class Bench:
    """How a benchmark's tables read its runs: ``ours`` (the method that is ours there), its
    ``default`` detector (chosen on validation data) and the ``near`` OOD set of its column."""
    ours: str = OURS
    default: str = DEFAULT
    near: Optional[str] = None


#: the benchmarks with tables: ``NAME`` is the folder ``benchmarks/results/NAME[-seedN]``
BENCHES = {"mnist": Bench(), "fashionmnist": Bench(), "cifar10": Bench(near="tinyimagenet"),
           # today's CIFAR default (issues 32 and 33): ours as a fine-tune of the plain model, scored by
           # Energy over its K ID logits (chosen on validation with far OOD; docs/research.md)
           "cifar10-airnet": Bench(ours="inversion-ft", default="energy", near="tinyimagenet-test")}
DATASETS = tuple(BENCHES)
DETAIL_DETECTORS = ("ue", "ue-id", "garbage", "msp", "energy", "mahalanobis", "knn", "vim", "bal")
# per method, the detectors of the detail table (the peers' other rows repeat the plain model's)
DETAIL_BY_METHOD = {OURS: DETAIL_DETECTORS, "inversion-ft": DETAIL_DETECTORS,
                    PLAIN: ("msp", "energy", "mahalanobis", "knn", "vim"),
                    "fig": ("msp", "mahalanobis"), "bal": ("bal", "mahalanobis"),
                    "logitnorm": ("msp", "energy", "mahalanobis", "knn", "vim"),
                    "vos": ("msp", "energy", "mahalanobis", "knn", "vim")}
#: each method's own detector: ours the default chosen on validation data, a peer its paper's score
OWN_DETECTOR = {PLAIN: "msp", "fig": "msp", "bal": "bal", "logitnorm": "msp", "vos": "energy"}
MARKER = re.compile(r"(<!-- results:(?P<name>[\w:-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


def load(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


def runs_of(dataset: str) -> list[tuple[int, Path, dict[str, Any]]]:
    """(seed, directory, results) of every committed run of ``dataset``, by seed."""
    out = []
    for d in sorted(RESULTS.iterdir()):
        if re.fullmatch(rf"{re.escape(dataset)}(-seed\d+)?", d.name) and (d / "results.json").is_file():
            res = load(d)
            out.append((int(res["config"].get("seed", 0)), d, res))
    return sorted(out, key=lambda t: t[0])


def avg_auroc(res: dict[str, Any], method: str) -> dict[str, tuple[float, float]]:
    """detector -> (average AUROC over the OOD sets, lowest per-set AUROC) for ``method``."""
    per: dict[str, list[float]] = {}
    for row in res["results"]:
        if row["method"] == method:
            per.setdefault(row["detector"], []).append(row["auroc"])
    return {det: (statistics.fmean(v), min(v)) for det, v in per.items()}


def best(scores: dict[str, tuple[float, float]]) -> tuple[str, float, float]:
    det = max(scores, key=lambda k: scores[k][0])
    return det, *scores[det]


def commit_of(run_dir: Path, res: dict[str, Any]) -> str:
    """The commit recorded in results.json, else the last commit that touched it (marked ``*``)."""
    prov = res.get("provenance") or {}
    if isinstance(prov.get("commit"), str) and prov["commit"]:
        return prov["commit"][:7] + ("+dirty" if prov.get("dirty") else "")
    env = res.get("environment", {})
    for holder in (res, env, res.get("git") or {}, env.get("git") or {}):
        for key in ("git_commit", "commit"):
            value = holder.get(key) if isinstance(holder, dict) else None
            if isinstance(value, str) and value:
                return value[:7]
    try:
        rel = (run_dir / "results.json").relative_to(ROOT)
        out = subprocess.run(["git", "log", "-1", "--format=%h", "--", str(rel)], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
        return f"{out}*" if out else "uncommitted"
    except (subprocess.CalledProcessError, FileNotFoundError, ValueError):
        return "unknown"


def machine(res: dict[str, Any]) -> str:
    env = res.get("environment", {})
    dev = env.get("gpu") or env.get("device", "?")
    return (f"{env.get('cpu', '?')} ({env.get('cpu_count', '?')} cores, {env.get('torch_threads', '?')} torch "
            f"threads), {dev}, torch {env.get('torch', '?')}")


def settings(res: dict[str, Any]) -> str:
    cfg = res["config"]
    epochs = cfg.get("epochs")
    parts = [f"preset `{cfg.get('preset')}`", f"{epochs} epochs" if epochs else "the preset's epochs"]
    hp = cfg.get("hparams") or {}
    if hp:
        parts.append("hparams " + " ".join(f"`{k}={v}`" for k, v in hp.items()))
    neg = cfg.get("negatives")
    if neg:
        parts.append("negatives " + " ".join(f"`{k}={v}`" for k, v in neg.items()))
    return ", ".join(parts)


def f4(x: float) -> str:
    return f"{x:.4f}"


def headline(dataset: str) -> str:
    runs = runs_of(dataset)
    if not runs:
        return f"_No committed runs of {dataset} under benchmarks/results/._\n"
    b = BENCHES[dataset]
    near = b.near is not None  # near-OOD column: Tiny ImageNet against CIFAR-10
    head = (f"| seed | ours: `{b.default}` (chosen on validation data), avg AUROC (lowest set) | ours: `ue` avg AUROC | "
            "plain model: best post-hoc, avg AUROC | ours better by | "
            + (f"{b.near}: ours / plain's best post-hoc | " if near else "")
            + "ID acc ours / plain | wall min | commit |\n|---|---|---|---|---|" + ("---|" if near else "")
            + "---|---|---|\n")
    rows, ours_best, plain_best, ues, any_cached = [], [], [], [], False
    for seed, d, res in runs:
        o, p = avg_auroc(res, b.ours), avg_auroc(res, PLAIN)
        od, (oa, omin) = b.default, o[b.default]  # chosen on validation data, not the best on these sets
        pd, pa, _ = best(p)                  # the baseline at its best on these sets (favours it)
        ue = o.get("ue", (float("nan"), float("nan")))[0]
        ours_best.append(oa), plain_best.append(pa), ues.append(ue)
        acc_o = res["methods"][b.ours]["id_accuracy"]
        acc_p = res["methods"][PLAIN]["id_accuracy"]
        wall = res.get("timings", {}).get("total_s", float("nan")) / 60
        cached = any(res["methods"][m].get("cached") for m in (b.ours, PLAIN))
        wall_cell = f"{wall:.1f}" + (" (c)" if cached else "")
        any_cached = any_cached or cached
        near_cell = ""
        if near:
            plain_near = {det: per_set(res, PLAIN, det).get(b.near, float("nan")) for det in p}
            pn = max(plain_near, key=plain_near.get)
            ours_near = per_set(res, b.ours, b.default).get(b.near, float("nan"))
            near_cell = f"{f4(ours_near)} / {pn} {f4(plain_near[pn])} | "
        rows.append(f"| {seed} | {od} {f4(oa)} ({f4(omin)}) | {f4(ue)} | {pd} {f4(pa)} | {oa - pa:+.4f} | "
                    f"{near_cell}{f4(acc_o)} / {f4(acc_p)} | {wall_cell} | `{commit_of(d, res)}` |")
    if len(runs) > 1:
        rows.append(f"| mean of {len(runs)} | {f4(statistics.fmean(ours_best))} | {f4(statistics.fmean(ues))} | "
                    f"{f4(statistics.fmean(plain_best))} | "
                    f"{statistics.fmean(ours_best) - statistics.fmean(plain_best):+.4f} | {'| ' if near else ''}| | |")
    seed0 = runs[0][2]
    ood = ", ".join(seed0["config"]["ood"])
    cmds = "; ".join(f"`{r['command']}`" for _, _, r in runs)
    machines = sorted({machine(r) for _, _, r in runs})
    starred = any(commit_of(d, r).endswith("*") for _, d, r in runs)
    lines = [head + "\n".join(rows), "",
             f"OOD sets: {ood}. Settings: {settings(seed0)}. Commands: {cmds}. "
             f"Machine: {'; '.join(machines)}."]
    if starred:
        lines.append("`*`: results.json records no commit; the commit shown is the last one that changed it.")
    if any_cached:
        lines.append("(c): models from the cache of an earlier run of the same settings; the wall time is the "
                     "scoring's, the training times are in the methods table (docs, Benchmark results).")
    return "\n".join(lines) + "\n"


def detail(dataset: str) -> str:
    runs = runs_of(dataset)
    if not runs:
        return f"_No committed runs of {dataset}._\n"
    seed, d, res = runs[0]
    oods = res["config"]["ood"]
    table: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for row in res["results"]:
        if row["detector"] in DETAIL_BY_METHOD.get(row["method"], DETAIL_DETECTORS):
            table.setdefault((row["method"], row["detector"]), {})[row["ood"]] = row
    methods = list(res["methods"])
    order = sorted(table, key=lambda k: (methods.index(k[0]) if k[0] in methods else 99,
                                         DETAIL_DETECTORS.index(k[1])))
    head = ("| method | detector | " + " | ".join(f"AUROC {o}" for o in oods)
            + " | avg AUROC | avg FPR95 |\n|---|---|" + "---|" * (len(oods) + 2) + "\n")
    body = []
    for m, det in order:
        cells = table[(m, det)]
        au = [cells[o]["auroc"] for o in oods if o in cells]
        fp = [cells[o]["fpr95"] for o in oods if o in cells]
        body.append(f"| {m} | {det} | " + " | ".join(f4(cells[o]["auroc"]) if o in cells else "" for o in oods)
                    + f" | {f4(statistics.fmean(au))} | {f4(statistics.fmean(fp))} |")
    rel = d.relative_to(ROOT)
    return (head + "\n".join(body) + f"\n\nSeed {seed}, `{res['command']}` ({machine(res)}); every detector and "
            f"AUPR in `{rel}/results.md`.\n")


def default_run() -> str:
    d = RESULTS / "default-run"
    if not (d / "results.json").is_file():
        return "_No committed default run._\n"
    res = load(d)
    oods = res["config"]["ood"]
    head = ("| method | detector | " + " | ".join(f"AUROC {o}" for o in oods)
            + " | avg AUROC | ID acc |\n|---|---|" + "---|" * (len(oods) + 2) + "\n")
    body = []
    for m in res["methods"]:
        for det, (a, _) in sorted(avg_auroc(res, m).items(), key=lambda kv: -kv[1][0]):
            if det not in ("ue", "garbage", "msp", "mahalanobis", "vim"):
                continue
            per = {r["ood"]: r["auroc"] for r in res["results"] if r["method"] == m and r["detector"] == det}
            body.append(f"| {m} | {det} | " + " | ".join(f4(per[o]) for o in oods)
                        + f" | {f4(a)} | {f4(res['methods'][m]['id_accuracy'])} |")
    wall = res["timings"]["total_s"] / 60
    return (head + "\n".join(body) + f"\n\n`{res['command']}`, {settings(res)}, seed {res['config'].get('seed', 0)}, "
            f"{wall:.1f} min on {machine(res)}, commit `{commit_of(d, res)}`.\n")


#: Report section 10.3, CIFAR-10 in-distribution, UE with the garbage class excluded (AUROC).
REPORT_CIFAR10 = {"mnist": 0.5925, "fashionmnist": 0.6893, "svhn": 0.7221, "cifar100": 0.7451, "tinyimagenet": 0.7488}


def per_set(res: dict[str, Any], method: str, det: str) -> dict[str, float]:
    return {r["ood"]: r["auroc"] for r in res["results"] if r["method"] == method and r["detector"] == det}


def peer_runs(dataset: str, seed: int) -> list[tuple[Path, dict[str, Any]]]:
    """Runs of single methods for ``seed`` under ``benchmarks/results/DATASET-peers/`` (a method
    run on its own when the whole config does not fit one session), by folder name."""
    out = []
    for f in sorted((RESULTS / f"{dataset}-peers").glob("*/results.json")):
        res = load(f.parent)
        if int(res["config"].get("seed", 0)) == seed:
            out.append((f.parent, res))
    return out


def methods_table(dataset: str) -> str:
    runs = runs_of(dataset)
    if not runs:
        return f"_No committed runs of {dataset}._\n"
    seed, d, res = runs[0]
    b = BENCHES[dataset]
    near_set = b.near or "tinyimagenet"
    near = " (near)" if b.near else ""
    head = (f"| method | own detector: avg AUROC | AUROC {near_set}{near} | lowest set | best post-hoc on these sets: "
            "avg AUROC | ID acc | train min |\n|---|---|---|---|---|---|---|\n")
    sources = [(d, res, m) for m in res["methods"]]
    peer_folders = [(pd, pres) for pd, pres in peer_runs(dataset, seed)
                    if any(m not in res["methods"] for m in pres["methods"])]
    peers = [(pd, pres, m) for pd, pres in peer_folders for m in pres["methods"] if m not in res["methods"]]
    body = []
    for _, r, m in sources + peers:
        info, scores = r["methods"][m], avg_auroc(r, m)
        own = b.default if m == b.ours else OWN_DETECTOR.get(m)
        own = own if own in scores else best(scores)[0]
        per = per_set(r, m, own)
        bd, ba, _ = best({k: v for k, v in scores.items() if k not in ("ue", "ue-id", "garbage", "bal")})
        body.append(f"| {m} | {own} {f4(scores[own][0])} | {f4(per[near_set]) if near_set in per else ''} | "
                    f"{f4(scores[own][1])} | {bd} {f4(ba)} | {f4(info['id_accuracy'])} | "
                    f"{info['train_time_s'] / 60:.1f} |")
    wall = res["timings"]["total_s"] / 60
    cached = [m for m, info in res["methods"].items() if info.get("cached")]
    note = (f" Models of {', '.join(cached)} came from the model cache of an earlier run of the same settings "
            "(their train times are that run's; the wall time does not include them)." if cached else "")
    runs_note = "".join(f" {', '.join(pr['methods'])}: `{pr['command']}`, {pr['timings']['total_s'] / 60:.0f} min wall "
                        f"on {machine(pr)}, commit `{commit_of(pdir, pr)}`." for pdir, pr in peer_folders)
    return (head + "\n".join(body) + f"\n\nSeed {seed}, `{res['command']}`, {settings(res)}; {wall:.0f} min wall "
            f"for {'its' if runs_note else 'all'} methods, detectors and plots on {machine(res)}, commit "
            f"`{commit_of(d, res)}`.{note}{runs_note} Own "
            f"detector: each paper's score (ours `{b.default}`, chosen on validation data). FIG, BAL and inversion-ft "
            "times include the `standard` model they start from.\n")


def report_table() -> str:
    main, faithful = runs_of("cifar10"), RESULTS / "cifar10-report"
    if not main or not (faithful / "results.json").is_file():
        return "_No committed CIFAR-10 runs (main and report settings)._\n"
    res_f, res_m = load(faithful), main[0][2]
    shared = [o for o in res_m["config"]["ood"] if o in REPORT_CIFAR10]
    rows = [("the report, published (section 10.3)", "UE, garbage excluded", REPORT_CIFAR10)]
    rows.append(("ours, the report's settings scaled to the CPU", "ue-id", per_set(res_f, OURS, "ue-id")))
    rows.append(("ours, the report's settings scaled to the CPU", DEFAULT, per_set(res_f, OURS, DEFAULT)))
    rows.append(("ours, main configuration (seed 0)", DEFAULT, per_set(res_m, OURS, DEFAULT)))
    head = ("| run | detector | " + " | ".join(f"AUROC {o}" for o in shared) + " | avg over these |\n|---|---|"
            + "---|" * (len(shared) + 1) + "\n")
    body = [f"| {name} | {det} | " + " | ".join(f4(v[o]) for o in shared) + f" | {f4(statistics.fmean(v[o] for o in shared))} |"
            for name, det, v in rows]
    acc = res_f["methods"][OURS]["id_accuracy"]
    return (head + "\n".join(body) + f"\n\nShared sets only (SVHN and CIFAR-100 are not available offline). Report-"
            f"settings run: `{res_f['command']}`, {settings(res_f)}, ID accuracy {f4(acc)}, "
            f"{res_f['timings']['total_s'] / 60:.0f} min, commit `{commit_of(faithful, res_f)}`.\n")


def recipe_table() -> str:
    """One row per results folder under ``cifar10-recipe``, by net width and passes."""
    from niood_plugin.presets import get_preset
    from niood_plugin.recipes import RECIPES
    rows = []
    for d in sorted((RESULTS / "cifar10-recipe").glob("*/results.json")):
        res = load(d.parent)
        cfg, env, info = res["config"], res.get("environment", {}), res["methods"]["standard"]
        recipe = (cfg.get("hparams") or {}).get("recipe") or get_preset(cfg["preset"]).trainer.get("recipe", "adam")
        numerics = "bf16" if env.get("fast_bf16") and RECIPES.get(recipe).amp else "fp32"
        per = {det: per_set(res, PLAIN, det).get("tinyimagenet-val") for det in ("msp", "energy", "knn", "mahalanobis")}
        cells = " | ".join(f4(v) if v is not None else "" for v in per.values())
        rows.append(((cfg.get("classifier"), cfg.get("width") or 0, len(info["history"]), (cfg.get("tta") or "none") != "none",
                      d.parent.name),
                     f"| {cfg.get('classifier')} w{cfg.get('width')} | {recipe}, {numerics} | {len(info['history'])} | "
                     f"{info['train_time_s'] / 60:.1f} | {f4(info['id_accuracy'])} | {cfg.get('tta') or 'none'} | "
                     f"{cells} | {env.get('cpu', '?')}{', ' + env['cpu_id'] if env.get('cpu_id') else ''} | `{commit_of(d.parent, res)}` | `{d.parent.name}` |"))
    if not rows:
        return "_No committed runs under benchmarks/results/cifar10-recipe._\n"
    head = ("| net | recipe, numerics | passes | train min | ID acc | TTA | AUROC tinyimagenet-val: MSP | Energy | "
            "KNN | Mahalanobis | CPU (2 cores) | commit | folder |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    return head + "\n".join(r for _, r in sorted(rows)) + "\n"


def render(name: str) -> Optional[str]:
    if name == "default-run":
        return default_run()
    if name == "cifar10:recipe":
        return recipe_table()
    if name == "cifar10:report":
        return report_table()
    ds, _, kind = name.partition(":")
    if ds in DATASETS and kind == "":
        return headline(ds)
    if ds in DATASETS and kind == "detail":
        return detail(ds)
    if ds in DATASETS and kind == "methods":
        return methods_table(ds)
    return None


def rewrite(text: str) -> str:
    def sub(m: re.Match) -> str:
        body = render(m.group("name"))
        return m.group(0) if body is None else m.group(1) + body + m.group(4)
    return MARKER.sub(sub, text)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--print", action="store_true", help="print every table instead of editing files")
    p.add_argument("--check", action="store_true", help="exit 1 if a file's tables are out of date")
    p.add_argument("files", nargs="*", type=Path, help=f"Markdown files (default: {', '.join(map(str, FILES))})")
    a = p.parse_args(argv)
    if a.print:
        for name in [*DATASETS, *(f"{d}:detail" for d in DATASETS), *(f"{d}:methods" for d in DATASETS), "cifar10:report",
                     "default-run", "cifar10:recipe"]:
            print(f"## {name}\n\n{render(name)}")
        return 0
    stale = []
    for path in a.files or FILES:
        if not path.is_file():
            continue
        old = path.read_text()
        new = rewrite(old)
        if new != old:
            stale.append(path)
            if not a.check:
                path.write_text(new)
    for path in stale:
        print(f"{'out of date' if a.check else 'rewrote'}: {path}")
    return 1 if a.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
