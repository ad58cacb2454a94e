"""Named recipes for :class:`~niood_plugin.InversionTrainer` (a
:class:`~niood_plugin.registry.Registry` of :class:`Preset`): each names keywords of the
:class:`~niood_plugin.GarbageSampler` and of the trainer, and the batch size of the loader.
The classes' own defaults are our recommendation; a preset changes only what it names.

* ``recommended``: the defaults as they are (10 epochs);
* ``fast``: 4 epochs, for the default ``niood-bench run`` (10-minute budget);
* ``cifar``: 11 epochs (12 passes over the ID data with pre-training), Adam: the CIFAR default
  before the ``airnet`` backbone (with ``resnet10-cifar``);
* ``cifar-airbench``: the ``"airbench-no-smoothing"`` recipe at batch 1,024 for 1 + 25 passes:
  the default for 32x32 RGB sets (with ``airnet`` at width 64), the most passes within 30
  minutes of training on our 2-core CPU;
* ``airbench``: the ``"airbench"`` optimisation recipe (:mod:`~niood_plugin.recipes`: Nesterov
  SGD per batch, label smoothing, Lookahead) at the paper's batch size 1,024, 1 + 9 passes
  (airbench94 trains 9.9 epochs), for the ``airnet`` backbone;
* ``report-<dataset>``: the report's own settings (section 10);
* ``smoke``: tiny, for tests.

>>> trainer = presets.create("fast", clf, num_classes=10, image_shape=(1, 28, 28), seed=1, gamma=10.0)

Keywords are routed to the class that declares them (``seed``, ``progress`` and
``channels_last`` to both).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from torch import nn

from .errors import ConfigError
from .garbage import GarbageSampler
from .recipes import resolve_lr
from .registry import Registry
from .trainer import InversionTrainer
from .validation import POSITIVE_INT, validate_params

__all__ = ["PRESETS", "Preset", "create", "get_preset", "list_presets", "split_keywords"]

#: keywords of both classes
SHARED = ("seed", "progress", "channels_last")


def split_keywords(keywords: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``keywords`` as (GarbageSampler's, InversionTrainer's), by the names each declares;
    unknown names raise :class:`~niood_plugin.errors.ConfigError` listing the known ones."""
    g_names = set(GarbageSampler._parameter_constraints) - {"num_classes"}
    t_names = set(InversionTrainer._parameter_constraints) - {"classifier", "garbage"}
    unknown = sorted(set(keywords) - g_names - t_names - {"callbacks", "device"})
    if unknown:
        raise ConfigError(f"unknown hyperparameter(s) {unknown}; GarbageSampler takes {sorted(g_names)}, "
                          f"InversionTrainer {sorted(t_names | {'callbacks', 'device'})}")
    return ({k: v for k, v in keywords.items() if k in g_names},
            {k: v for k, v in keywords.items() if k in t_names or k in ("callbacks", "device")})


