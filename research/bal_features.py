"""Feature-space diagnostic for the BAL peer (issue 21): where do ID, trivial, hard and OOD features lie?

Trains :class:`~niood_plugin.peers.BALTrainer` on the penultimate features of the cached ``standard``
model (features are computed once; the trainer sees them through an identity ``features()``, which
is the same computation as training on images with a frozen classifier in eval mode), then reports
per set: fraction of features outside the ID (training) bounding box, feature norms, MSP, the
discriminator's ID probability D(f; predicted class), and the AUROCs of MSP, D alone and MSP*D.

Selection of settings uses only the ID test split and the synthetic validation outliers of
``research/validate_detectors.py`` (``--val-only``, the default for sweeps); the reported OOD test
sets are loaded only with ``--report`` (final setting and the plot).

Usage::

    python research/bal_features.py --id mnist --report --plot research/results/bal-features-mnist.png \\
        --json research/results/bal-features-mnist.json [--set box_margin=0.5] [--epochs 5]

    # the paper's feature extractor at a reduced budget (ResNet18, 512-d features, 2 epochs)
    python research/bal_features.py --id mnist --backbone resnet18 --backbone-epochs 2 --threads 2 --report \
        --plot research/results/bal-features-mnist-resnet18.png --json research/results/bal-features-mnist-resnet18.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate_detectors import outliers  # noqa: E402

from niood_plugin.bench.config import parse_value  # noqa: E402
from niood_plugin.data import TensorData, load_dataset  # noqa: E402
from niood_plugin.models import build_classifier, to_channels_last  # noqa: E402
from niood_plugin.peers.bal import BALTrainer, fgsm_latent, uniform_ood_features  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"mnist": "benchmarks/results/mnist/models/standard-a63c804db7334711.pt",
          "fashionmnist": "benchmarks/results/fashionmnist/models/standard-6ff2f660d2e4e8bb.pt"}
TEST_OOD = {"mnist": ["fashionmnist", "gaussian", "uniform", "cifar10-jpeg", "tinyimagenet"],
            "fashionmnist": ["mnist", "gaussian", "uniform", "cifar10-jpeg", "tinyimagenet"]}


class FeatureModel(nn.Module):
    """A classifier whose input *is* the penultimate feature: ``features = identity``, ``head`` shared."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def features(self, f: torch.Tensor) -> torch.Tensor:
        return f

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.model.head(f)


class FeatureLoader:
    """Shuffled ``(f, y)`` batches of precomputed features, a new order every pass (like ``TensorData.loader``)."""

    def __init__(self, f: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0):
        self.f, self.y, self.bs = f, y, batch_size
        self.g = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.f) // self.bs)

    def __iter__(self):
        order = torch.randperm(len(self.f), generator=self.g)
        for i in range(0, len(order), self.bs):
            j = order[i:i + self.bs]
            yield self.f[j], self.y[j]


def train_backbone(name: str, train: TensorData, epochs: int, seed: int = 0) -> nn.Module:
    """The paper's feature extractor at a reduced budget: a timm model (e.g. ``resnet18``: 512-d
    post-ReLU average-pooled features, as BAL uses on MNIST) trained with Adam and cross-entropy."""
    from niood_plugin.training import train_plain

    torch.manual_seed(seed)
    m = to_channels_last(build_classifier(name, 10, train.image_shape[0]))
    train_plain(m, train.loader(batch_size=128, shuffle=True, seed=seed), epochs, 1e-3, "cpu",
                channels_last=True, lr_schedule="cosine", name=name)
    return m.eval()


def load_model(name: str) -> nn.Module:
    state = torch.load(ROOT / MODELS[name], weights_only=False)
    m = to_channels_last(build_classifier("report28", state["num_classes"], 1, ncf=32))
    m.load_state_dict(state["model"])
    return m.eval()


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, bs: int = 1000) -> torch.Tensor:
    return torch.cat([model.features(x[i:i + bs]) for i in range(0, len(x), bs)])


def sets_for(name: str, report: bool) -> tuple[TensorData, TensorData, dict[str, TensorData]]:
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    oods = dict(outliers(test))
    if report:
        for o in TEST_OOD[name]:
            try:
                oods[o] = load_dataset(o, "test", image_shape=train.image_shape, limit=10000, seed=0)
            except Exception as exc:  # optional sets may be missing
                print(f"skip {o}: {exc}")
    return train, test, oods


