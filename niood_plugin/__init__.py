"""niood-plugin: network-inversion OOD training and the UE detector for pytorch-ood."""
from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
