"""Exceptions raised by niood-plugin.  Each message says what was wrong and what to do.

The CLI turns every :class:`NioodError` (and ``ValueError``/``TypeError`` from input
checks) into a one-line message on stderr with exit code 2.
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
