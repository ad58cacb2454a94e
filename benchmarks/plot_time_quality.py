"""AUROC against training wall time (time-to-quality) from a results.json.

    python benchmarks/plot_time_quality.py benchmarks/results/mnist
writes <dir>/time_to_quality.png: one point per method x detector (average AUROC over the
OOD sets), x = the method's training wall time (FIG and BAL include the standard model
they start from).
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

for d in map(Path, sys.argv[1:]):
    p = json.loads((d / "results.json").read_text())
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    markers = {"inversion": "o", "standard": "s", "fig": "^", "bal": "v"}
    for method, info in p["methods"].items():
        dets = sorted({r["detector"] for r in p["results"] if r["method"] == method})
        for det in dets:
            vals = [r["auroc"] for r in p["results"] if r["method"] == method and r["detector"] == det]
            auroc = sum(vals) / len(vals)
            ax.scatter(info["train_time_s"] / 60, auroc, marker=markers.get(method, "x"), s=30)
            if auroc > 0.97:
                ax.annotate(f"{method}/{det}", (info["train_time_s"] / 60, auroc), fontsize=6,
                            xytext=(3, 0), textcoords="offset points")
    ax.set(xlabel="training wall time (min, 2-core CPU)", ylabel="average AUROC over OOD sets",
           title=f"{p['config']['id']}: time to quality", ylim=(0.95, 1.0005))
    fig.savefig(d / "time_to_quality.png", dpi=110, bbox_inches="tight")
    print(d / "time_to_quality.png")
