"""The ``nn.Module``s behind the attacked callables: eval mode, no parameter gradients, device."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..devices import module_device as _device_of
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


def module_device(obj: object) -> torch.device | None:
    """The device of the first parameter (else buffer) of the module behind ``obj``, if any."""
    for module in owning_modules(obj):
        device = _device_of(module)
        if device is not None:
            return device
    return None
