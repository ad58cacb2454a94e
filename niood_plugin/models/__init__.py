"""Models by name: the report's architectures and any timm model.

>>> clf = build_classifier("report28", num_outputs=11, in_channels=1)   # K+1 = 11 logits
>>> gen = build_generator("report28", num_outputs=11, nz=100, out_channels=1)   # conditioned on K+1
>>> clf = build_classifier("resnet18-cifar", num_outputs=11, in_channels=3, width=16)  # 32x32
>>> clf = build_classifier("airnet", num_outputs=11, in_channels=3, width=32)  # 32/128/128, then init_whitening
>>> clf = build_classifier("resnet18", num_outputs=11, in_channels=3)   # any timm name
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..registry import Registry
from ..validation import InstanceOf, validate_params

from .protocol import FeatureClassifier, check_feature_classifier, check_garbage_outputs
from .layout import as_channels_last, to_channels_last
from .restrict import DropOutput, add_garbage_output, head_linear, last_linear
from .report import (ARCH_CONSTRAINTS, CONDITIONINGS, Report28Classifier, Report28Generator, Report32Classifier,
                     Report32Generator)
from .timm_adapter import TimmClassifier
from .cifar_resnet import cifar_resnet, resnet10_cifar, resnet18_cifar
from .airnet import AirNet, airnet, init_whitening
from .tta import FlipAveraged
from ..errors import InvalidArgumentError

_BUILD_CONSTRAINTS = {"name": [InstanceOf(str, "a registered or timm model name (str)")],
                      **{k: ARCH_CONSTRAINTS[k] for k in ("num_outputs", "in_channels", "out_channels", "nz")}}

CLASSIFIERS: Registry[Callable[..., nn.Module]] = Registry("classifier")
GENERATORS: Registry[Callable[..., nn.Module]] = Registry("generator")
CLASSIFIERS.register("report28", Report28Classifier)
CLASSIFIERS.register("report32", Report32Classifier)
CLASSIFIERS.register("resnet10-cifar", resnet10_cifar)
CLASSIFIERS.register("resnet18-cifar", resnet18_cifar)
CLASSIFIERS.register("airnet", airnet)
GENERATORS.register("report28", Report28Generator)
GENERATORS.register("report32", Report32Generator)


def register_classifier(name: str, factory: Callable[..., nn.Module]) -> None:
    """Register ``factory(num_outputs=, in_channels=, **kw)`` under ``name`` (warns if it replaces one)."""
    CLASSIFIERS.register(name, factory)


def register_generator(name: str, factory: Callable[..., nn.Module]) -> None:
    """Register ``factory(num_outputs=, nz=, out_channels=, conditioning=, **kw)`` under ``name``
    (``num_outputs``: the conditioning's size, the classifier's K + 1 outputs)."""
    GENERATORS.register(name, factory)


def list_classifiers() -> list[str]:
    """Our registered names; any ``timm.list_models()`` name is accepted as well."""
    return CLASSIFIERS.list()


def list_generators() -> list[str]:
    return GENERATORS.list()


def build_classifier(name: str, num_outputs: int, in_channels: int, **kwargs) -> nn.Module:
    """A classifier returning exactly ``num_outputs`` logits (pass K+1 for the garbage model).

    ``name`` is one of :func:`list_classifiers` or any timm model name.
    """
    validate_params(dict(name=name, num_outputs=num_outputs, in_channels=in_channels), _BUILD_CONSTRAINTS,
                    "build_classifier")
    num_outputs, in_channels = int(num_outputs), int(in_channels)  # numpy ints become plain ints
    if name in CLASSIFIERS:
        return CLASSIFIERS.create(name, num_outputs=num_outputs, in_channels=in_channels, **kwargs)
    from .timm_adapter import _timm

    if _timm().is_model(name):
        return TimmClassifier.create(name, num_outputs, in_channels, **kwargs)
    raise InvalidArgumentError(
        f"unknown classifier {name!r}: use one of {list_classifiers()} or a timm model name "
        "(see timm.list_models())"
    )


def build_generator(name: str, num_outputs: int, nz: int = 100, out_channels: int = 1,
                    conditioning: str = "vector", **kwargs) -> nn.Module:
    """A conditional generator ``G(z, vector=, matrix=)`` producing images in [-1, 1].

    ``num_outputs`` is the size of the conditioning: the outputs of the classifier it is
    inverted against, ``K + 1`` for a garbage-class model (the garbage output included).
    """
    validate_params(dict(name=name, num_outputs=num_outputs, nz=nz, out_channels=out_channels), _BUILD_CONSTRAINTS,
                    "build_generator")
    return GENERATORS.create(name, num_outputs=int(num_outputs), nz=int(nz), out_channels=int(out_channels),
                             conditioning=conditioning, **kwargs)


def generator_for_shape(image_shape: tuple[int, int, int]) -> str:
    """The report generator matching ``(C, H, W)``: ``report28`` or ``report32``."""
    size = image_shape[1:]
    if size == (28, 28):
        return "report28"
    if size == (32, 32):
        return "report32"
    raise InvalidArgumentError(
        f"no registered generator makes {size[0]}x{size[1]} images; resize the data to 28x28 or "
        "32x32, or pass generator=... / register_generator(...)"
    )


__all__ = [
    "AirNet", "CLASSIFIERS", "CONDITIONINGS", "DropOutput", "GENERATORS", "FeatureClassifier", "head_linear", "last_linear", "Report28Classifier", "Report28Generator",
    "Report32Classifier", "Report32Generator", "TimmClassifier", "build_classifier",
    "build_generator", "check_feature_classifier", "check_garbage_outputs", "cifar_resnet", "resnet10_cifar", "resnet18_cifar", "generator_for_shape", "list_classifiers",
    "list_generators", "register_classifier", "register_generator", "as_channels_last", "to_channels_last",
    "airnet", "init_whitening", "FlipAveraged", "add_garbage_output",
]
