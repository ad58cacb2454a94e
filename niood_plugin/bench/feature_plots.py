"""Feature-space plots (report section 9.5): PCA and t-SNE (scikit-learn) of the penultimate
features of ID test images, of the method's own generated outliers (when it has them) and of
each OOD set, one PNG per method with the two projections side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..files import atomic_savefig
from ..pool import dequantize
from .plots import pyplot

__all__ = ["feature_space"]


def _pick(features: torch.Tensor, n: int, rng: np.random.Generator) -> np.ndarray:
    f = features.float().numpy()
    return f if len(f) <= n else f[rng.choice(len(f), n, replace=False)]


@torch.inference_mode()
def _sample_features(tm, device: torch.device, batch_size: int) -> Optional[torch.Tensor]:
    if tm.samples is None or not len(tm.samples):
        return None
    tm.model.eval()
    return torch.cat([tm.model.features(dequantize(tm.samples[i:i + batch_size]).to(device)).float().cpu()
                      for i in range(0, len(tm.samples), batch_size)])


def feature_space(out: Path, tm, features: dict[str, torch.Tensor], id_name: str, device: torch.device,
                  n: int = 400, seed: int = 0, batch_size: int = 512) -> Path:
    """``features``: penultimate features by set name (the ID test set under ``id_name``)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    groups = {f"{id_name} (ID)": _pick(features[id_name], n, rng)}
    generated = _sample_features(tm, device, batch_size)
    if generated is not None:
        groups[f"{tm.method} outliers (generated)"] = _pick(generated, n, rng)
    groups.update({name: _pick(f, n, rng) for name, f in features.items() if name != id_name})
    allf = np.concatenate(list(groups.values()))
    sizes = np.cumsum([0] + [len(g) for g in groups.values()])
    pca = PCA(n_components=2, random_state=seed).fit(groups[f"{id_name} (ID)"]).transform(allf)
    tsne = TSNE(n_components=2, init="pca", perplexity=min(30.0, len(allf) - 1.0), random_state=seed).fit_transform(allf)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, emb, title in ((axes[0], pca, "PCA (fitted on ID features)"), (axes[1], tsne, "t-SNE")):
        for i, name in enumerate(groups):
            pts = emb[sizes[i]:sizes[i + 1]]
            ax.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.6, label=name)
        ax.set(title=title, xticks=[], yticks=[])
    axes[1].legend(fontsize=7, markerscale=3, loc="best")
    fig.suptitle(f"{tm.method}: penultimate features ({n} images per set)", fontsize=10)
    path = out / f"features_{tm.method}.png"
    atomic_savefig(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
