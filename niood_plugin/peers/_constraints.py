"""Two constraints the peer trainers declare beyond those of :mod:`niood_plugin.validation`
(same protocol: ``accepts(value)`` and ``__str__``, checked by
:func:`~niood_plugin.validation.validate_params`)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch

# TODO(lead): move TorchDevice and SequenceOf into niood_plugin/validation.py if the core needs them too
# (TorchDevice checks the syntax only, as before; niood_plugin/devices.py also checks availability).


class TorchDevice:
    """Anything :class:`torch.device` accepts (``"cpu"``, ``"cuda:0"``, a ``torch.device``)."""

    def accepts(self, value: Any) -> bool:
        try:
            torch.device(value)
        except (RuntimeError, TypeError):
            return False
        return True

    def __str__(self) -> str:
        return "a valid torch device"


class SequenceOf:
    """A list or tuple whose items each meet ``item`` and whose length is ``length`` (if given)
    and at least ``min_length``."""

    def __init__(self, item: Any, *, length: Optional[int] = None, min_length: int = 0, what: str = "items"):
        self.item, self.length, self.min_length, self.what = item, length, min_length, what

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            return False
        if self.length is not None and len(value) != self.length:
            return False
        return len(value) >= self.min_length and all(self.item.accepts(v) for v in value)

    def __str__(self) -> str:
        count = f"{self.length}" if self.length is not None else f"at least {self.min_length}"
        return f"a sequence of {count} {self.what}, each {self.item}"
