"""Sets bundled with a dependency, read from the installed package (nothing to download):
scikit-learn's ``load_digits`` (the UCI optical recognition handwritten digits, 1,797 images of
8x8 pixels with 17 grey levels), used as a far-OOD validation set beside Tiny ImageNet-val.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch

from .source import DatasetSpec, Loaded, Source, short_error

__all__ = ["SklearnSource"]


class SklearnSource(Source):
    """``sklearn.datasets.<loader>()`` (a set shipped inside scikit-learn): its ``images``
    (``[N, H, W]`` from 0 to ``levels - 1``) as uint8 ``[N, 1, H, W]`` scaled to 0..255, and its
    ``target``; the one split is ``test`` (the set is small and meant for OOD use here)."""

    def __init__(self, loader: str, levels: int, hint: str):
        super().__init__(hint)
        self.loader, self.levels = loader, levels

    def _fn(self):
        return getattr(importlib.import_module("sklearn.datasets"), self.loader)

    def places(self, spec: DatasetSpec, root: Path) -> list[Path]:
        return []  # inside the installed scikit-learn, not under the data root

    def find(self, spec: DatasetSpec, root: Path):
        try:
            return Path(importlib.import_module("sklearn.datasets").__file__).parent, spec.lossy
        except ImportError:
            return None

    def load(self, spec: DatasetSpec, root: Path, split: str, download: bool) -> Loaded:
        try:
            bunch = self._fn()()
        except (ImportError, OSError) as e:
            raise self.not_found(spec, root, short_error(e)) from e
        images = torch.as_tensor(bunch.images, dtype=torch.float64)
        x = (images * 255.0 / (self.levels - 1)).round_().clamp_(0, 255).to(torch.uint8)[:, None]
        return x, torch.as_tensor(bunch.target, dtype=torch.int64), [str(c) for c in bunch.target_names]
