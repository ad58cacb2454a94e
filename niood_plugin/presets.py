"""Named hyperparameter sets for :class:`~niood_plugin.trainer.InversionTrainer`.

``report-<dataset>`` are the report's own settings (section 10); ``fast`` is ours, sized
for a 2-core CPU (see README "Results" for what it costs and scores); ``smoke`` is for tests.
"""
from __future__ import annotations

from typing import Any

_REPORT_COMMON: dict[str, Any] = dict(
    alpha=0.0, beta=1.0, gamma=0.0, delta=0.0, latent_dim=100, batch_size=32,
    inversion_steps=100, samples_per_step=11_000, epochs=20,
    classifier_lr=1e-4, generator_lr=1e-3, conditioning="vector",
    pool_policy="all", pool_capacity=None,
)

PRESETS: dict[str, dict[str, Any]] = {
    "report-mnist": dict(_REPORT_COMMON),
    "report-fashionmnist": dict(_REPORT_COMMON),
    "report-cifar10": dict(_REPORT_COMMON, gamma=100.0, epochs=41),
    "report-svhn": dict(_REPORT_COMMON, gamma=10.0, inversion_steps=90, epochs=30, classifier_lr=1e-3),
    # Ours, for 2 CPU cores: 10x fewer samples per step, 5x fewer steps, 4x larger
    # classifier batches with a 10x larger learning rate, 6 instead of 20 epochs.
    "fast": dict(
        alpha=0.0, beta=1.0, gamma=0.0, delta=0.0, latent_dim=100, batch_size=128,
        inversion_steps=20, samples_per_step=1_100, epochs=6,
        classifier_lr=1e-3, generator_lr=1e-3, conditioning="vector",
        pool_policy="reservoir", pool_capacity=60_000, generator_width=32,
    ),
    "smoke": dict(
        alpha=0.0, beta=1.0, gamma=0.0, delta=0.0, latent_dim=16, batch_size=64,
        inversion_steps=3, samples_per_step=110, epochs=2,
        classifier_lr=1e-3, generator_lr=1e-3, conditioning="vector",
        pool_policy="fifo", pool_capacity=2_000, generator_width=16,
    ),
}


def list_presets() -> list[str]:
    return sorted(PRESETS) + ["report"]


def get_preset(name: str, dataset: str | None = None) -> dict[str, Any]:
    """Hyperparameters of preset ``name``; ``"report"`` needs ``dataset`` (e.g. ``"mnist"``)."""
    if name == "report":
        if dataset is None:
            raise ValueError("preset 'report' depends on the dataset: pass dataset='mnist' (or use 'report-mnist')")
        key = f"report-{dataset}"
        if key not in PRESETS:
            known = [k[len("report-"):] for k in PRESETS if k.startswith("report-")]
            raise ValueError(f"the report has no settings for {dataset!r}; it has {known}")
        name = key
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {list_presets()}")
    return dict(PRESETS[name])
