"""Our benchmarks as pytorch-ood benchmarks: one definition, used by ``niood-bench`` and by anyone.

:class:`OneVsRest` is a :class:`pytorch_ood.benchmark.Benchmark`: ``train_set()`` is the ID
training set, ``test_sets()`` pairs the ID test set with each OOD set (OOD targets ``-1``, as
pytorch-ood marks them), and pytorch-ood's own ``evaluate`` scores any detectors on them with
``OODMetrics``.  The named suites fix the OOD sets of our committed benchmarks:

>>> from niood_plugin.suites import MNISTOneVsRest
>>> suite = MNISTOneVsRest()                       # data under the data root, as niood-bench finds it
>>> rows = suite.evaluate([UEDetector(model, garbage_index=10), MaxSoftmax(id_model)],
...                       loader_kwargs={"batch_size": 512})

``niood-bench run --suite NAME`` runs the suite :data:`SUITES` holds under ``NAME``: ours, and
``openood`` (:class:`OpenOOD`, pytorch-ood's ``CIFAR10_OpenOOD`` / ``CIFAR100_OpenOOD``).  Each
entry is a :class:`OneVsRest` class; what the harness asks of it is the same for every entry:
:meth:`~OneVsRest.settings` (the run settings it fixes), :meth:`~OneVsRest.check_config`,
:meth:`~OneVsRest.from_config` (the loaded suite) and :meth:`~OneVsRest.recorded_settings`.
Images are float in [-1, 1], converted to the ID geometry; ``test_limit`` keeps the same
class-balanced subsets as ``niood-bench --test-limit``.
"""
from __future__ import annotations

import logging
from typing import Any, ClassVar, Optional, Sequence

import torch
from pytorch_ood.benchmark import Benchmark
from torch.utils.data import ConcatDataset, DataLoader, Dataset, TensorDataset

from .data import TensorData, dataset_status, get_spec, load_dataset, subset_indices, to_geometry
from .errors import ConfigError, DatasetNotFoundError, InvalidArgumentError
from .registry import Registry

log = logging.getLogger(__name__)

__all__ = ["OneVsRest", "MNISTOneVsRest", "FashionMNISTOneVsRest", "CIFAR10OneVsRest", "OpenOOD", "SUITES",
           "list_suites", "suite_settings", "load_suite"]


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

    #: near-OOD set names (OpenOOD's ``nearood`` group); ``None``: no near/far grouping
    near: Optional[tuple[str, ...]] = None

    @classmethod
    def settings(cls) -> dict[str, Any]:
        """The run settings this suite fixes: ``id``, ``ood`` and ``ood_optional`` ({} without ``id_name``)."""
        if cls.id_name is None:
            return {}
        return {"id": cls.id_name, "ood": list(cls.default_ood), "ood_optional": list(cls.default_ood_optional)}

    @classmethod
    def check_config(cls, cfg: Any, name: str) -> None:
        """Refuse a run configuration (``id``, ``ood``, ...) that does not fit suite ``name``."""
        wanted = cls.settings()
        if any(getattr(cfg, k) != v for k, v in wanted.items()):
            raise ConfigError(f"suite {name!r} is id={wanted['id']!r}, ood={wanted['ood']}, ood_optional="
                              f"{wanted['ood_optional']}: leave those to it (BenchConfig(**suite_settings(...)) in "
                              "Python), or drop the suite")

    @classmethod
    def from_config(cls, cfg: Any) -> "OneVsRest":
        """The suite of a run configuration (``id``, ``ood``, ``ood_optional``, ``data_root``, the limits, ``seed``)."""
        return cls(cfg.data_root, id=cfg.id, ood=cfg.ood, ood_optional=cfg.ood_optional,
                   train_limit=cfg.train_limit, test_limit=cfg.test_limit, seed=cfg.seed)

    def recorded_settings(self) -> dict[str, Any]:
        """Settings a run records after loading, where the suite chose them ({}: the configuration's stand)."""
        return {}

    @classmethod
    def planned_set_names(cls, cfg: Any) -> list[str]:
        """The OOD set names a run of ``cfg`` will write files for, before anything is loaded."""
        return list(cfg.ood) + list(cfg.ood_optional)

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
    """CIFAR-10 against Tiny ImageNet's test part (``tinyimagenet-test``: 8,000 images; the other
    2,000, ``tinyimagenet-val``, are kept apart for choosing recipes), MNIST, Fashion-MNIST and
    two noise sets; SVHN, CIFAR-100, Textures and Places365 when present (torchvision downloads
    them online)."""

    id_name = "cifar10"
    default_ood = ("tinyimagenet-test", "mnist", "fashionmnist", "gaussian", "uniform")
    default_ood_optional = ("svhn", "cifar100", "textures", "places365")


