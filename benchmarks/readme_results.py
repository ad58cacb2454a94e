"""Rewrite README.md's Results section from the committed results files.

    python benchmarks/readme_results.py        # reads benchmarks/results/*, edits README.md

Every number in that section comes from a results.json (or perf.json / ablations.md)
made by the command recorded in it; this script only formats them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

from niood_plugin.bench.report import md_table

ROOT = Path(__file__).resolve().parent.parent
RES = ROOT / "benchmarks" / "results"
START, END = "<!-- results:start -->", "<!-- results:end -->"

# The report's published numbers (section 10, UE on the garbage model, garbage class excluded).
REPORT = {
    "mnist": {"avg_auroc": 0.9437, "avg_fpr95": 0.1814,
              "per_ood": {"fashionmnist": 0.9784, "cifar10": 0.9704, "svhn": 0.8381, "cifar100": 0.9626,
                          "tinyimagenet": 0.9692}},
    "fashionmnist": {"avg_auroc": 0.9193, "avg_fpr95": 0.2889,
                     "per_ood": {"mnist": 0.7623, "cifar10": 0.9566, "svhn": 0.9747, "cifar100": 0.9562,
                                 "tinyimagenet": 0.9465}},
}
OOD_ALIASES = {"cifar10-jpeg": "cifar10"}

# Inversion-only runs with other settings, committed under benchmarks/results/<stem>-<id>/:
# stem -> (row label, the script that runs them, what differs from the report / the main run); the
# script and the text may be dicts keyed by the ID dataset
EXTRA_RUNS = {
    "report-settings": ("ours, report's settings (scaled)", "benchmarks/run_report_settings.sh",
                        "scaled down from the report only in samples per inversion step (220, not 11,000) and "
                        "epochs (10, not 20)"),
    "defaults": ("ours, library defaults (fast preset, 10 epochs)",
                 {"fashionmnist": "bash benchmarks/run_fashionmnist.sh --set jigsaw=0 --set novelty=0 "
                                  "--set weighted_ce=true --out benchmarks/results/defaults-fashionmnist",
                  "mnist": "bash benchmarks/run_mnist.sh --set jigsaw=0 --out benchmarks/results/defaults-mnist"},
                 {"fashionmnist": "the main benchmark as it was before the Fashion-MNIST config got its `[hparams]` "
                                  "(results copied from commit 67076af; the recorded command now runs those "
                                  "`[hparams]`, the script given here overrides them back to the defaults, same "
                                  "cache key, so the same models)",
                  "mnist": "the main benchmark as it was before the MNIST config got its `[hparams]` (warped "
                           "negatives; results copied from commit 57464e9, seed 1 as `defaults-mnist-seed1/`; the "
                           "recorded command now runs those `[hparams]`, the script given here turns the negatives "
                           "off again, same cache key, so the same models)"}),
    "epochs10": ("ours, warped negatives, 10 epochs (previous main run)",
                 "bash benchmarks/run_fashionmnist.sh --epochs 10 --set jigsaw_from=9 "
                 "--out benchmarks/results/epochs10-fashionmnist",
                 "the main Fashion-MNIST benchmark before its config went from 10 to 12 epochs (warped negatives "
                 "in the last two epochs, `jigsaw_from=9`; results copied from commit 57464e9, seeds 1 and 2 as "
                 "`epochs10-fashionmnist-seed1/`, `-seed2/`; the script given here runs these settings now)"),
    "jigsaw1": ("ours, late jigsaw recipe, one negative per image (previous main run)",
                "bash benchmarks/run_fashionmnist.sh --set negatives=jigsaw --out benchmarks/results/jigsaw1-fashionmnist",
                "the main Fashion-MNIST benchmark before its config switched to warped negatives (`jigsaw=1 "
                "jigsaw_from=9 novelty=1 weighted_ce=false`; results copied from commit 619131b, when the recorded "
                "command ran these settings; the script given here runs them now, same cache key)"),
    "novelty": ("ours + novelty term (fast preset, 10 epochs)", "bash benchmarks/run_variant.sh novelty",
                "the fast preset at 10 epochs (the main runs' settings without the Fashion-MNIST config's "
                "`[hparams]`) plus `novelty=1` (not in the report; README \"The novelty term\"). The "
                "Fashion-MNIST command was recorded before that config had `[hparams]`; `run_variant.sh novelty` "
                "now adds `--set jigsaw=0 --set weighted_ce=true`, which gives the same settings (same cache key)"),
    "jigsaw": ("ours + jigsaw negatives (fast preset, 10 epochs)", "bash benchmarks/run_variant.sh jigsaw",
               "the fast preset at 10 epochs plus `jigsaw=0.5 jigsaw_from=9 novelty=1 weighted_ce=false` (not in the "
               "report; README \"Jigsaw negatives\")"),
    "negatives": ("ours + jigsaw and rotated negatives (fast preset, 10 epochs)",
                  "bash benchmarks/run_variant.sh negatives",
                  "the fast preset at 10 epochs plus `jigsaw=4 negatives=jigsaw+rotate jigsaw_from=9 novelty=1 "
                  "weighted_ce=false` (not in the report; README \"More negatives, and quarter turns\")"),
}


def _mean(v):
    return sum(v) / len(v) if v else float("nan")


def _groups(results: list[dict]) -> dict:
    """Result rows as {(method, detector): {ood: row}}."""
    groups: dict = {}
    for r in results:
        groups.setdefault((r["method"], r["detector"]), {})[r["ood"]] = r
    return groups


def _best_standard(groups: dict) -> Optional[tuple]:
    """The plain model's (method, detector) with the highest average AUROC, or None."""
    return max((k for k in groups if k[0] == "standard"),
               key=lambda k: _mean([r["auroc"] for r in groups[k].values()]), default=None)


