"""Device names, checked once: ``torch.device`` syntax plus availability; what a device computes
fast (bf16); the CPU allocator setting that the command line applies."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from typing import Any

import torch

from .validation import InvalidParameterError

__all__ = ["Device", "resolve_device", "module_device", "fast_bf16", "tune_cpu_allocator"]

log = logging.getLogger(__name__)


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


def fast_bf16(device: "str | torch.device") -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it
    (``torch.cuda.is_bf16_supported()``), or a CPU with AVX512-BF16 or AMX instructions (where
    oneDNN's bf16 convolutions are about twice as fast as fp32 ones; elsewhere bf16 is emulated
    and slower).  What :meth:`~niood_plugin.recipes.Optimisation.autocast` asks."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type == "cpu":
        checks = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(bool(c()) for c in checks if c is not None)
    return False


#: glibc's ``mallopt`` parameters (malloc.h) and the values :func:`tune_cpu_allocator` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 1 << 30, (1 << 31) - 1


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process's heap instead of returning it to the system (glibc's
    ``mallopt``: blocks up to 1 GiB from the heap, no trimming).  Training on the CPU allocates
    and frees the same large activation buffers every step; by default glibc maps each one
    anew and the kernel zero-fills its pages again, which costs about a fifth of a CIFAR
    training step on a 2-core machine (the ``niood-bench`` command calls this; so can a
    training script, before it allocates).  Peak memory grows a little.  Returns whether it was
    applied (False off glibc Linux); the same as starting Python with
    ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=2147483647``."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    log.debug("tune_cpu_allocator: %s", "applied" if ok else "refused by the C library")
    return ok


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