class OpenOOD(OneVsRest):
    """pytorch-ood's OpenOOD v1.5 benchmark of ``id`` (``cifar10`` or ``cifar100``): its ID test set
    and OOD sets (near-OOD CIFAR-100 or CIFAR-10 and Tiny ImageNet; far-OOD MNIST, SVHN, Textures,
    Places365), our ID training set.  pytorch-ood downloads the data on first use (with
    ``gdown``) into ``<root>/openood``; offline, without it, this raises
    :class:`~niood_plugin.errors.DatasetNotFoundError` with one line that says so."""

    #: ID set -> (pytorch-ood benchmark class, near-OOD names); the other OOD sets are far-OOD
    BENCHMARKS: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {
        "cifar10": ("CIFAR10_OpenOOD", ("CIFAR100", "TinyImageNet")),
        "cifar100": ("CIFAR100_OpenOOD", ("CIFAR10", "TinyImageNet"))}

    def __init__(self, root: Optional[str] = None, *, id: str = "cifar10", train_limit: Optional[int] = None,
                 test_limit: Optional[int] = None, seed: int = 0):
        import pytorch_ood.benchmark as benchmarks
        from torchvision.transforms import CenterCrop, Compose, Resize, ToTensor

        from .data.storage import resolve_root

        if id not in self.BENCHMARKS:
            raise ConfigError(f"OpenOOD has test sets for id {' or '.join(self.BENCHMARKS)}, not {id!r}")
        name, self.near = self.BENCHMARKS[id]
        where = resolve_root(root) / "openood"
        size = get_spec(id).shape[1]  # OpenOOD's own test-time preprocessing: resize, centre crop
        try:
            bench = getattr(benchmarks, name)(root=str(where), transform=Compose([Resize(size), CenterCrop(size),
                                                                                   ToTensor()]), download=True)
        except Exception as exc:  # no gdown, no network, or an incomplete download
            why = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise DatasetNotFoundError(
                f"pytorch-ood's {name} (OpenOOD's test sets) is not under {where} and could not be downloaded "
                f"({type(exc).__name__}: {why}); online it downloads itself (pip install gdown), offline use "
                "--suite cifar10") from None
        self.root, self.id = root, id
        self.train = load_dataset(id, "train", root, limit=train_limit, seed=seed)
        shape = self.train.image_shape
        self.test = as_tensor_data(bench.test_sets(known=True, unknown=False)[0], f"{id}-openood", shape,
                                   test_limit, seed)
        self.oods = {n: as_tensor_data(ds, n, shape, test_limit, seed)
                     for n, ds in zip(bench.ood_names, bench.test_sets(known=False))}
        self.skipped: dict[str, str] = {}
        self.ood_names = list(self.oods)

    @classmethod
    def settings(cls) -> dict[str, Any]:
        """Nothing: the ID set is the run's (one of :attr:`BENCHMARKS`), the OOD sets OpenOOD's."""
        return {}

    @classmethod
    def check_config(cls, cfg: Any, name: str) -> None:
        if cfg.id not in cls.BENCHMARKS:
            raise ConfigError(f"--suite {name} has test sets for --id {' or '.join(cls.BENCHMARKS)}, not {cfg.id!r}")

    @classmethod
    def from_config(cls, cfg: Any) -> "OpenOOD":
        return cls(cfg.data_root, id=cfg.id, train_limit=cfg.train_limit, test_limit=cfg.test_limit, seed=cfg.seed)

    def recorded_settings(self) -> dict[str, Any]:
        """The OOD sets scored (OpenOOD's), not the configuration's list."""
        return {"ood": list(self.oods), "ood_optional": []}

    @classmethod
    def planned_set_names(cls, cfg: Any) -> list[str]:
        """OpenOOD names its sets once downloaded: a placeholder as long as a long name."""
        return ["x" * 32]


def as_tensor_data(ds: Dataset, name: str, shape: tuple[int, int, int], limit: Optional[int] = None,
                   seed: int = 0) -> TensorData:
    """A dataset of (image tensor in [0, 1], label) as TensorData in [-1, 1] of ``shape``
    (a class-balanced subset of ``limit`` images, as ``test_limit`` takes)."""
    xs, ys = [], []
    for x, y in DataLoader(ds, batch_size=256, num_workers=0):
        xs.append(to_geometry(x.float() * 2 - 1, shape))
        ys.append(torch.as_tensor(y).long())
    x, y = torch.cat(xs), torch.cat(ys)
    idx = subset_indices(y, limit, seed=seed)
    return TensorData(x, y, name) if idx is None else TensorData(x[idx], y[idx], name)


#: The named suites (``niood-bench run --suite NAME``): :class:`OneVsRest` classes.
SUITES: Registry[type] = Registry("suite")
SUITES.register("mnist", MNISTOneVsRest)
SUITES.register("fashionmnist", FashionMNISTOneVsRest)
SUITES.register("cifar10", CIFAR10OneVsRest)
SUITES.register("openood", OpenOOD)


def list_suites() -> list[str]:
    """The names of :data:`SUITES`."""
    return SUITES.list()


def suite_settings(name: str) -> dict[str, Any]:
    """The run settings suite ``name`` fixes (ours: ``id``, ``ood`` and ``ood_optional``; ``openood``: none)."""
    return SUITES.get(name).settings()


def load_suite(cfg: Any) -> OneVsRest:
    """The suite of a run configuration: ``SUITES[cfg.suite]``, or a :class:`OneVsRest` over
    ``cfg.id`` and ``cfg.ood`` when ``cfg.suite`` is ``None``."""
    cls = OneVsRest if cfg.suite is None else SUITES.get(cfg.suite)
    return cls.from_config(cfg)
