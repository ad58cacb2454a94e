"""One way to validate parameters: a declared table of constraints, checked in one place.

In the spirit of scikit-learn's ``_parameter_constraints``: a class declares, for each
parameter, the list of constraints a value may satisfy (any one suffices), and
:func:`validate_params` checks a whole set of values at once, before anything is built or
trained.  A ``bool`` is never accepted as a number, a float is never accepted as an int.

>>> CONSTRAINTS = {"lr": [Interval(float, 0, None, closed="neither")],
...                "schedule": [Options("constant", "cosine")],
...                "capacity": [Interval(int, 1, None), None]}
>>> validate_params({"lr": 1e-3, "schedule": "cosine", "capacity": None}, CONSTRAINTS, "MyTrainer")
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Mapping, Optional, Sequence

from .errors import ConfigError, InvalidArgumentError, InvalidTypeError

__all__ = ["Interval", "Options", "Boolean", "InstanceOf", "Callable_", "SequenceOf", "InvalidParameterError",
           "validate_params", "check_param", "FLAG", "SEED", "POSITIVE_INT", "NONNEGATIVE_INT", "WEIGHT",
           "POSITIVE_FLOAT"]


class InvalidParameterError(ConfigError, TypeError):
    """A parameter has a value its constraint table does not allow (a ``ValueError`` and a
    ``TypeError``, so callers catching either keep working)."""


class Interval:
    """A real (``float``) or integer (``int``) number in a range; ``None`` bounds are open ends.

    ``closed`` is ``"both"``, ``"left"``, ``"right"`` or ``"neither"``.  ``float`` accepts ints
    too; neither accepts ``bool``, NaN or infinity.
    """

    def __init__(self, type_: type, low: Optional[float], high: Optional[float], closed: str = "both"):
        if type_ not in (int, float):
            raise InvalidTypeError("Interval type must be int or float")
        if closed not in ("both", "left", "right", "neither"):
            raise InvalidArgumentError(f"bad closed {closed!r}")
        self.type, self.low, self.high, self.closed = type_, low, high, closed

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.type is int:
            if not isinstance(value, numbers.Integral):
                return False
        elif not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        if self.low is not None:
            if value < self.low or (value == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if value > self.high or (value == self.high and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self) -> str:
        kind = "an int" if self.type is int else "a finite number"
        fmt = (lambda b: str(int(b))) if self.type is int else (lambda b: f"{b:g}")  # 2**32-1, not 4.29497e+09
        lo = "-inf" if self.low is None else fmt(self.low)
        hi = "inf" if self.high is None else fmt(self.high)
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        return f"{kind} in {left}{lo}, {hi}{right}"


class Options:
    """One of a fixed set of values (compared with ``==``, type included: ``1`` is not ``True``)."""

    def __init__(self, *values: Any):
        self.values = values

    def accepts(self, value: Any) -> bool:
        return any(type(value) is type(v) and value == v for v in self.values)

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


class Boolean:
    """``True`` or ``False`` (not 0/1, not the strings ``"yes"``/``"no"``)."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    def __str__(self) -> str:
        return "True or False"


class InstanceOf:
    """An instance of ``types`` (a class or tuple of classes)."""

    def __init__(self, types: type | tuple[type, ...], description: Optional[str] = None):
        self.types = types
        self.description = description

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.types) and not (isinstance(value, bool) and bool not in _as_tuple(self.types))

    def __str__(self) -> str:
        if self.description:
            return self.description
        names = [t.__name__ for t in _as_tuple(self.types)]
        return "an instance of " + " or ".join(names)


class SequenceOf:
    """A list or tuple whose items each meet ``item``, of length ``length`` (if given) and at
    least ``min_length``."""

    def __init__(self, item: Any, *, length: Optional[int] = None, min_length: int = 0, what: str = "items"):
        self.item, self.length, self.min_length, self.what = item, length, min_length, what

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, (list, tuple)):
            return False
        if self.length is not None and len(value) != self.length:
            return False
        return len(value) >= self.min_length and all(self.item.accepts(v) for v in value)

    def __str__(self) -> str:
        count = f"{self.length}" if self.length is not None else f"at least {self.min_length}"
        return f"a sequence of {count} {self.what}, each {self.item}"


class Callable_:
    """Any callable object."""

    def accepts(self, value: Any) -> bool:
        return callable(value)

    def __str__(self) -> str:
        return "a callable"


def _as_tuple(t: type | tuple[type, ...]) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def check_param(name: str, value: Any, constraints: Sequence[Any], owner: str = "") -> None:
    """Raise :class:`InvalidParameterError` unless ``value`` meets one of ``constraints``
    (``None`` in the list allows ``None``)."""
    for c in constraints:
        if c is None:
            if value is None:
                return
        elif c.accepts(value):
            return
    allowed = [("None" if c is None else str(c)) for c in constraints]
    where = f"{owner}: " if owner else ""
    raise InvalidParameterError(f"{where}{name} must be {' or '.join(allowed)}; got {_describe(value)}")


def validate_params(values: Mapping[str, Any], constraints: Mapping[str, Sequence[Any]], owner: str = "",
                    *, only: Optional[Iterable[str]] = None) -> None:
    """Check every entry of ``values`` against its row of ``constraints``.

    Unknown names raise :class:`InvalidParameterError` listing the known ones; names in
    ``constraints`` missing from ``values`` are not checked.  ``only`` restricts the check.
    """
    unknown = sorted(set(values) - set(constraints))
    if unknown:
        where = f"{owner}: " if owner else ""
        raise InvalidParameterError(f"{where}unknown parameter(s) {unknown}; known: {sorted(constraints)}")
    names = values.keys() if only is None else [n for n in only if n in values]
    for name in names:
        check_param(name, values[name], constraints[name], owner)


# Constraints that several classes' tables share: declared here once, referenced there.
FLAG = [Boolean()]
SEED = [Interval(int, 0, 2**63 - 1)]
POSITIVE_INT = [Interval(int, 1, None)]
NONNEGATIVE_INT = [Interval(int, 0, None)]
WEIGHT = [Interval(float, 0, None)]
POSITIVE_FLOAT = [Interval(float, 0, None, closed="neither")]