def auroc(id_s: np.ndarray, ood_s: np.ndarray) -> float:
    """AUROC with OOD as positive; inputs are ID-confidence values (higher = more ID)."""
    y = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s))]
    return float(roc_auc_score(y, -np.r_[id_s, ood_s]))


def train_bal(model: nn.Module, f_tr: torch.Tensor, y_tr: torch.Tensor, epochs: int, **kw) -> BALTrainer:
    fm = FeatureModel(model).eval()
    trainer = BALTrainer(fm, int(y_tr.max()) + 1, progress=False, **kw)
    torch.manual_seed(kw.get("seed", 0))
    trainer.fit(FeatureLoader(f_tr, y_tr, 128, seed=0), epochs=epochs)
    return trainer


@torch.no_grad()
def stats(trainer: BALTrainer, model: nn.Module, feats: dict[str, torch.Tensor], lo, hi) -> dict:
    D = trainer.discriminator.eval()
    out, conf = {}, {}
    for name, f in feats.items():
        logits = model.head(f)
        msp = logits.softmax(1).max(1).values
        d = D.probability(f, logits.argmax(1))
        outside = ((f < lo) | (f > hi)).any(1).float().mean().item()
        out[name] = {"n": len(f), "outside_box": outside, "dims_outside": ((f < lo) | (f > hi)).float().sum(1).mean().item(),
                     "norm_mean": f.norm(dim=1).mean().item(), "norm_median": f.norm(dim=1).median().item(),
                     "msp_mean": msp.mean().item(), "d_mean": d.mean().item(), "d_median": d.median().item()}
        conf[name] = (msp.numpy(), d.numpy(), (msp * d).numpy())
    for name in feats:
        if name in ("id-test", "id-train"):
            continue
        for i, key in enumerate(("msp", "d", "bal")):
            out[name][f"auroc_{key}"] = auroc(conf["id-test"][i], conf[name][i])
    return out


@torch.no_grad()
def synthetic(trainer: BALTrainer, f_tr: torch.Tensor, y_tr: torch.Tensor, n: int = 2000) -> dict[str, torch.Tensor]:
    """Trivial (per-batch box, as in training) and hard (FGSM on G) features like the trainer draws them."""
    g = torch.Generator().manual_seed(1)
    idx = torch.randperm(len(f_tr), generator=g)[:n]
    extra = {"margin": trainer.box_margin} if getattr(trainer, "box_margin", 0) else {}
    triv = [uniform_ood_features(f_tr[idx[i:i + 128]], y_tr[idx[i:i + 128]], trainer.num_classes, generator=g,
                                 **extra)[0] for i in range(0, n, 128)]
    z = torch.randn(n, trainer.latent_dim, generator=g)
    c = torch.randint(0, trainer.num_classes, (n,), generator=g)
    eps = torch.randn(n, generator=g).abs() * trainer.fgsm_std
    G = trainer.generator.eval()
    z_hard = fgsm_latent(G, trainer.discriminator, z, c, eps)
    return {"trivial": torch.cat(triv), "generated": G(z, c), "hard": G(z_hard, c)}


