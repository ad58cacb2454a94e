"""Benchmark configuration: defaults < config file (TOML or YAML) < command-line flags < ``--set``.

Every value is parsed as its declared type and checked against one table,
:data:`CONSTRAINTS` (with :mod:`niood_plugin.validation`), as it comes in, so an error names
where the bad value came from (the config file, the command line, ``--set``).  Names that
live in registries (datasets, methods, detectors, presets) and what needs the machine
(devices, output folders) are checked by :func:`niood_plugin.bench.runner.validate`, still
before any folder is created or any model trained.

Value typing, the same everywhere:

* ``--set KEY=VALUE`` values are read by :func:`parse_value`: an int (``3``, ``-2``), else a
  float (``1e-3``, ``.5``), else a bool (``true``/``false``, any case), else ``none``/``null``
  (``None``), else a JSON list or object (``[1, 2]``), else a string (quotes force one:
  ``'"3"'``).  ``yes``, ``on``, ``off`` are strings, so ``classifier_lr=yes`` is refused.
* YAML files are read with a YAML 1.2 *core schema* loader (:class:`CoreLoader`): the only
  booleans are ``true``/``false``; ``yes``/``no``/``on``/``off``/``y``/``n`` stay strings;
  ``1e-3`` is a float; ``017`` is 17; dates, ``1:30`` and ``=`` stay strings; duplicate keys
  are an error.  TOML files are typed by TOML itself.
* A bool is never a number and a float never an int (``epochs = 4.0`` is refused).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Optional

from ..errors import ConfigError
from ..validation import Boolean, Interval, Options, check_param
from .defaults import DEFAULT_WIDTH, id_defaults


@dataclass
class BenchConfig:
    """What ``niood-bench run`` does.  Every field can be set in a config file or by a flag."""

    id: str = "mnist"
    ood: list[str] = field(default_factory=lambda: ["fashionmnist", "gaussian", "uniform"])
    # OOD sets scored when present under the data root, else skipped with a note (online-only sets)
    ood_optional: list[str] = field(default_factory=list)
    # a suite of niood_plugin.suites.SUITES (ours set id, ood and ood_optional; "openood" scores pytorch-ood's
    # CIFAR10_OpenOOD / CIFAR100_OpenOOD test sets for id cifar10 / cifar100); None: id and ood as given
    suite: Optional[str] = None
    methods: list[str] = field(default_factory=lambda: ["inversion", "standard"])
    # names in niood_plugin.bench.detectors.DETECTORS; None: every one, each method scored with those that apply to it
    detectors: Optional[list[str]] = None
    preset: Optional[str] = None            # None: by ID geometry (ID_DEFAULTS)
    epochs: Optional[int] = None            # None: the preset's
    classifier: Optional[str] = None        # None: by ID geometry (ID_DEFAULTS)
    width: Optional[int] = None             # base width (ncf of the report nets); None: the classifier's default
    augment: Optional[str] = None           # batch augmentation of the ID training images; None: by ID geometry
    hparams: dict[str, Any] = field(default_factory=dict)  # GarbageSampler / InversionTrainer keywords
    # keyword arguments of niood_plugin.Negatives (default: the library's recommendation); None: none
    negatives: Optional[dict[str, Any]] = field(
        default_factory=lambda: {"kinds": "warp", "per_image": 1.0, "last_epochs": 2})
    ue_variant: str = "combined"
    tta: Optional[str] = None               # test-time augmentation when scoring: "none", "flip"; None: by ID geometry
    fig_epochs: Optional[int] = None        # FIG fine-tuning epochs on 'standard'; None: its stop rule
    fig_max_epochs: int = 5                 # ... at most this many epochs under the stop rule
    bal_epochs: int = 5                     # BAL generator/discriminator epochs on 'standard' features
    finetune_epochs: int = 3                # inversion-ft: inversion epochs on 'standard' given a garbage output
    finetune_lr: Optional[float] = None     # ... at this learning rate (the recipe's unit); None: the preset's
    data_root: Optional[str] = None
    out: str = "runs/mnist"
    cache_dir: Optional[str] = None         # trained models; default <out>/models
    device: str = "cpu"
    seed: int = 0
    train_limit: Optional[int] = None       # ID training images (None: all)
    test_limit: Optional[int] = None        # images per test set (None: all, generated sets 10,000)
    fit_limit: int = 10_000                 # ID training images to fit feature detectors on
    batch_size: int = 512                   # scoring batch size
    probe_limit: Optional[int] = None       # images per set scored after every epoch (time-to-quality); None: off
    feature_plots: bool = False             # PCA / t-SNE of penultimate features per method
    threads: Optional[int] = None           # torch threads (None: all cores)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved(self) -> "BenchConfig":
        """A copy with ``preset``, ``classifier``, ``width``, ``augment`` and ``tta`` filled in where
        None, from :func:`id_defaults` (unchanged if ``id`` is not a known dataset)."""
        try:
            defaults = id_defaults(self.id)
        except ValueError:
            return self
        values = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        if self.width is None:
            values["width"] = DEFAULT_WIDTH.get(values.get("classifier", self.classifier))
        return dataclasses.replace(self, **values)

    def recipe(self):
        """The :class:`~niood_plugin.presets.Preset` these settings give: the preset, then
        ``epochs`` (if set), then ``hparams``, checked; raises a ``ConfigError`` if bad.  Its
        trainer keywords (epochs, lr, schedule) and batch size are every method's recipe."""
        from ..presets import get_preset

        epochs = {} if self.epochs is None else {"epochs": self.epochs}
        return get_preset(self.preset or self.resolved().preset).updated(**epochs, **self.hparams).validate()

    def negatives_object(self):
        """``Negatives(**negatives)``, or ``None``; raises ``TypeError``/``ValueError`` if bad."""
        if self.negatives is None:
            return None
        from .. import Negatives

        return Negatives(**self.negatives)


