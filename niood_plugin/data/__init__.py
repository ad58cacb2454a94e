"""Datasets as in-memory tensors: real image sets through torchvision, generated noise, a synthetic set.

Every loader returns a :class:`TensorData`: ``x`` float32 ``[N, C, H, W]`` in ``[-1, 1]``
(``x = 2 * pixel / 255 - 1``, no mean/std normalisation) and ``y`` int64 ``[N]`` (``-1`` for
unlabeled sets).  Real images are held as uint8 until converted; nothing is decoded per item
at training time.

Real data is looked for only under the data root (``data_root``: ``--data-root``, else
``$NIOOD_DATA``, else ``~/.cache/niood/data``) and, with ``download=True``, in torchvision's
download (online users):

* ``mnist`` / ``fashionmnist``: torchvision's ``MNIST`` / ``FashionMNIST`` read
  ``<root>/MNIST/raw/*-ubyte`` resp. ``<root>/FashionMNIST/raw/*-ubyte``.  Also found, and put
  into that layout once: ``*-ubyte.gz`` files there, the IDX files (gzipped or not) in
  ``<root>/mnist/`` resp. ``<root>/fashion-mnist/``, or the archive ``<root>/mnist.tar`` resp.
  ``<root>/fashion-mnist.tar``.  ``benchmarks/get_data.sh`` fills the layout offline (npm,
  Debian, or the archives).
* ``cifar10-jpeg``: ``<root>/cifar10-jpeg/{train,test}/<class>/*.jpg`` (read with torchvision's
  ``ImageFolder``) or the archive ``<root>/cifar10-jpeg.tar.gz``; decoded once and cached as
  ``<root>/cifar10-jpeg/<split>.pt``.  The JPEG copy is lossy (about quality 75).
* ``tinyimagenet`` (test split only, unlabeled): ``<root>/tinyimagenet/test/images/*.JPEG`` or
  ``<root>/tinyimagenet-test.tar.gz``; cached as ``<root>/tinyimagenet/test.pt``.
* ``cifar10``, ``cifar100``, ``svhn``: torchvision's ``CIFAR10`` / ``CIFAR100`` / ``SVHN`` files
  under the root (``svhn`` under ``<root>/svhn``), downloaded by torchvision when online;
  ``cifar10`` falls back to the ``cifar10-jpeg`` copy (with a warning that it is lossy).
* ``textures`` (DTD, test split of partition 1) and ``places365`` (validation images, a fixed
  subset of 10,000), unlabeled, online only: torchvision's ``DTD`` / ``Places365`` files under
  ``<root>/dtd`` resp. ``<root>/places365``, decoded once to 64x64 and cached.
* ``gaussian``, ``uniform``, ``drawings``, ``synthetic``: generated, always present.

Training batches come from :class:`BatchLoader` (``TensorData.loader``): uint8 images in
memory, on the device, augmented per batch (:class:`CropFlip`: random crop and flip per image;
by name in :data:`AUGMENTATIONS`: ``crop-flip``, ``flip``, ``flip-translate2``).

Archives are unpacked once with torchvision's ``extract_archive`` after a check of their
members (no absolute paths, no ``..``).  A data root that is read-only (no write permission bit,
e.g. a shared copy) is never written into: archives are unpacked into, and IDX files and
decoded-image caches kept under, the default data root instead.

A dataset that cannot be found raises :class:`~niood_plugin.errors.DatasetNotFoundError` with a
one-line message naming the places looked in and how to get it; a corrupt file raises
:class:`~niood_plugin.errors.DataFormatError` naming the file.

Datasets are registered by name in :data:`DATASETS` (a :class:`~niood_plugin.registry.Registry`);
:func:`register_dataset` adds one, with a :class:`~niood_plugin.data.source.Source` saying where
its files are.

Modules, each importing only those listed before it: ``storage`` (data root, archives),
``augment``, ``tensors``, ``generated``; ``source`` (:class:`DatasetSpec`, :class:`~niood_plugin.data.source.Source`,
helpers shared by the sources) and ``decode`` (image decoding and its cache); the source families
``images``, ``torchvision_sets``, ``web_sets`` (none imports another); ``catalog`` (every name).
"""
from .augment import AUGMENTATIONS, BatchLoader, CropFlip, build_augmentation, list_augmentations
from .catalog import (ALIASES, DATASETS, SPLITS, DatasetSpec, dataset_status, get_spec, list_datasets,
                      load_dataset, register_dataset)
from .generated import DEFAULT_DRAWINGS_SIZE, DEFAULT_NOISE_SIZE, make_drawings, make_noise, make_synthetic
from .decode import decode_images
from .storage import default_data_root
from .tensors import LUMA_WEIGHTS, TensorData, subset_indices, to_geometry

__all__ = [
    "AUGMENTATIONS", "BatchLoader", "CropFlip", "build_augmentation", "list_augmentations",
    "DATASETS", "ALIASES", "SPLITS", "DatasetSpec", "TensorData", "LUMA_WEIGHTS", "DEFAULT_NOISE_SIZE",
    "default_data_root", "register_dataset", "list_datasets", "get_spec", "dataset_status", "load_dataset",
    "to_geometry", "subset_indices", "make_synthetic", "make_noise", "make_drawings", "DEFAULT_DRAWINGS_SIZE", "decode_images",
]
