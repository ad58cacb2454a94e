"""Argument checks shared by the peer trainers: each error names the argument and the value."""
from __future__ import annotations

import math
from typing import Any

import torch


def check_int(name: str, value: Any, minimum: int) -> None:
    """``value`` is an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_number(name: str, value: Any, *, minimum: float = 0.0, strict: bool = True) -> None:
    """``value`` is a finite real number > ``minimum`` (``>=`` when ``strict=False``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")


def check_device(device: Any) -> None:
    """``device`` names a torch device (``"cpu"``, ``"cuda:0"``, a ``torch.device``)."""
    try:
        torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a valid torch device") from None