# ----------------------------------------------------------------------------- constraint table

class _Text:
    """A non-empty string (``path=True``: without NUL bytes, which no file name can hold)."""

    def __init__(self, path: bool = False):
        self.path = path

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value.strip() != "" and not (self.path and "\x00" in value)

    def __str__(self) -> str:
        return "a non-empty path" if self.path else "a non-empty string"


class _Names:
    """A list of distinct non-empty strings, non-empty unless ``allow_empty`` (which names are
    known is checked later)."""

    def __init__(self, allow_empty: bool = False):
        self.allow_empty = allow_empty

    def accepts(self, value: Any) -> bool:
        return self.problem(value, self.allow_empty) is None

    @staticmethod
    def problem(value: Any, allow_empty: bool = False) -> Optional[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            return "must be a list of names"
        if not value and not allow_empty:
            return "is empty; give at least one name"
        dup = sorted({v for v in value if value.count(v) > 1})
        if dup:
            return f"lists {', '.join(repr(d) for d in dup)} more than once; give each once"
        return None

    def __str__(self) -> str:
        return "a list of distinct names" if self.allow_empty else "a non-empty list of distinct names"


class _Table:
    """A mapping with string keys (its entries are checked by their own table)."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)

    def __str__(self) -> str:
        return "a table (mapping) with string keys"


class _Number:
    """An int (``integer=True``) or an int or float; never a bool, NaN or infinity."""

    def __init__(self, integer: bool = False):
        self.integer = integer

    def accepts(self, value: Any) -> bool:
        return Interval(int if self.integer else float, None, None).accepts(value)

    def __str__(self) -> str:
        return "an int" if self.integer else "a finite number"


_POS = Interval(int, 1, None)
#: Every field of :class:`BenchConfig`: the values it may take (any one constraint suffices;
#: ``None`` allows ``None``).  Names in registries are checked by ``runner.validate``.
CONSTRAINTS: dict[str, list[Any]] = {
    "id": [_Text()], "suite": [_Text(), None], "ood": [_Names()], "ood_optional": [_Names(allow_empty=True)],
    "methods": [_Names()], "detectors": [_Names(), None],
    "preset": [_Text(), None], "epochs": [_POS, None], "classifier": [_Text(), None], "width": [_POS, None],
    "augment": [_Text(), None],
    "hparams": [_Table()], "negatives": [_Table(), None], "ue_variant": [_Text()], "tta": [Options("none", "flip"), None],
    "fig_epochs": [_POS, None], "fig_max_epochs": [_POS], "bal_epochs": [_POS],
    "finetune_epochs": [_POS], "finetune_lr": [Interval(float, 0, None, closed="neither"), None],
    "data_root": [_Text(path=True), None], "out": [_Text(path=True)], "cache_dir": [_Text(path=True), None],
    "device": [_Text()], "seed": [Interval(int, 0, 2**32 - 1)],
    "train_limit": [_POS, None], "test_limit": [_POS, None], "fit_limit": [_POS], "batch_size": [_POS],
    "probe_limit": [_POS, None], "feature_plots": [Boolean()],
    "threads": [_POS, None],
}

#: Keys of the ``negatives`` table: the keyword arguments of :class:`niood_plugin.Negatives`
#: and their types (``Negatives`` checks the ranges itself).
NEGATIVES_TYPES: dict[str, list[Any]] = {
    "kinds": [_Text()], "per_image": [_Number()], "last_epochs": [_Number(integer=True), None],
    "grid": [_Number(integer=True)], "warp_cells": [_Number(integer=True)], "warp_strength": [_Number()],
}

#: Keys that belong in the ``negatives`` table: one set under ``[hparams]`` is refused with the key to use.
MOVED_HPARAMS = {
    "negatives": "negatives.kinds", "jigsaw": "negatives.per_image", "jigsaw_grid": "negatives.grid",
    "jigsaw_from": "negatives.last_epochs (counted from the end: epochs - jigsaw_from + 1)",
    "warp_cells": "negatives.warp_cells", "warp_strength": "negatives.warp_strength",
}

_LISTS = ("ood", "ood_optional", "methods", "detectors")


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_value(name: str, value: Any, source: str) -> None:
    """Raise :class:`~niood_plugin.validation.InvalidParameterError` unless ``value`` fits
    ``name``'s row of :data:`CONSTRAINTS` (and, for ``negatives``, :data:`NEGATIVES_TYPES`)."""
    if name in _LISTS and isinstance(value, list):
        problem = _Names.problem(value, allow_empty=name == "ood_optional")
        if problem:
            raise ConfigError(f"{source}: {name} {problem}; got {value!r}")
    check_param(name, value, CONSTRAINTS[name], source)
    if name == "negatives" and value is not None:
        for key, v in value.items():
            if key not in NEGATIVES_TYPES:
                raise ConfigError(f"{source}: unknown negatives key {key!r}{_suggest(key, NEGATIVES_TYPES)}; "
                                  f"known: {sorted(NEGATIVES_TYPES)}")
            check_param(f"negatives.{key}", v, NEGATIVES_TYPES[key], source)
    if name == "hparams":
        for key in value:
            if key in MOVED_HPARAMS:
                raise ConfigError(f"{source}: hyperparameter {key!r} moved to the negatives table: use "
                                  f"{MOVED_HPARAMS[key]} (--set negatives.KEY=VALUE, or [negatives] in a config file)")
            if key in ("preset", "dataset"):
                raise ConfigError(f"{source}: {key!r} is a benchmark setting, not a trainer hyperparameter: set it "
                                  "with --preset / --id or a top-level config key")


def apply(cfg: BenchConfig, values: dict[str, Any], source: str) -> BenchConfig:
    """Return ``cfg`` updated with ``values``; unknown keys, wrong types or bad values raise
    :class:`ConfigError` naming ``source``."""
    unknown = sorted(set(values) - set(CONSTRAINTS))
    if unknown:
        hint = _suggest(unknown[0], CONSTRAINTS)
        raise ConfigError(f"{source}: unknown key(s) {unknown}{hint}; valid keys: {sorted(CONSTRAINTS)}")
    values = dict(values)
    for name, value in values.items():
        if name in _LISTS and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if name == "negatives" and isinstance(value, str) and value.strip().lower() in ("none", "null", "off"):
            value = None
        check_value(name, value, source)
        values[name] = value
    return dataclasses.replace(cfg, **values)


def check(cfg: BenchConfig) -> None:
    """The whole of ``cfg`` against :data:`CONSTRAINTS` and its fields against each other."""
    for f in fields(BenchConfig):
        check_value(f.name, getattr(cfg, f.name), "config")
    if cfg.epochs is not None and "epochs" in cfg.hparams:
        raise ConfigError(f"epochs is given twice: epochs = {cfg.epochs} (--epochs or the config file) and "
                          f"hparams epochs = {cfg.hparams['epochs']!r} (--set epochs= or [hparams]); give it once, "
                          "e.g. only --epochs")


# ----------------------------------------------------------------------------- --set

_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_TRUE, _FALSE, _NONE = ("true",), ("false",), ("none", "null")


def parse_value(text: str) -> Any:
    """A ``--set`` value as its type: int, float, bool, None, JSON list/object, else string."""
    s = text.strip()
    if _INT.fullmatch(s):
        return int(s)
    if _FLOAT.fullmatch(s):
        return float(s)
    low = s.lower()
    if low in _TRUE or low in _FALSE:
        return low in _TRUE
    if low in _NONE:
        return None
    if s[:1] in ("[", "{"):
        try:
            return json.loads(s)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--set value {text!r} starts like JSON but is not valid JSON: {exc.msg} "
                              f"(column {exc.colno})") from None
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return s


