"""Our benchmarks as pytorch-ood benchmarks: one definition, used by ``niood-bench`` and by anyone.

:class:`OneVsRest` is a :class:`pytorch_ood.benchmark.Benchmark`: ``train_set()`` is the ID
training set, ``test_sets()`` pairs the ID test set with each OOD set (OOD targets ``-1``, as
pytorch-ood marks them), and pytorch-ood's own ``evaluate`` scores any detectors on them with
``OODMetrics``.  The named suites fix the OOD sets of our committed benchmarks:

>>> from niood_plugin.suites import MNISTOneVsRest
>>> suite = MNISTOneVsRest()                       # data under the data root, as niood-bench finds it
>>> rows = suite.evaluate([UEDetector(model, garbage_index=10), MaxSoftmax(id_model)],
...                       loader_kwargs={"batch_size": 512})

``niood-bench run --suite mnist`` runs the same suite (``--suite openood`` runs pytorch-ood's
``CIFAR10_OpenOOD`` instead, see :mod:`niood_plugin.bench.openood`).  Images are float in
[-1, 1], converted to the ID geometry; ``test_limit`` keeps the same class-balanced subsets as
``niood-bench --test-limit``.
"""
from __future__ import annotations

import logging
from typing import Any, ClassVar, Optional, Sequence

import torch
from pytorch_ood.benchmark import Benchmark
from torch.utils.data import ConcatDataset, Dataset, TensorDataset

from .data import TensorData, dataset_status, load_dataset
from .errors import ConfigError, DatasetNotFoundError, InvalidArgumentError
from .registry import Registry

log = logging.getLogger(__name__)

__all__ = ["OneVsRest", "MNISTOneVsRest", "FashionMNISTOneVsRest", "CIFAR10OneVsRest", "SUITES", "list_suites",
           "suite_settings"]


class OneVsRest(Benchmark):
    """ID set ``id`` against each of ``ood``, one at a time.

    :param root: the data root (default: ``$NIOOD_DATA``, else ``~/.cache/niood/data``)
    :param id: the in-distribution dataset (labelled)
    :param ood: OOD sets; a missing one is an error
    :param ood_optional: OOD sets scored when present, else skipped with a note (:attr:`skipped`)
    :param train_limit: ID training images (class-balanced subset; ``None``: all)
    :param test_limit: images per test set (``None``: all; generated sets 10,000)
    :param seed: seeds the subsets and the generated sets
    """

    id_name: ClassVar[Optional[str]] = None
    default_ood: ClassVar[tuple[str, ...]] = ()
    default_ood_optional: ClassVar[tuple[str, ...]] = ()

    def __init__(self, root: Optional[str] = None, *, id: Optional[str] = None, ood: Optional[Sequence[str]] = None,
                 ood_optional: Optional[Sequence[str]] = None, train_limit: Optional[int] = None,
                 test_limit: Optional[int] = None, seed: int = 0):
        id = id or self.id_name
        if id is None:
            raise ConfigError("OneVsRest needs the in-distribution set: OneVsRest(id='mnist', ood=[...])")
        ood = list(self.default_ood if ood is None else ood)
        optional = list(self.default_ood_optional if ood_optional is None else ood_optional)
        self.root, self.id = root, id
        self.train = load_dataset(id, "train", root, limit=train_limit, seed=seed)
        if self.train.num_classes is None:
            raise ConfigError(f"{id!r} has no class labels and cannot be the in-distribution set")
        shape = self.train.image_shape
        self.test = load_dataset(id, "test", root, limit=test_limit, seed=seed)
        self.oods: dict[str, TensorData] = {
            name: load_dataset(name, "test", root, image_shape=shape, limit=test_limit, seed=seed) for name in ood}
        #: optional OOD sets not found: name -> why
        self.skipped: dict[str, str] = {}
        for name in optional:
            if name in self.oods:
                continue
            try:
                self.oods[name] = load_dataset(name, "test", root, image_shape=shape, limit=test_limit, seed=seed)
            except DatasetNotFoundError as exc:
                self.skipped[name] = str(exc)
                log.warning("optional OOD set %s skipped: not available (%s)", name,
                            dataset_status(name)["how_to_get"])
        self.ood_names = list(self.oods)

    @property
    def num_classes(self) -> int:
        return int(self.train.num_classes)

    def train_set(self) -> Dataset:
        """The ID training images and labels."""
        return self.train.dataset()

    def test_sets(self, known: bool = True, unknown: bool = True) -> list[Dataset]:
        """Per OOD set (in :attr:`ood_names` order): ID test + that set with targets -1; with
        ``unknown=False`` the ID test set alone, with ``known=False`` the OOD sets alone."""
        if not (known or unknown):
            raise InvalidArgumentError("test_sets: known and unknown cannot both be False")
        oods = [TensorDataset(o.x, torch.full((len(o),), -1, dtype=torch.long)) for o in self.oods.values()]
        if not unknown:
            return [self.test.dataset()]
        if not known:
            return oods
        return [ConcatDataset([self.test.dataset(), o]) for o in oods]


class MNISTOneVsRest(OneVsRest):
    """MNIST against Fashion-MNIST, CIFAR-10 (JPEG copy), Tiny ImageNet and two noise sets (our
    committed MNIST benchmark)."""

    id_name = "mnist"
    default_ood = ("fashionmnist", "cifar10-jpeg", "tinyimagenet", "gaussian", "uniform")


class FashionMNISTOneVsRest(OneVsRest):
    """Fashion-MNIST against MNIST, CIFAR-10 (JPEG copy), Tiny ImageNet and two noise sets."""

    id_name = "fashionmnist"
    default_ood = ("mnist", "cifar10-jpeg", "tinyimagenet", "gaussian", "uniform")


class CIFAR10OneVsRest(OneVsRest):
    """CIFAR-10 against Tiny ImageNet, MNIST, Fashion-MNIST and two noise sets; SVHN, CIFAR-100,
    Textures and Places365 when present (torchvision downloads them online)."""

    id_name = "cifar10"
    default_ood = ("tinyimagenet", "mnist", "fashionmnist", "gaussian", "uniform")
    default_ood_optional = ("svhn", "cifar100", "textures", "places365")


#: The named suites (``niood-bench run --suite NAME``).
SUITES: Registry[type] = Registry("suite")
SUITES.register("mnist", MNISTOneVsRest)
SUITES.register("fashionmnist", FashionMNISTOneVsRest)
SUITES.register("cifar10", CIFAR10OneVsRest)


def list_suites() -> list[str]:
    """Our suites, then ``openood`` (pytorch-ood's OpenOOD benchmark for CIFAR-10/100)."""
    return SUITES.list() + ["openood"]


def suite_settings(name: str) -> dict[str, Any]:
    """The ``id``, ``ood`` and ``ood_optional`` settings of our suite ``name``."""
    cls = SUITES.get(name)
    return {"id": cls.id_name, "ood": list(cls.default_ood), "ood_optional": list(cls.default_ood_optional)}
