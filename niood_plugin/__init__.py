"""niood-plugin: network-inversion OOD training and the UE detector for pytorch-ood.

>>> from niood_plugin import InversionTrainer, UEDetector
"""
from __future__ import annotations

import logging

from .callbacks import Callback, Checkpoint, Measure, SampleGrid
from .detector import UEDetector
from .garbage import GarbageSampler
from .negatives import Negatives
from .trainer import InversionTrainer

__version__ = "0.1.0"

__all__ = ["Callback", "Checkpoint", "GarbageSampler", "InversionTrainer", "Measure", "Negatives", "SampleGrid",
           "UEDetector", "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