def _row(label: str, what: str, by_ood: dict, method: dict, oods: list[str]) -> list:
    """One table row: AUROC per OOD set, averages, ID accuracy and training time of ``method``."""
    return ([label, what] + [by_ood[o]["auroc"] if o in by_ood else "" for o in oods]
            + [_mean([r["auroc"] for r in by_ood.values()]), _mean([r["fpr95"] for r in by_ood.values()]),
               method["id_accuracy"], round(method["train_time_s"])])


def id_section(name: str) -> str:
    path = RES / name / "results.json"
    if not path.is_file():
        return f"_No committed run for {name} yet._\n"
    p = json.loads(path.read_text())
    env, t = p["environment"], p["timings"]
    res = p["results"]
    oods = list(dict.fromkeys(r["ood"] for r in res))
    rep = REPORT.get(name)
    header = ["row", "method / detector"] + [f"AUROC {o}" for o in oods] + ["avg AUROC", "avg FPR95", "ID acc",
                                                                             "train wall s"]
    rows = []
    if rep:
        rows.append(["report (published)", "garbage model / UE (garbage excluded)"]
                    + [rep["per_ood"].get(OOD_ALIASES.get(o, o), "n/a") for o in oods]
                    + [f"{rep['avg_auroc']:.4f} (its 5 sets)", f"{rep['avg_fpr95']:.4f}", "", "hours (GPU)"])
    extra = {stem: _load(RES / f"{stem}-{name}" / "results.json") for stem in EXTRA_RUNS}
    rows += extra_rows("report-settings", extra["report-settings"], oods)
    groups = _groups(res)
    best_std = _best_standard(groups)
    order = [("inversion", d) for d in ("ue", "ue-id", "garbage", "mahalanobis", "energy", "msp")]
    order += [k for k in groups if k[0] == "standard"]
    order += [k for k in groups if k[0] in ("fig", "bal") and k[1] in ("msp", "ue", "energy", "mahalanobis", "bal")]
    epochs = p["config"].get("epochs") or "preset"
    hp = " ".join(f"{k}={v}" for k, v in sorted(p["config"].get("hparams", {}).items()))
    labels = {"inversion": f"ours (fast preset, {epochs} epochs{', ' + hp if hp else ''})",
              "standard": "plain model + post-hoc",
              "fig": "FIG (peer)", "bal": "BAL (peer)"}
    present = [k for k in order if k in groups]

    def add(keys: list) -> None:
        for key in keys:
            label = labels[key[0]] + (" (best post-hoc)" if key == best_std else "")
            rows.append(_row(label, f"{key[0]} / {key[1]}", groups[key], p["methods"][key[0]], oods))

    add([k for k in present if k[0] == "inversion"])
    for stem in ("epochs10", "jigsaw1", "defaults", "jigsaw", "novelty"):  # the other runs of our method go right after the main one
        rows += extra_rows(stem, extra[stem], oods)
    add([k for k in present if k[0] != "inversion"])
    cmd = p.get("command", "")
    cached = any(m.get("cached") for m in p["methods"].values())
    wall = (f"wall time {t['total_s'] / 60:.1f} min with every model from the cache (training wall times per "
            "method are in the table)" if cached else f"total wall time {t['total_s'] / 60:.1f} min")
    head = (f"**{name} in-distribution**: `{cmd}` on {env['cpu']} ({env['cpu_count']} cores, "
            f"{env['torch_threads']} torch threads, {env['device']}), seed {p['config']['seed']}, "
            f"{wall}, peak RSS {t.get('peak_rss_mb', 0):.0f} MiB. "
            f"Full tables: `benchmarks/results/{name}/results.md`.\n\n")
    notes = "".join(f"- {n}\n" for n in p.get("notes", []))
    for stem, (label, script, what) in EXTRA_RUNS.items():
        q = extra[stem]
        script, what = (v[name] if isinstance(v, dict) else v for v in (script, what))  # per dataset or shared
        if q is not None:
            notes += (f"- {label} rows: `{q['command']}` (`{script}`), {_machine(q)}, seed {q['config']['seed']}, "
                      f"total wall time {q['timings']['total_s'] / 60:.1f} min; {what}\n")
    return head + md_table(header, rows) + "\n\n" + notes


