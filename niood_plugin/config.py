"""The hyperparameters of :class:`~niood_plugin.trainer.InversionTrainer`.

Names follow the report; the defaults are our recommendation for a 2-core CPU (the docs'
"Benchmark results" and "Research notes" say how they were chosen), the report's own settings
are the ``report-<dataset>`` presets.  Every field is checked once, against
:data:`InversionConfig.constraints`, when the trainer is built.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Optional

from .models.report import CONDITIONINGS
from .pool import POLICIES
from .validation import Boolean, Interval, Options, validate_params
from .errors import InvalidArgumentError, InvalidTypeError

__all__ = ["InversionConfig", "LR_SCHEDULES"]

LR_SCHEDULES = ("constant", "cosine")
_POS_INT = [Interval(int, 1, None)]
_NONNEG_INT = [Interval(int, 0, None)]
_WEIGHT = [Interval(float, 0, None)]
_POS_FLOAT = [Interval(float, 0, None, closed="neither")]


@dataclass
class InversionConfig:
    """All hyperparameters of the method (report sections 3, 8, 9).

    Defaults differ from the report (``preset="report-mnist"`` etc.) where a 2-core CPU needs
    it: 100 generator updates of 220 samples per epoch instead of 100 x 11,000 (at equal
    compute, many small steps learn the conditioning where a few large ones stay at chance);
    conditioning vectors softmaxed at temperature 0.2 (the label stays visible to the
    generator); 2,200 fresh samples of the final generator per epoch into the pool; batch 128,
    learning rate 3e-3 with a cosine schedule; generator width 32.
    """

    alpha: float = 0.0                 # weight of the KL loss (report 8)
    beta: float = 1.0                  # weight of the cross-entropy loss
    gamma: float = 0.0                 # weight of the cosine-similarity loss
    delta: float = 0.0                 # weight of the feature-orthogonality loss
    novelty: float = 0.0               # weight of the novelty term (not in the report; losses.novelty_loss)
    latent_dim: int = 100              # size of the generator's latent z
    generator_width: int = 32          # ngf of the report generators
    conditioning: str = "vector"       # vector | matrix | vector-matrix
    vector_temperature: float = 0.2    # softmax temperature of conditioning vectors (report: 1)
    inversion_steps: int = 100         # generator updates per epoch
    samples_per_step: int = 220        # generated images per generator update (report: 11,000)
    generator_lr: float = 1e-3
    epochs: int = 10                   # inversion + retraining epochs after pre-training
    pretrain_epochs: int = 1           # epochs on ID data + Gaussian noise before the first inversion
    batch_size: int = 128              # classifier batch size (ID part; garbage is added)
    classifier_lr: float = 3e-3
    lr_schedule: str = "cosine"        # constant | cosine (per classifier epoch)
    weighted_ce: bool = True           # class-balanced cross-entropy (report 3.2)
    noise_samples: int = 0             # Gaussian garbage images; 0 = mean ID class size
    garbage_per_epoch: int = 2_200     # fresh samples of the final generator into the pool per epoch;
                                       # 0 = the last step's samples (the report)
    pool_capacity: Optional[int] = 60_000
    pool_policy: str = "reservoir"     # all | fifo | reservoir

    constraints = {
        "alpha": _WEIGHT, "beta": _WEIGHT, "gamma": _WEIGHT, "delta": _WEIGHT, "novelty": _WEIGHT,
        "latent_dim": _POS_INT, "generator_width": _POS_INT,
        "conditioning": [Options(*CONDITIONINGS)], "vector_temperature": _POS_FLOAT,
        "inversion_steps": _POS_INT, "samples_per_step": _POS_INT, "generator_lr": _POS_FLOAT,
        "epochs": _POS_INT, "pretrain_epochs": _NONNEG_INT, "batch_size": _POS_INT,
        "classifier_lr": _POS_FLOAT, "lr_schedule": [Options(*LR_SCHEDULES)], "weighted_ce": [Boolean()],
        "noise_samples": _NONNEG_INT, "garbage_per_epoch": _NONNEG_INT,
        "pool_capacity": [Interval(int, 1, None), None], "pool_policy": [Options(*POLICIES)],
    }

    def validate(self) -> "InversionConfig":
        """Check every field against :attr:`constraints` and the fields against each other."""
        validate_params(asdict(self), self.constraints, "InversionConfig")
        if self.pool_capacity is None and self.pool_policy != "all":
            raise InvalidArgumentError(f"pool_policy {self.pool_policy!r} needs a pool_capacity (or use pool_policy='all')")
        if self.pool_policy == "all" and self.pool_capacity is not None:
            need = self.epochs * (self.garbage_per_epoch or self.samples_per_step)
            if need > self.pool_capacity:
                raise InvalidArgumentError(f"pool_policy 'all' would hold {need} images but pool_capacity is "
                                 f"{self.pool_capacity}: raise pool_capacity, set it to None (unbounded), "
                                 "or use 'fifo'/'reservoir'")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self, **extra: Any) -> str:
        """A short hash of the fields (and ``extra``), for cache keys and checkpoint signatures."""
        blob = json.dumps({"config": asdict(self), **extra}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_preset(cls, preset: Optional[str] = None, dataset: Optional[str] = None,
                    **overrides: Any) -> "InversionConfig":
        """The defaults, updated with preset ``preset`` (see :mod:`~niood_plugin.presets`), then
        with ``overrides``; validated."""
        from .presets import get_preset

        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InvalidTypeError(f"unknown hyperparameter(s) {unknown}; known: {sorted(known)}")
        values = get_preset(preset, dataset) if preset else {}
        values.update(overrides)  # an explicit None is kept (pool_capacity=None: unbounded)
        return replace(cls(), **values).validate()
