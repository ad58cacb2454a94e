"""Exceptions raised by niood-plugin.  Each message says what was wrong and what to do.

Every check of a user's input raises a :class:`NioodError`; the classes also subclass the
built-in exception a caller would expect (``ValueError``, ``TypeError``, ``FileNotFoundError``,
``RuntimeError``), so existing ``except`` clauses keep working.  The CLI turns a
:class:`NioodError` (and an ``OSError``) into a one-line message and exit code 2, and anything
else into "internal error" and exit code 1: the type decides, nothing else.
"""
from __future__ import annotations


class NioodError(Exception):
    """Base class of the library's own errors."""


class DatasetNotFoundError(NioodError, FileNotFoundError):
    """A dataset is not under the data root and cannot be downloaded."""


class DataFormatError(NioodError, ValueError):
    """A data file exists but is corrupt or not in the expected format."""


class ConfigError(NioodError, ValueError):
    """A configuration (file or arguments) has unknown keys, wrong types or bad values."""


class CheckpointError(NioodError, ValueError):
    """A checkpoint is corrupt or belongs to another configuration."""


class InvalidArgumentError(NioodError, ValueError):
    """An argument, tensor or batch given to the library has a value, shape or range it cannot
    use (a ``ValueError``, so existing ``except ValueError`` clauses keep working)."""


class InvalidTypeError(NioodError, TypeError):
    """An argument or batch has a type the library cannot use (a ``TypeError``)."""


class CallOrderError(NioodError, RuntimeError):
    """A method was called before the one it depends on (e.g. ``epoch()`` before ``start()``)."""


class FolderLockedError(NioodError, RuntimeError):
    """An output folder is in use: another running command holds its lock file."""
