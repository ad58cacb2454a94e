"""Benchmark settings whose default depends on the in-distribution set (``BenchConfig.resolved``)."""
from __future__ import annotations

from typing import Any, Optional

__all__ = ["DEFAULT_WIDTH", "WIDTH_ARGUMENT", "id_defaults"]

#: Base width of each classifier when ``width`` is not given (None: the model has no width argument).
#: ``airnet``: the first group's width w (groups w, 4w, 4w; 64 is the paper's 64/256/256).
DEFAULT_WIDTH: dict[Optional[str], Optional[int]] = {"report28": 32, "report32": 32, "resnet10-cifar": 16,
                                                     "resnet18-cifar": 16, "airnet": 64}
#: Keyword argument that takes the base width, by classifier.
WIDTH_ARGUMENT = {"report28": "ncf", "report32": "ncf", "resnet10-cifar": "width", "resnet18-cifar": "width",
                  "airnet": "width"}


def id_defaults(dataset: str) -> dict[str, Any]:
    """What ``niood-bench run --id DATASET`` uses when the preset, classifier, augmentation or
    test-time augmentation is not given: 32x32 RGB sets (CIFAR-10, SVHN, ...) get the CIFAR
    recipe (preset ``cifar-airbench``, ``airnet`` at width 64, flip and 2-pixel translation,
    scores on each image and its mirror image); other sets the quick recipe (preset ``fast``,
    the report's classifier for their size, no augmentation, no test-time augmentation: digits
    are not mirror-symmetric)."""
    from ..data import get_spec

    shape = get_spec(dataset).shape
    if shape is not None and shape[0] == 3 and shape[1:] == (32, 32):
        return {"preset": "cifar-airbench", "classifier": "airnet", "augment": "flip-translate2", "tta": "flip"}
    size = None if shape is None else shape[1:]
    return {"preset": "fast", "classifier": "report32" if size == (32, 32) else "report28", "augment": "none",
            "tta": "none"}