def apply_sets(cfg: BenchConfig, sets: Iterable[str], source: str = "--set") -> BenchConfig:
    """``cfg`` with ``--set KEY=VALUE`` items applied, in order: ``negatives=none`` (no negatives),
    ``negatives.KEY=VALUE`` (an entry of the negatives table), else a trainer hyperparameter."""
    hparams = dict(cfg.hparams)
    negatives = None if cfg.negatives is None else dict(cfg.negatives)
    for item in sets:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        value = parse_value(text)
        if key == "negatives":
            if value is None or (isinstance(value, str) and value.lower() == "off"):
                negatives = None
            elif isinstance(value, dict):
                negatives = value
            else:
                raise ConfigError(f"--set negatives={text} : use negatives=none (no negatives), "
                                  "negatives.KEY=VALUE (e.g. negatives.kinds=warp) or a JSON object")
        elif key.startswith("negatives."):
            negatives = dict(negatives or {})
            negatives[key[len("negatives."):]] = value
        elif "." in key:
            raise ConfigError(f"--set {key}: only negatives.KEY has a dot; trainer hyperparameters are plain names")
        else:
            hparams[key] = value
    return apply(cfg, {"hparams": hparams, "negatives": negatives}, source)


# ----------------------------------------------------------------------------- config files

def _core_loader():
    """A PyYAML ``SafeLoader`` that resolves plain scalars as the YAML 1.2 core schema does."""
    import yaml

    class CoreLoader(yaml.SafeLoader):
        pass

    CoreLoader.yaml_implicit_resolvers = {}
    resolvers = [
        ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
        ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
        ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
        ("tag:yaml.org,2002:float",
         r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
         list("-+.0123456789")),
    ]
    for tag, pattern, first in resolvers:
        CoreLoader.add_implicit_resolver(tag, re.compile(pattern), first)

    def construct_int(loader, node):
        v = loader.construct_scalar(node)
        sign = -1 if v.startswith("-") else 1
        v = v.lstrip("+-")
        base = 8 if v.startswith("0o") else 16 if v.startswith("0x") else 10
        return sign * int(v[2:] if base != 10 else v, base)

    def construct_float(loader, node):
        v = loader.construct_scalar(node).lower()
        if v.endswith(".inf"):
            return float("-inf") if v.startswith("-") else float("inf")
        return float("nan") if v == ".nan" else float(v)

    def construct_mapping(loader, node, deep=False):
        loader.flatten_mapping(node)
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    CoreLoader.add_constructor("tag:yaml.org,2002:int", construct_int)
    CoreLoader.add_constructor("tag:yaml.org,2002:float", construct_float)
    CoreLoader.construct_mapping = construct_mapping
    return CoreLoader


def _yaml_error(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(exc, "context", None)
    text = f"{problem}{where}" + (f" ({context})" if context else "")
    return " ".join(text.split())


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file of settings into a dict."""
    path = Path(path)
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config file {path} must end in .toml, .yaml or .yml")
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; give a .toml or .yaml file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ConfigError(f"config file {path} starts with a UTF-8 byte-order mark (BOM); save it as UTF-8 "
                          "without BOM")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise ConfigError(f"config file {path} is binary (NUL byte at offset {nul}), not a TOML or YAML text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (bad byte at offset {exc.start}); "
                          "save it as UTF-8") from None
    if path.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {' '.join(str(exc).split())}") from None
    else:
        import yaml

        try:
            data = yaml.load(text, Loader=_core_loader())  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {_yaml_error(exc)}") from None
        data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table/mapping of settings, not a "
                          f"{type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"config file {path}: keys must be names, got {bad[0]!r}")
    return {k.replace("-", "_"): v for k, v in data.items()}