def plot(path: str, feats: dict[str, torch.Tensor], title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = feats["id-test"]
    mean = ref.mean(0)
    _, _, v = torch.pca_lowrank(ref - mean, q=2, center=False)
    fig, axes = plt.subplots(1, 2, figsize=(14, 6.5))
    style = {"id-test": ("tab:blue", 4), "trivial": ("tab:gray", 3), "hard": ("tab:red", 4),
             "generated": ("tab:pink", 3), "fashionmnist": ("tab:green", 3), "mnist": ("tab:green", 3),
             "gaussian": ("tab:orange", 3), "uniform": ("tab:purple", 3), "val-permuted": ("olive", 3),
             "cifar10-jpeg": ("tab:brown", 3), "tinyimagenet": ("tab:cyan", 3)}
    for ax, zoom in zip(axes, (False, True)):
        for name, (color, s) in style.items():
            if name not in feats:
                continue
            p = ((feats[name][:1500] - mean) @ v).numpy()
            ax.scatter(p[:, 0], p[:, 1], s=s, c=color, alpha=0.5, label=name)
        if zoom:
            p = ((ref - mean) @ v).numpy()
            q = np.percentile(p, [0.5, 99.5], axis=0)
            pad = 0.3 * (q[1] - q[0])
            ax.set_xlim(q[0, 0] - pad[0], q[1, 0] + pad[0])
            ax.set_ylim(q[0, 1] - pad[1], q[1, 1] + pad[1])
            ax.set_title("zoom on the ID features")
        else:
            ax.set_title(title)
        ax.set_xlabel("PC1 (fitted on ID test features)")
        ax.set_ylabel("PC2")
    axes[0].legend(markerscale=4, fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--id", default="mnist", choices=sorted(MODELS))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--set", action="append", default=[], dest="sets", help="BALTrainer keyword KEY=VALUE")
    ap.add_argument("--seeds", default="0", help="comma-separated trainer seeds (mean over them)")
    ap.add_argument("--report", action="store_true", help="also load and score the test OOD sets")
    ap.add_argument("--backbone", help="train this timm classifier instead of loading the cached 'standard' "
                    "model (e.g. resnet18, the paper's)")
    ap.add_argument("--backbone-epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plot")
    ap.add_argument("--json")
    args = ap.parse_args()
    kw = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.sets)}
    torch.set_num_threads(args.threads)
    train, test, oods = sets_for(args.id, args.report)
    t0 = time.perf_counter()
    model = load_model(args.id) if args.backbone is None else train_backbone(args.backbone, train, args.backbone_epochs)
    backbone_s = time.perf_counter() - t0
    with torch.no_grad():
        acc = float(model.head(features(model, test.x)).argmax(1).eq(test.y).float().mean())
    print(f"classifier {args.backbone or 'cached standard'}: ID test accuracy {acc:.4f} ({backbone_s:.0f} s)")
    f_tr, y_tr = features(model, train.x), train.y.long()
    feats = {"id-test": features(model, test.x), **{k: features(model, v.x) for k, v in oods.items()}}
    # feature-space validation outlier for far-away features (what the diagnosis found noise to be): ID x 3
    feats["val-far"] = 3.0 * feats["id-test"][:2000]
    lo, hi = f_tr.min(0).values, f_tr.max(0).values
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        t0 = time.perf_counter()
        trainer = train_bal(model, f_tr, y_tr, args.epochs, seed=seed, **kw)
        elapsed = time.perf_counter() - t0
        all_feats = {**feats, **synthetic(trainer, f_tr, y_tr)}
        runs.append({"seed": seed, "train_s": elapsed, "history": trainer.history_,
                     "sets": stats(trainer, model, all_feats, lo, hi)})
    val = [k for k in feats if k.startswith("val-")]
    test_sets = [k for k in oods if not k.startswith("val-")]
    summary = {}
    for key in ("msp", "d", "bal"):
        for group, names in (("val", val), ("test", test_sets)):
            if names:
                summary[f"{group}_mean_auroc_{key}"] = float(np.mean([r["sets"][n][f"auroc_{key}"] for r in runs for n in names]))
    print(f"settings {kw} epochs {args.epochs} seeds {args.seeds}: train {np.mean([r['train_s'] for r in runs]):.1f}s/run")
    head = f"{'set':>14} {'out-box':>7} {'norm':>6} {'MSP':>5} {'D':>5} {'AUC msp':>7} {'AUC D':>6} {'AUC bal':>7}"
    print(head)
    for name, s in runs[0]["sets"].items():
        row = f"{name:>14} {s['outside_box']:7.3f} {s['norm_mean']:6.2f} {s['msp_mean']:5.3f} {s['d_mean']:5.3f}"
        if "auroc_bal" in s:
            aucs = [np.mean([r["sets"][name][f"auroc_{k}"] for r in runs]) for k in ("msp", "d", "bal")]
            row += f" {aucs[0]:7.4f} {aucs[1]:6.4f} {aucs[2]:7.4f}"
        print(row)
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"id": args.id, "backbone": args.backbone or "cached standard",
                                               "backbone_epochs": args.backbone_epochs if args.backbone else None,
                                               "id_accuracy": acc, "backbone_s": backbone_s,
                                               "settings": kw, "epochs": args.epochs,
                                               "summary": summary, "runs": runs}, indent=1))
    if args.plot:
        plot(args.plot, {**feats, **synthetic(trainer, f_tr, y_tr)},
             f"BAL features, {args.id} {args.backbone or 'standard'} model, {kw or 'defaults'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
