"""One registry idiom for everything chosen by name (models, methods, presets, datasets).

As in timm: ``register`` (also as a decorator), ``create`` (call the registered factory),
``get`` and ``list``.  Registering a name twice replaces the entry with a warning.

>>> MODELS = Registry("classifier")
>>> @MODELS.register("tiny")
... def tiny(num_outputs: int): ...
>>> MODELS.list()
['tiny']
"""
from __future__ import annotations

import warnings
from typing import Any, Generic, Iterator, Optional, TypeVar

from .errors import ConfigError, InvalidArgumentError, InvalidTypeError

T = TypeVar("T")

__all__ = ["Registry", "UnknownNameError"]


class UnknownNameError(ConfigError, KeyError):
    """A name that is not registered (a ``ValueError`` and a ``KeyError``)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Named entries of one kind (``kind`` is used in messages: "unknown <kind> 'x'")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: Optional[T] = None) -> Any:
        """``register(name, obj)`` or ``@register(name)``; returns ``obj``."""
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def add(o: T) -> T:
            if name in self._entries:
                warnings.warn(f"{self.kind} {name!r} was already registered; the new entry replaces it",
                              stacklevel=3)
            self._entries[name] = o
            return o

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(f"unknown {self.kind} {name!r}; choose one of {self.list()}") from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the factory registered under ``name`` with the given arguments."""
        factory = self.get(name)
        if not callable(factory):
            raise InvalidTypeError(f"{self.kind} {name!r} is not a factory; use get()")
        return factory(*args, **kwargs)  # type: ignore[operator]

    def list(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._entries)
