"""PNG plots of a benchmark run (matplotlib, Agg backend): the few a reader looks at.

Per OOD set one ROC figure (``roc_<set>.png``): per method one colour, its own detector solid
and its best post-hoc detector dashed (:func:`reader_detectors`).  Per method one histogram
figure of its own detector, ID against every OOD set (``hist_<method>_<detector>.png``).
Per method with fixed-noise metrics its training curves (``training_<method>.png``), and with
the per-epoch probe one ``time_to_quality.png``.  Every other method x detector pair is in the
results tables only.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..files import atomic_savefig

log = logging.getLogger(__name__)


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt



#: Each method's own detector: the score its paper uses (a model with a garbage class: the
#: garbage probability, :class:`~niood_plugin.UEDetector`'s default for it).  Another method:
#: ``garbage`` if it has that score, else ``msp``; a run that did not score it: its best detector.
OWN_DETECTOR = {"standard": "msp", "fig": "msp", "bal": "bal", "logitnorm": "msp", "vos": "energy"}
#: Scores of one kind of model only; every other detector is post-hoc (any classifier has it).
METHOD_SCORES = ("ue", "ue-id", "garbage", "bal")

Scores = dict[tuple[str, str, str], np.ndarray]   # (method, detector, set) -> outlier scores


def auroc(s_id: np.ndarray, s_ood: np.ndarray) -> float:
    """AUROC of telling ``s_ood`` (positives) from ``s_id`` by score (higher = more OOD)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(s_id)), np.ones(len(s_ood))], np.r_[s_id, s_ood]))


def reader_detectors(scores: Scores, id_name: str) -> dict[str, tuple[str, Optional[str]]]:
    """Per method, in the run's order: (its own detector, its best post-hoc detector), the best
    by average AUROC over the run's OOD sets (as the methods table picks it); the second is None
    when no post-hoc detector was scored or the own detector is the best post-hoc one."""
    avg: dict[str, dict[str, list[float]]] = {}
    for (m, d, o), s in scores.items():
        if o != id_name and (m, d, id_name) in scores:
            avg.setdefault(m, {}).setdefault(d, []).append(auroc(scores[(m, d, id_name)], s))
    chosen = {}
    for m, per in avg.items():
        mean = {d: float(np.mean(v)) for d, v in sorted(per.items())}
        own = OWN_DETECTOR.get(m, "garbage" if "garbage" in mean else "msp")
        if own not in mean:
            own = max(mean, key=mean.get)
        post = {d: a for d, a in mean.items() if d not in METHOD_SCORES}
        best = max(post, key=post.get) if post else None
        chosen[m] = (own, None if best == own else best)
    return chosen


def roc_figure(scores: Scores, id_name: str, ood: str, chosen: dict[str, tuple[str, Optional[str]]]):
    """The ROC curves of ``ood`` against ``id_name``: per method one colour, its own detector solid,
    its best post-hoc detector dashed, the AUROC on this set in the legend."""
    from sklearn.metrics import roc_curve

    plt = pyplot()
    colours = plt.get_cmap("tab10").colors
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for i, (method, dets) in enumerate(chosen.items()):
        own, best = dets
        roles = ("own = best post-hoc" if best is None and own not in METHOD_SCORES else "own", "best post-hoc")
        for det, style, role in zip(dets, ("-", "--"), roles):
            if det is None or (method, det, ood) not in scores:
                continue
            s_id, s = scores[(method, det, id_name)], scores[(method, det, ood)]
            fpr, tpr, _ = roc_curve(np.r_[np.zeros(len(s_id)), np.ones(len(s))], np.r_[s_id, s])
            label = f"{method}: {det} ({role}) {auroc(s_id, s):.3f}"
            ax.plot(fpr, tpr, style, color=colours[i % len(colours)], lw=1.4, label=label)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate (ID flagged)", ylabel="true positive rate (OOD flagged)",
           title=f"{id_name} vs {ood}: own detector (solid), best post-hoc (dashed)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="lower right", title="method: detector, AUROC", title_fontsize=7)
    return fig


def roc_curves(out: Path, scores: Scores, id_name: str) -> list[Path]:
    """One figure per OOD set, ``roc_<set>.png`` (:func:`roc_figure`)."""
    plt = pyplot()
    chosen = reader_detectors(scores, id_name)
    files = []
    for ood in sorted({o for (_, _, o) in scores if o != id_name}):
        fig = roc_figure(scores, id_name, ood, chosen)
        path = out / f"roc_{ood}.png"
        atomic_savefig(fig, path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        files.append(path)
    return files


def histograms(out: Path, scores: Scores, id_name: str) -> list[Path]:
    """One figure per method, ``hist_<method>_<detector>.png``: its own detector's scores of the
    ID test set against every OOD set (the other detectors are in the tables and ROC curves)."""
    plt = pyplot()
    files = []
    for method, (det, _) in reader_detectors(scores, id_name).items():
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
        fig.suptitle(f"{method} / {det} (its own detector): outlier score (higher = more OOD)", fontsize=10)
        path = out / f"hist_{method}_{det}.png"
        atomic_savefig(fig, path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        files.append(path)
    return files


def training_curves(out: Path, method: str, history: list[dict[str, Any]]) -> Path | None:
    """Fixed-noise metrics (report 9.1), inversion accuracy and ID accuracy per epoch."""
    rows = [h for h in history if "confidence" in h]
    if not rows:
        return None
    plt = pyplot()
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
    atomic_savefig(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def time_to_quality(out: Path, methods: dict[str, dict[str, Any]]) -> Path | None:
    """ID accuracy and average OOD AUROC of the per-epoch probe (:mod:`~niood_plugin.bench.probe`)
    against cumulative training wall time, one line per method that was probed."""
    probed = {m: [h for h in info["history"] if "probe_auroc_avg" in h] for m, info in methods.items()}
    probed = {m: rows for m, rows in probed.items() if rows}
    if not probed:
        return None
    plt = pyplot()
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
    atomic_savefig(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
