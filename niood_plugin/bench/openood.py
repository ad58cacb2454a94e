"""``niood-bench run --suite openood``: pytorch-ood's OpenOOD benchmarks as the run's test sets.

``pytorch_ood.benchmark.CIFAR10_OpenOOD`` / ``CIFAR100_OpenOOD`` (OpenOOD v1.5's image lists:
near-OOD CIFAR-100 or CIFAR-10 and Tiny ImageNet, far-OOD MNIST, SVHN, Textures, Places365)
give the ID test set and the OOD sets; the methods train on our ID training set as always.
pytorch-ood downloads the data on first use (with ``gdown``) into ``<data root>/openood``;
offline, without it, the run stops before any training with one line that says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..data import TensorData, get_spec, load_dataset, subset_indices, to_geometry
from ..data.storage import resolve_root
from ..errors import DatasetNotFoundError

#: ID set -> (pytorch-ood benchmark class, near-OOD names); the other OOD sets are far-OOD
OPENOOD_BENCHMARKS = {"cifar10": ("CIFAR10_OpenOOD", ("CIFAR100", "TinyImageNet")),
                      "cifar100": ("CIFAR100_OpenOOD", ("CIFAR10", "TinyImageNet"))}


@dataclass
class OpenOODSuite:
    """What the harness needs of a suite: ID train and test sets, OOD sets by name, near-OOD names."""

    train: TensorData
    test: TensorData
    oods: dict[str, TensorData]
    near: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)


def openood_suite(cfg: Any) -> OpenOODSuite:
    """The OpenOOD benchmark of ``cfg.id`` (``cfg.data_root``/openood), as in-memory tensors."""
    import pytorch_ood.benchmark as benchmarks
    from torchvision.transforms import CenterCrop, Compose, Resize, ToTensor

    name, near = OPENOOD_BENCHMARKS[cfg.id]
    root = resolve_root(cfg.data_root) / "openood"
    size = get_spec(cfg.id).shape[1]  # OpenOOD's own test-time preprocessing: resize, centre crop
    try:
        bench = getattr(benchmarks, name)(root=str(root), transform=Compose([Resize(size), CenterCrop(size),
                                                                              ToTensor()]), download=True)
    except Exception as exc:  # no gdown, no network, or an incomplete download
        why = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DatasetNotFoundError(
            f"pytorch-ood's {name} (OpenOOD's test sets) is not under {root} and could not be downloaded "
            f"({type(exc).__name__}: {why}); online it downloads itself (pip install gdown), offline use "
            "--suite cifar10") from None
    train = load_dataset(cfg.id, "train", cfg.data_root, limit=cfg.train_limit, seed=cfg.seed)
    shape = train.image_shape
    test = _tensors(bench.test_sets(known=True, unknown=False)[0], f"{cfg.id}-openood", shape, cfg)
    oods = {n: _tensors(ds, n, shape, cfg) for n, ds in zip(bench.ood_names, bench.test_sets(known=False))}
    return OpenOODSuite(train, test, oods, near)


def _tensors(ds: Dataset, name: str, shape: tuple[int, int, int], cfg: Any) -> TensorData:
    """A dataset of (image tensor in [0, 1], label) as TensorData in [-1, 1] of ``shape``."""
    xs, ys = [], []
    for x, y in DataLoader(ds, batch_size=256, num_workers=0):
        xs.append(to_geometry(x.float() * 2 - 1, shape))
        ys.append(torch.as_tensor(y).long())
    x, y = torch.cat(xs), torch.cat(ys)
    idx = subset_indices(y, cfg.test_limit, seed=cfg.seed)
    return TensorData(x, y, name) if idx is None else TensorData(x[idx], y[idx], name)