@dataclass(frozen=True)
class Preset:
    """A named recipe: ``garbage`` keywords of :class:`~niood_plugin.GarbageSampler`,
    ``trainer`` keywords of :class:`~niood_plugin.InversionTrainer`, and the ``batch_size``
    of the ID loader (the garbage is added to each batch)."""

    garbage: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 128

    def __post_init__(self) -> None:
        g, t = split_keywords(self.garbage)[0], split_keywords(self.trainer)[1]
        wrong = sorted((set(self.garbage) - set(g)) | (set(self.trainer) - set(t)))
        if wrong:
            raise ConfigError(f"Preset: {wrong} under the wrong class: garbage takes GarbageSampler's keywords, "
                              "trainer InversionTrainer's")
        validate_params({"batch_size": self.batch_size}, {"batch_size": POSITIVE_INT}, "Preset")

    def updated(self, **keywords: Any) -> "Preset":
        """This preset with ``keywords`` (routed by name; ``batch_size`` is the loader's)."""
        batch = keywords.pop("batch_size", self.batch_size)
        g, t = split_keywords(keywords)
        return replace(self, garbage={**self.garbage, **g}, trainer={**self.trainer, **t}, batch_size=batch)

    def validate(self) -> "Preset":
        """Check every value against the tables of the class that takes it (before anything is built)."""
        validate_params({k: v for k, v in self.garbage.items() if k not in ("negatives", "generator")},
                        GarbageSampler._parameter_constraints, "GarbageSampler")
        validate_params(self.trainer, InversionTrainer._parameter_constraints, "InversionTrainer",
                        only=set(self.trainer) - {"callbacks", "device"})
        return self

    @property
    def total_epochs(self) -> int:
        """Passes over the ID data: pre-training plus inversion epochs."""
        trainer = self.to_dict()["trainer"]
        return trainer["pretrain_epochs"] + trainer["epochs"]

    def to_dict(self) -> dict[str, Any]:
        """Every setting, the classes' defaults filled in (for records and cache keys); ``lr``:
        the recipe's default when the preset names none."""
        trainer = {**_defaults(InversionTrainer), **self.trainer}
        trainer["lr"] = resolve_lr(trainer["recipe"], trainer["lr"])
        return {"garbage": {**_defaults(GarbageSampler), **self.garbage}, "trainer": trainer,
                "batch_size": self.batch_size}

    def digest(self, **extra: Any) -> str:
        blob = json.dumps({**self.to_dict(), **extra}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def create(self, classifier: nn.Module, num_classes: int, image_shape: Sequence[int],
               **keywords: Any) -> InversionTrainer:
        """``InversionTrainer(classifier, GarbageSampler(num_classes, image_shape, ...), ...)``."""
        if "batch_size" in keywords:
            raise ConfigError("batch_size is the loader's, not the trainer's: build the loader with "
                              "preset.batch_size (or your own) and pass it to fit()")
        p = self.updated(**keywords)
        return InversionTrainer(classifier, GarbageSampler(num_classes, image_shape, **p.garbage), **p.trainer)


def _defaults(cls: type) -> dict[str, Any]:
    import inspect

    skip = {"self", "classifier", "garbage", "num_classes", "image_shape", "generator", "callbacks", "device",
            "negatives", "progress", "seed"}
    return {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items()
            if n not in skip and p.default is not inspect.Parameter.empty}


PRESETS: Registry[Preset] = Registry("preset")
#: Inversion epochs of ``cifar-airbench`` (1 + CIFAR_EPOCHS passes over the ID data).
CIFAR_EPOCHS = 25

_REPORT_GARBAGE = dict(alpha=0.0, beta=1.0, gamma=0.0, delta=0.0, latent_dim=100, generator_width=64,
                       vector_temperature=1.0, inversion_steps=100, samples_per_step=11_000, garbage_per_epoch=0,
                       generator_lr=1e-3, conditioning="vector", pool_policy="all", pool_capacity=None)
_REPORT_TRAINER = dict(epochs=20, lr=1e-4, lr_schedule="constant")
PRESETS.register("recommended", Preset())
PRESETS.register("fast", Preset(trainer=dict(epochs=4)))
PRESETS.register("cifar", Preset(trainer=dict(epochs=11)))
# airbench94's recipe (Jordan 2024, arXiv:2404.00498): batch 1,024, ~10 passes; lr: the recipe's (11.5 per 1,024)
PRESETS.register("airbench", Preset(trainer=dict(recipe="airbench", epochs=9, pretrain_epochs=1), batch_size=1024))
# the default for 32x32 RGB sets (airnet width 64): the airbench recipe without label smoothing (it lost on the
# validation sets) for the most passes within 30 minutes of training on a 2-core CPU (docs: research notes,
# "CIFAR-10 training recipe")
PRESETS.register("cifar-airbench", Preset(trainer=dict(recipe="airbench-no-smoothing", epochs=CIFAR_EPOCHS,
                                                       pretrain_epochs=1), batch_size=1024))
PRESETS.register("report-mnist", Preset(_REPORT_GARBAGE, _REPORT_TRAINER, batch_size=32))
PRESETS.register("report-fashionmnist", Preset(_REPORT_GARBAGE, _REPORT_TRAINER, batch_size=32))
PRESETS.register("report-cifar10", Preset(dict(_REPORT_GARBAGE, gamma=100.0), dict(_REPORT_TRAINER, epochs=41),
                                          batch_size=32))
PRESETS.register("report-svhn", Preset(dict(_REPORT_GARBAGE, gamma=10.0, inversion_steps=90),
                                       dict(_REPORT_TRAINER, epochs=30, lr=1e-3), batch_size=32))
PRESETS.register("smoke", Preset(
    dict(latent_dim=16, inversion_steps=3, samples_per_step=110, garbage_per_epoch=0, vector_temperature=1.0,
         pool_policy="fifo", pool_capacity=2_000, generator_width=16),
    dict(epochs=2, lr=1e-3, lr_schedule="constant"), batch_size=64))


def list_presets() -> list[str]:
    return PRESETS.list()


def get_preset(name: str) -> Preset:
    """Preset ``name`` (:class:`~niood_plugin.registry.UnknownNameError` lists the known ones)."""
    return PRESETS.get(name)


def create(name: str, classifier: nn.Module, num_classes: int, image_shape: Sequence[int],
           **keywords: Any) -> InversionTrainer:
    """The trainer of preset ``name``, ``keywords`` overriding it (see :meth:`Preset.create`)."""
    return get_preset(name).create(classifier, num_classes, image_shape, **keywords)
