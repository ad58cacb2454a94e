"""niood-plugin: network-inversion OOD training and the UE detector for pytorch-ood.

>>> from niood_plugin import InversionTrainer, UEDetector
"""
from __future__ import annotations

import logging

from .detector import UEDetector
from .trainer import InversionConfig, InversionTrainer

__version__ = "0.1.0"

__all__ = ["InversionConfig", "InversionTrainer", "UEDetector", "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
