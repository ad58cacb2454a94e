"""PNG plots of a benchmark run (matplotlib, Agg backend)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


HEADLINE = ("ue", "garbage", "msp", "mahalanobis", "bal")  # detectors plotted (all are in the tables)


def _headline(scores: dict[tuple[str, str, str], np.ndarray]) -> list[tuple[str, str]]:
    """(method, detector) pairs to plot: our model's UE and garbage probability, every model's
    MSP and Mahalanobis (and BAL's own score)."""
    garbage = {m for (m, d, _) in scores if d == "garbage"}
    pairs = {(m, d) for (m, d, _) in scores if d in HEADLINE and (d not in ("ue", "garbage") or m in garbage)}
    return sorted(pairs)


def roc_curves(out: Path, scores: dict[tuple[str, str, str], np.ndarray], id_name: str) -> list[Path]:
    """One figure per OOD set: the ROC curves of the headline detectors of every method."""
    from sklearn.metrics import roc_curve

    plt = _plt()
    files = []
    for ood in sorted({o for (_, _, o) in scores if o != id_name}):
        fig, ax = plt.subplots(figsize=(5, 5))
        for method, det in _headline(scores):
            if (method, det, ood) not in scores:
                continue
            s_id, s = scores[(method, det, id_name)], scores[(method, det, ood)]
            fpr, tpr, _ = roc_curve(np.r_[np.zeros(len(s_id)), np.ones(len(s))], np.r_[s_id, s])
            ax.plot(fpr, tpr, label=f"{method} / {det}", lw=1.2)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlabel="false positive rate (ID flagged)", ylabel="true positive rate (OOD flagged)",
               title=f"{id_name} vs {ood}")
        ax.legend(fontsize=7, loc="lower right")
        path = out / f"roc_{ood}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        files.append(path)
    return files


def histograms(out: Path, scores: dict[tuple[str, str, str], np.ndarray], id_name: str) -> list[Path]:
    """One figure per headline (method, detector): ID vs every OOD set."""
    plt = _plt()
    files = []
    for method, det in _headline(scores):
        oods = [o for (m, d, o) in scores if m == method and d == det and o != id_name]
        fig, axes = plt.subplots(1, len(oods), figsize=(3.2 * len(oods), 2.8), squeeze=False)
        s_id = scores[(method, det, id_name)]
        for ax, ood in zip(axes[0], oods):
            s = scores[(method, det, ood)]
            lo, hi = float(min(s_id.min(), s.min())), float(max(s_id.max(), s.max()))
            bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 50)
            # stepfilled: one polygon per histogram instead of 50 bars, half the rendering time
            ax.hist(s_id, bins=bins, alpha=0.6, density=True, label=id_name, histtype="stepfilled")
            ax.hist(s, bins=bins, alpha=0.6, density=True, label=ood, histtype="stepfilled")
            ax.set_title(ood, fontsize=9)
            ax.legend(fontsize=7)
        fig.suptitle(f"{method} / {det}: outlier score (higher = more OOD)", fontsize=10)
        path = out / f"hist_{method}_{det}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        files.append(path)
    return files


def training_curves(out: Path, method: str, history: list[dict[str, Any]]) -> Path | None:
    """Fixed-noise metrics (report 9.1), inversion accuracy and ID accuracy per epoch."""
    rows = [h for h in history if "confidence" in h]
    if not rows:
        return None
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = [h["epoch"] for h in rows]
    for key in ("confidence", "margin", "ue", "entropy", "inversion_accuracy"):
        a.plot(epochs, [h[key] for h in rows], marker="o", label=key)
    a.set(xlabel="epoch", title="generated samples (fixed noise)")
    a.legend(fontsize=7)
    all_epochs = [h["epoch"] for h in history]
    for key in ("train_id_acc", "val_acc", "train_garbage_acc"):
        if all(key in h for h in history):
            b.plot(all_epochs, [h[key] for h in history], marker="o", label=key)
    b.set(xlabel="epoch", title="classifier accuracy")
    b.legend(fontsize=7)
    path = out / f"training_{method}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def time_to_quality(out: Path, methods: dict[str, dict[str, Any]]) -> Path | None:
    """ID accuracy and average OOD AUROC of the per-epoch probe (:mod:`~niood_plugin.bench.probe`)
    against cumulative training wall time, one line per method that was probed."""
    probed = {m: [h for h in info["history"] if "probe_auroc_avg" in h] for m, info in methods.items()}
    probed = {m: rows for m, rows in probed.items() if rows}
    if not probed:
        return None
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for method, rows in probed.items():
        history = methods[method]["history"]
        wall, minutes = 0.0, {}
        for h in history:  # epoch times exclude the probe's own time
            wall += h.get("time_s", 0.0)
            minutes[id(h)] = wall / 60
        t = [minutes[id(h)] for h in rows]
        a.plot(t, [h["probe_id_acc"] for h in rows], marker="o", label=method)
        b.plot(t, [h["probe_auroc_avg"] for h in rows], marker="o", label=method)
    a.set(xlabel="training wall time (min)", ylabel="ID test accuracy (probe subset)", title="accuracy")
    b.set(xlabel="training wall time (min)", ylabel="average AUROC over the OOD sets",
          title="OOD detection (default UE detector)")
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    path = out / "time_to_quality.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