def seeds_section(name: str) -> str:
    """The main benchmark of ``name`` against its re-runs with other seeds (``<name>-seed<N>/``)."""
    runs = [RES / name] + sorted(RES.glob(f"{name}-seed*"))
    loaded = [(d, _load(d / "results.json")) for d in runs]
    loaded = [(d, p) for d, p in loaded if p is not None]
    if len(loaded) < 2:
        return ""
    oods = list(dict.fromkeys(r["ood"] for r in loaded[0][1]["results"]))
    header = (["seed", "results"] + [f"UE {o}" for o in oods]
              + ["UE avg", "UE avg FPR95", "garbage avg", "ID acc", "best plain post-hoc (avg)", "wall min"])
    rows = []
    for d, p in loaded:
        g = _groups(p["results"])
        ue, gar = g[("inversion", "ue")], g[("inversion", "garbage")]
        best = _best_standard(g)
        rows.append([p["config"]["seed"], f"`{d.relative_to(ROOT)}`"] + [ue[o]["auroc"] for o in oods]
                    + [_mean([r["auroc"] for r in ue.values()]), _mean([r["fpr95"] for r in ue.values()]),
                       _mean([r["auroc"] for r in gar.values()]), p["methods"]["inversion"]["id_accuracy"],
                       f"{best[1]} {_mean([r['auroc'] for r in g[best].values()]):.4f}",
                       f"{p['timings']['total_s'] / 60:.1f}"])
    cmds = "; ".join(f"`{p['command']}`" for _, p in loaded[1:])
    return (f"**{name}, other seeds**: the same benchmark with `--seed` ({cmds}), {_machine(loaded[0][1])}, "
            "our model (inversion) scored by UE and by its garbage probability:\n\n" + md_table(header, rows) + "\n")


def _machine(p: dict) -> str:
    """Where run ``p`` ran, as its results.json records it.  Machines with the same description
    differ in speed (README "Results"), so wall times compare only within one session."""
    env = p["environment"]
    return f"{env['cpu']}, {env['cpu_count']} cores"


def _load(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.is_file() else None


def extra_rows(stem: str, p: Optional[dict], oods: list[str]) -> list[list]:
    """Rows of the inversion-only run ``p`` (results.json of ``<stem>-<id>``, see EXTRA_RUNS), if committed."""
    if p is None:
        return []
    m = p["methods"]["inversion"]
    rows = []
    for det in ("ue", "ue-id", "garbage", "mahalanobis"):
        g = {r["ood"]: r for r in p["results"] if r["detector"] == det and r["method"] == "inversion"}
        if g:
            rows.append(_row(EXTRA_RUNS[stem][0], f"inversion / {det}", g, m, oods))
    return rows


def perf_section() -> str:
    path = RES / "perf.json"
    if not path.is_file():
        return "_No committed perf run yet._\n"
    md = (RES / "perf.md").read_text()
    return md.split("\n", 1)[1] if md.startswith("# ") else md


def main() -> None:
    parts = ["Numbers below are copied by `python benchmarks/readme_results.py` from the committed "
             "results files; the command, hardware, seed and wall time of each run are stated with it.\n"]
    for name in ("mnist", "fashionmnist"):
        parts += [f"### {name}\n", id_section(name), seeds_section(name)]
    abl = RES / "ablations" / "ablations.md"
    parts += ["### Ablations\n", abl.read_text().split("\n", 2)[2] if abl.is_file() else "_not run yet_\n"]
    for sub, title in (("attack-mnist", "feature-matching attack (source 004)"),
                       ("attack-mnist-100steps", "feature-matching attack, 100 steps"),
                       ("attack-mnist-adaptive", "adaptive attack on the UE score"),
                       ("attack-mnist-adaptive-linf", "adaptive attack on the UE score, L-inf ball")):
        att = RES / sub / "results.md"
        if att.is_file():
            text = att.read_text().split("\n", 1)[1]
            parts += [f"### Under the {title}\n", text.split("Median MAPE")[0]]
    parts += ["### Cost (benchmarks/perf.py)\n", perf_section()]
    body = "\n".join(parts)
    readme = (ROOT / "README.md").read_text()
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), START + "\n" + body + "\n" + END, readme, flags=re.S)
    (ROOT / "README.md").write_text(new)


if __name__ == "__main__":
    main()
