"""Named hyperparameter sets for :class:`~niood_plugin.trainer.InversionTrainer` (a
:class:`~niood_plugin.registry.Registry`): each is a dict of :class:`~niood_plugin.config.InversionConfig`
overrides on top of the defaults (our recommendation).

* ``recommended``: the defaults as they are (10 epochs);
* ``fast``: the defaults with 4 epochs, for the default ``niood-bench run`` (10-minute budget);
* ``cifar``: the defaults with 11 epochs (12 passes over the ID data with pre-training), for 32x32
  RGB sets (``niood-bench run --id cifar10``: a CIFAR ResNet-10 at width 16, about 9 minutes of
  plain training on a 2-core CPU);
* ``report-<dataset>``: the report's own settings (section 10); ``report`` picks by dataset;
* ``smoke``: tiny, for tests.
"""
from __future__ import annotations

from typing import Any, Optional

from .registry import Registry
from .errors import InvalidArgumentError

PRESETS: Registry[dict[str, Any]] = Registry("preset")

_REPORT = dict(
    alpha=0.0, beta=1.0, gamma=0.0, delta=0.0, latent_dim=100, generator_width=64, vector_temperature=1.0,
    batch_size=32, inversion_steps=100, samples_per_step=11_000, epochs=20, garbage_per_epoch=0,
    classifier_lr=1e-4, generator_lr=1e-3, lr_schedule="constant", conditioning="vector",
    pool_policy="all", pool_capacity=None,
)
PRESETS.register("recommended", {})
PRESETS.register("fast", dict(epochs=4))
PRESETS.register("cifar", dict(epochs=11))
PRESETS.register("report-mnist", dict(_REPORT))
PRESETS.register("report-fashionmnist", dict(_REPORT))
PRESETS.register("report-cifar10", dict(_REPORT, gamma=100.0, epochs=41))
PRESETS.register("report-svhn", dict(_REPORT, gamma=10.0, inversion_steps=90, epochs=30, classifier_lr=1e-3))
PRESETS.register("smoke", dict(
    latent_dim=16, batch_size=64, inversion_steps=3, samples_per_step=110, epochs=2, garbage_per_epoch=0,
    classifier_lr=1e-3, lr_schedule="constant", vector_temperature=1.0,
    pool_policy="fifo", pool_capacity=2_000, generator_width=16,
))


def list_presets() -> list[str]:
    return PRESETS.list() + ["report"]


def get_preset(name: str, dataset: Optional[str] = None) -> dict[str, Any]:
    """The overrides of preset ``name``; ``"report"`` needs ``dataset`` (e.g. ``"mnist"``)."""
    if name == "report":
        if dataset is None:
            raise InvalidArgumentError("preset 'report' depends on the dataset: pass dataset='mnist' (or use 'report-mnist')")
        known = [k[len("report-"):] for k in PRESETS.list() if k.startswith("report-")]
        if f"report-{dataset}" not in PRESETS:
            raise InvalidArgumentError(f"the report has no settings for {dataset!r}; it has {known}")
        name = f"report-{dataset}"
    if name not in PRESETS:
        raise InvalidArgumentError(f"unknown preset {name!r}; choose one of {list_presets()}")
    return dict(PRESETS.get(name))
