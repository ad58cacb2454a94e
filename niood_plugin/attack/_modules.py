"""The ``nn.Module``s behind the attacked callables: eval mode, no parameter gradients, device."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..devices import module_device as _device_of
from ..errors import InvalidArgumentError, InvalidTypeError
from ..validation import Callable_, check_param


def owning_modules(*objs: object) -> list[nn.Module]:
    """The ``nn.Module``s behind callables: the module itself or a bound method's owner."""
    found: list[nn.Module] = []
    for obj in objs:
        owner = obj if isinstance(obj, nn.Module) else getattr(obj, "__self__", None)
        if isinstance(owner, nn.Module) and all(owner is not m for m in found):
            found.append(owner)
    return found


@contextmanager
def eval_mode(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Put ``modules`` in eval mode and restore every submodule's own flag afterwards."""
    saved = [(m, m.training) for root in modules for m in root.modules()]
    try:
        for root in modules:
            root.eval()
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def resolve_encoder(encoder: nn.Module | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``encoder.features`` for a :class:`~niood_plugin.models.FeatureClassifier`, else ``encoder``."""
    if isinstance(encoder, nn.Module) and callable(getattr(encoder, "features", None)):
        return encoder.features  # type: ignore[return-value]
    check_param("encoder", encoder, [Callable_()])
    return encoder


def encode(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``f(x)`` as ``[B, D]`` features, after checking that ``f`` returned one tensor per sample."""
    z = f(x)
    if not isinstance(z, Tensor):
        raise InvalidTypeError(f"the encoder returned a {type(z).__name__}, not a feature tensor [B, ...]: pass a "
                               "callable that returns one tensor (e.g. lambda x: model(x)[0])")
    if z.dim() < 1 or z.shape[0] != x.shape[0]:
        raise InvalidArgumentError(f"the encoder returned shape {tuple(z.shape)} for a batch of {x.shape[0]} images: "
                                   "it must return features [B, ...], one row per image")
    return z.reshape(z.shape[0], -1)


def module_device(obj: object) -> torch.device | None:
    """The device of the first parameter (else buffer) of the module behind ``obj``, if any."""
    for module in owning_modules(obj):
        device = _device_of(module)
        if device is not None:
            return device
    return None
