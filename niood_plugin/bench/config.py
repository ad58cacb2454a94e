"""Benchmark configuration: defaults < config file (TOML or YAML) < command-line flags."""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

from ..errors import ConfigError

ALL_DETECTORS = ("ue", "ue-id", "garbage", "msp", "odin", "energy", "mahalanobis", "maxlogit", "knn", "vim",
                 "entropy")
DEFAULT_DETECTORS = ALL_DETECTORS


@dataclass
class BenchConfig:
    """What ``niood-bench run`` does.  Every field can be set in a config file or by a flag."""

    id: str = "mnist"
    ood: list[str] = field(default_factory=lambda: ["fashionmnist", "gaussian", "uniform"])
    methods: list[str] = field(default_factory=lambda: ["inversion", "standard"])
    detectors: list[str] = field(default_factory=lambda: list(DEFAULT_DETECTORS))
    preset: str = "fast"
    epochs: Optional[int] = None            # None: the preset's
    classifier: Optional[str] = None        # None: report28 / report32 from the ID geometry
    width: int = 32                         # ncf of the report classifiers
    hparams: dict[str, Any] = field(default_factory=dict)  # InversionTrainer overrides
    ue_variant: str = "combined"
    fig_epochs: int = 1                     # FIG fine-tuning epochs on top of 'standard'
    bal_epochs: int = 5                     # BAL generator/discriminator epochs on 'standard' features
    data_root: Optional[str] = None
    out: str = "runs/mnist"
    cache_dir: Optional[str] = None         # trained models; default <out>/models
    device: str = "cpu"
    seed: int = 0
    train_limit: Optional[int] = None       # ID training images (None: all)
    test_limit: Optional[int] = None        # images per test set (None: all, generated sets 10,000)
    fit_limit: int = 10_000                 # ID training images to fit feature detectors on
    batch_size: int = 512                   # scoring batch size
    threads: Optional[int] = None           # torch threads (None: all cores)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def inversion_config(self):
        """The :class:`~niood_plugin.trainer.InversionConfig` these settings give: the preset,
        then ``epochs`` (if set), then ``hparams``; raises ``TypeError``/``ValueError`` if bad."""
        from ..trainer import InversionConfig

        epochs = {} if self.epochs is None else {"epochs": self.epochs}
        return InversionConfig.from_preset(self.preset, self.id, **epochs, **self.hparams)


def _type_ok(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if hint is Any:
        return True
    if origin is Union:
        return any(_type_ok(value, a) for a in get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (inner,) = get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def apply(cfg: BenchConfig, values: dict[str, Any], source: str) -> BenchConfig:
    """Return ``cfg`` updated with ``values``; unknown keys or wrong types raise ConfigError."""
    hints = get_type_hints(BenchConfig)
    known = {f.name for f in fields(BenchConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
    for name, value in values.items():
        if name in ("ood", "methods", "detectors") and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
            values[name] = value
        if not _type_ok(value, hints[name]):
            raise ConfigError(f"{source}: {name} = {value!r} has the wrong type; expected {hints[name]}")
    return dataclasses.replace(cfg, **values)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {path} must end in .toml, .yaml or .yml")
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table/mapping of settings")
    return {k.replace("-", "_"): v for k, v in data.items()}
