"""Device names, checked once: ``torch.device`` syntax plus availability."""
from __future__ import annotations

from typing import Any

import torch

from .validation import InvalidParameterError

__all__ = ["Device", "resolve_device", "module_device"]


def resolve_device(device: "str | torch.device") -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine; one clear error otherwise."""
    if isinstance(device, bool) or not isinstance(device, (str, torch.device)):
        raise InvalidParameterError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidParameterError(f"device {device!r} is not a torch device name: use 'cpu', 'cuda' or "
                                    "'cuda:<index>' (lower case)") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidParameterError(f"device {device!r}: CUDA is not available on this machine; use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InvalidParameterError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA "
                                        "device(s)")
        return dev
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InvalidParameterError(f"device {device!r}: Apple MPS is not available on this machine; use 'cpu'")
        return dev
    raise InvalidParameterError(f"device {device!r} is not supported: use 'cpu' or 'cuda'")


def module_device(module: "torch.nn.Module") -> "torch.device | None":
    """The device of ``module``'s first parameter (else buffer); ``None`` if it has neither."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return None


class Device:
    """Constraint (:mod:`niood_plugin.validation` protocol): a device name or ``torch.device``
    that exists on this machine (see :func:`resolve_device`)."""

    def accepts(self, value: Any) -> bool:
        try:
            resolve_device(value)
        except InvalidParameterError:
            return False
        return True

    def __str__(self) -> str:
        return "an available torch device ('cpu', 'cuda', 'cuda:<index>')"
