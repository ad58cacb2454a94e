"""One benchmark run: data -> trained models -> detector scores -> metrics -> report.

Each stage hands its output to the next and never calls back: ``load_data`` gives
tensors, ``methods.obtain`` a trained (or cached) model, ``detectors.build`` +
``evaluate.score`` the scores, ``evaluate.ood_metrics`` the rows, and ``report`` /
``plots`` write them.

Before anything is created or trained, :func:`validate` checks the whole configuration
and the output folder.  An output folder belongs to one command (``results.json`` records
``"kind": "run"`` or ``"attack"``); a run replaces only what this harness writes there and
removes only its own checkpoints.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..data import TensorData, dataset_status, get_spec, list_datasets, subset_indices
from .. import distributed
from ..errors import ConfigError
from ..suites import SUITES, load_suite
from . import plots
from .feature_plots import feature_space
from .config import BenchConfig, check
from .detectors import DETECTORS, build, check_named, chosen, for_method, left_out
from .evaluate import ood_metrics, represent, score
from ..models import FlipAveraged
from ..training import accuracy
from .methods import METHODS, MethodContext, cache_key, list_methods, obtain
from ..files import atomic_write_text, writes_into
from .lock import hold_folder
from .outputs import (check_dir_path, check_out_dir, check_paths, collect_outputs, planned_paths, prepare_out,
                      remove_path, rmdir_if_empty, SAMPLES_KEY)
from .provenance import environment, git_state, peak_rss_mb, provenance
from .report import write_results

log = logging.getLogger(__name__)



@dataclass
class BenchData:
    train: TensorData
    test: TensorData
    oods: dict[str, TensorData]
    fit: TensorData                      # ID training subset for feature detectors
    skipped: dict[str, str] = field(default_factory=dict)  # optional OOD sets not found: name -> why
    groups: Optional[dict[str, list[str]]] = None  # OpenOOD's nearood/farood, for results_openood.csv
    recorded: dict[str, Any] = field(default_factory=dict)  # settings the suite chose (e.g. OpenOOD's sets)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.train.image_shape

    @property
    def num_classes(self) -> int:
        return int(self.train.num_classes)


# ----------------------------------------------------------------------------- validation

def check_device(name: str) -> torch.device:
    """``name`` as a ``torch.device`` that exists here, or one clear :class:`ConfigError`."""
    from ..devices import resolve_device

    try:
        return resolve_device(name)
    except (TypeError, ValueError) as exc:
        msg = str(exc)
        if isinstance(name, str) and name != name.lower():
            msg += f" (did you mean {name.lower()!r}?)"
        raise ConfigError(msg) from None


def validate(cfg: BenchConfig, kind: str = "run") -> None:
    """Check every name and number in ``cfg``, and the output folder, before any work starts."""
    check(cfg)
    datasets = list_datasets()
    for name in [cfg.id, *cfg.ood, *cfg.ood_optional]:
        if name not in datasets:
            raise ConfigError(f"unknown dataset {name!r}; choose from {datasets}")
    if get_spec(cfg.id).num_classes is None:
        raise ConfigError(f"{cfg.id!r} has no class labels and cannot be the in-distribution set")
    if cfg.suite is not None:
        SUITES.get(cfg.suite).check_config(cfg, cfg.suite)
    if cfg.id in cfg.ood or cfg.id in cfg.ood_optional:
        raise ConfigError(f"{cfg.id!r} is both the ID set and an OOD set")
    for m in cfg.methods:
        if m not in METHODS:
            raise ConfigError(f"unknown method {m!r}; choose from {list_methods()}")
    check_named(cfg.detectors, cfg.methods)  # None (the default): each method gets those that apply to it
    from ..detector import VARIANTS as UE_VARIANTS
    from ..presets import list_presets

    if cfg.preset not in list_presets():
        raise ConfigError(f"unknown preset {cfg.preset!r}; choose from {list_presets()}")
    from ..data import list_augmentations

    if cfg.augment is not None and cfg.augment not in list_augmentations():
        raise ConfigError(f"unknown augment {cfg.augment!r}; choose from {list_augmentations()}")
    if cfg.classifier is not None:
        _check_classifier(cfg.classifier)
    if cfg.ue_variant not in UE_VARIANTS:
        raise ConfigError(f"unknown ue_variant {cfg.ue_variant!r}; choose from {list(UE_VARIANTS)}")
    _check_hparam_names(cfg)
    try:  # unknown or bad trainer hyperparameters (--set, hparams) fail here, before any work
        cfg.recipe()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"hyperparameters: {_one_line(exc)}") from None
    try:
        cfg.negatives_object()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"negatives: {_one_line(exc)}") from None
    check_device(cfg.device)
    out = Path(cfg.out)
    check_out_dir(out, kind)
    if cfg.cache_dir:
        check_dir_path(Path(cfg.cache_dir), "cache_dir", need_write=kind == "run")  # an attack reads it
    if cfg.data_root:
        check_dir_path(Path(cfg.data_root), "data_root", need_write=False)


def _check_classifier(name: str) -> None:
    from ..models import list_classifiers

    if name in list_classifiers():
        return
    try:
        import timm
    except ImportError:  # pragma: no cover
        raise ConfigError(f"unknown classifier {name!r}; choose from {list_classifiers()} (timm names need timm)")
    if not timm.is_model(name):
        raise ConfigError(f"unknown classifier {name!r}; choose from {list_classifiers()} or a timm model name")


def _check_hparam_names(cfg: BenchConfig) -> None:
    """A benchmark setting given as a trainer hyperparameter (``--set width=16``) gets a hint."""
    from .. import GarbageSampler, InversionTrainer
    from .config import CONSTRAINTS

    known = set(GarbageSampler._parameter_constraints) | set(InversionTrainer._parameter_constraints)
    for key in cfg.hparams:
        if key not in known and key in CONSTRAINTS:
            raise ConfigError(f"hyperparameters: {key!r} is a benchmark setting, not a trainer hyperparameter: "
                              "set it with its flag, if it has one, or as a top-level key of a --config file, "
                              "not with --set / [hparams]")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ----------------------------------------------------------------------------- the run

def load_data(cfg: BenchConfig) -> BenchData:
    """The run's data: the suite of ``cfg`` (:class:`~niood_plugin.suites.OneVsRest` over ``id``
    and ``ood``, or pytorch-ood's OpenOOD benchmark), plus the ID subset detectors are fitted on."""
    suite = load_suite(cfg)
    train, test, oods, skipped = suite.train, suite.test, suite.oods, suite.skipped
    near = getattr(suite, "near", None)
    groups = None if near is None else {"nearood": [n for n in oods if n in near],
                                        "farood": [n for n in oods if n not in near]}
    idx = subset_indices(train.y, min(cfg.fit_limit, len(train)), seed=cfg.seed)  # class-stratified
    fit = train if idx is None else TensorData(train.x[idx], train.y[idx], f"{cfg.id}-fit")
    missing = sorted(set(range(int(train.num_classes))) - set(fit.y.unique().tolist()))
    if missing:
        raise ConfigError(f"classes {missing} have no training images (train_limit={cfg.train_limit}, "
                          f"fit_limit={cfg.fit_limit}): raise them")
    return BenchData(train, test, oods, fit, skipped, groups, suite.recorded_settings())


def run(cfg: BenchConfig, *, progress: bool = True, resume: bool = False, command: str = "",
        argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run the benchmark described by ``cfg``; returns the results payload (also written to ``cfg.out``)."""
    started, t_start = time.time(), time.perf_counter()
    code = git_state()  # the code that runs, before this command writes anything
    cfg = cfg.resolved()  # defaults that depend on the ID set, recorded as used
    validate(cfg, "run")
    check_paths(planned_paths(cfg, "run"))  # a path too long for the file system fails now, not after training
    joins = distributed.launched() and not distributed.active()  # torchrun started us: join, and leave at the end
    device = distributed.setup(check_device(cfg.device))
    ok = False
    try:  # rank 0 alone writes the folder, so it alone holds the lock
        with hold_folder(cfg.out, "niood-bench run", enabled=distributed.is_main()), writes_into(cfg.out):
            payload = _run(cfg, device, started, t_start, code, progress, resume, command, argv)
        ok = True
        return payload
    finally:
        if joins:
            distributed.cleanup(barrier=ok)


def _run(cfg: BenchConfig, device: torch.device, started: float, t_start: float, code: dict[str, Any],
         progress: bool, resume: bool, command: str, argv: Optional[Sequence[str]]) -> dict[str, Any]:
    """The run on this process; under torchrun every rank trains, rank 0 alone scores and writes
    (the other ranks return ``{}``)."""
    out = Path(cfg.out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    t0 = time.perf_counter()
    if not distributed.is_main():
        distributed.barrier()  # rank 0 loads first: it alone downloads what is missing
    data = load_data(cfg)  # a missing or corrupt data set fails before the output folder exists
    if distributed.is_main():
        distributed.barrier()
    cfg = dataclasses.replace(cfg, **data.recorded)  # record the sets the suite scored
    timings: dict[str, Any] = {"data_s": time.perf_counter() - t0, "train_s": {}, "score_s": {}}
    if distributed.is_main():
        prepare_out(out)
    distributed.barrier()
    log.info("data: %s train %d, test %d, OOD %s (%.1f s)", cfg.id, len(data.train), len(data.test),
             {k: len(v) for k, v in data.oods.items()}, timings["data_s"])

    models = ModelSource(cfg, data, device, progress, resume)

    results: list[dict[str, Any]] = []
    methods_info: dict[str, Any] = {}
    all_scores: dict[tuple[str, str, str], np.ndarray] = {}
    written: list[Optional[Path]] = []
    for method in cfg.methods:
        t0 = time.perf_counter()
        tm = models.get(method)
        tm.model.to(device).eval()
        if cfg.tta == "flip":  # scored (ID accuracy too) on the mean of each image and its mirror image
            tm = dataclasses.replace(tm, model=FlipAveraged(tm.model))
        timings["train_s"][method] = time.perf_counter() - t0
        if not distributed.is_main():
            continue  # rank 0 scores
        t0 = time.perf_counter()
        id_acc = accuracy(tm.model, data.test.loader(batch_size=cfg.batch_size), device, tm.num_classes)
        rows, scores, reps = score_method(tm, cfg, data, device)
        for r in rows:
            r["id_accuracy"] = id_acc
        results += rows
        all_scores.update(scores)
        timings["score_s"][method] = time.perf_counter() - t0
        methods_info[method] = {"id_accuracy": id_acc, "train_time_s": tm.train_time_s,
                                "score_time_s": timings["score_s"][method], "cached": tm.cached,
                                "start": models.start[method], "garbage_index": tm.garbage_index,
                                "history": tm.history}
        log.info("%s: ID accuracy %.4f, trained in %.1f s%s", method, id_acc, tm.train_time_s,
                 " (cached)" if tm.cached else "")
        written.append(plots.training_curves(out, method, tm.history))
        if cfg.feature_plots:
            t0 = time.perf_counter()
            written.append(feature_space(out, tm, {k: r.features for k, r in reps.items()}, cfg.id, device,
                                         seed=cfg.seed, batch_size=cfg.batch_size))
            timings.setdefault("feature_plots_s", {})[method] = time.perf_counter() - t0

    if not distributed.is_main():
        return {}
    t0 = time.perf_counter()
    written += plots.roc_curves(out, all_scores, cfg.id)
    written += plots.histograms(out, all_scores, cfg.id)
    written.append(plots.time_to_quality(out, methods_info))
    timings["plots_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    timings["peak_rss_mb"] = peak_rss_mb()
    payload = {
        "kind": "run", "command": command,
        "config": {**cfg.to_dict(), "detectors": chosen(cfg.detectors)},  # a list, the default's too
        "environment": environment(device),
        "timings": timings, "id_accuracy": methods_info[cfg.methods[0]]["id_accuracy"], "methods": methods_info,
        "results": results, "notes": _notes(cfg, data), "ood_groups": data.groups,
        "provenance": provenance("run", argv, cfg.seed, device, started, timings["total_s"], code),
    }
    outputs = collect_outputs(out, "run", written, cfg.methods)  # read the previous record before replacing it
    outputs.tidy()
    payload["files"] = outputs.record()
    write_results(out, payload)
    models.remove_own_checkpoints()  # finished: the model cache holds the result
    return payload


@dataclass
class ModelSource:
    """``get(method)``: the trained model of ``method``, from the cache or trained once.

    Keeps track of the checkpoint file of each method (named by the method and its cache
    key, as :mod:`~niood_plugin.bench.methods` names it), so that a finished run removes its
    own and no other configuration's, and says for each method whether it came from the
    cache, resumed from a checkpoint or started fresh, and why (:attr:`start`).
    """

    cfg: BenchConfig
    data: BenchData
    device: torch.device
    progress: bool
    resume: bool
    train_missing: bool = True
    trained: dict[str, Any] = field(default_factory=dict)
    start: dict[str, str] = field(default_factory=dict)
    checkpoints: dict[str, Path] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def cache_dir(self) -> Path:
        return Path(self.cfg.cache_dir) if self.cfg.cache_dir else self.out / "models"

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    def context(self, method: str, resume: bool) -> MethodContext:
        return MethodContext(cfg=self.cfg, train=self.data.train, val=None, num_classes=self.data.num_classes,
                             image_shape=self.data.image_shape, device=self.device, progress=self.progress,
                             checkpoint_dir=self.checkpoint_dir, sample_dir=self.out / "samples" / method,
                             resume=resume, get=self.get, probe=self._probe if self.cfg.probe_limit else None)

    def _probe(self, garbage_index: Optional[int]):
        from .probe import QualityProbe

        return QualityProbe(self.data.test, self.data.oods, self.data.num_classes, garbage_index, self.device,
                            n=int(self.cfg.probe_limit), batch_size=self.cfg.batch_size, seed=self.cfg.seed)

    def get(self, method: str):
        if method not in self.trained:
            ctx = self.context(method, self.resume)
            key = cache_key(method, ctx)
            ckpt = ctx.checkpoint_path(method)  # bench.methods names checkpoints so
            self.checkpoints[method] = ckpt
            distributed.barrier()  # every rank looks at the cache before any writes to it
            self.start[method] = self._announce(method, key, ckpt, ctx.sample_dir)
            self.trained[method] = obtain(method, ctx, self.cache_dir, self.train_missing)
            if ctx.sample_dir.is_dir() and distributed.is_main():
                atomic_write_text(ctx.sample_dir / SAMPLES_KEY, key + "\n")
        return self.trained[method]

    def _announce(self, method: str, key: str, ckpt: Path, sample_dir: Path) -> str:
        """Log (and return) where the model of ``method`` comes from; clear stale sample grids."""
        if (self.cache_dir / f"{method}-{key}.pt").is_file():
            note = f"cached: the model for these settings is in {self.cache_dir}"
            if self.resume:
                log.info("%s: --resume: nothing to resume, %s", method, note)
            if _read(sample_dir / SAMPLES_KEY) != key and distributed.is_main():
                remove_path(sample_dir)  # grids of another model
            return note
        others = sorted(p.name for p in self.checkpoint_dir.glob(f"{method}-*.pt") if p != ckpt) \
            if self.checkpoint_dir.is_dir() else []
        if self.resume and ckpt.is_file():
            log.info("%s: --resume: resuming from checkpoint %s", method, ckpt)
            return f"resumed from checkpoint {ckpt.name}"
        if distributed.is_main():
            remove_path(sample_dir)
        if self.resume:
            if others:
                note = (f"started fresh: the settings changed (no checkpoint {ckpt.name}, the name these settings' "
                        f"signature gives); kept the checkpoint(s) of other settings: {', '.join(others)}")
            else:
                note = f"started fresh: no checkpoint of {method} in {self.checkpoint_dir}"
            log.warning("%s: --resume: %s", method, note)
            return note
        if ckpt.is_file():
            log.warning("%s: starting fresh over the checkpoint %s of an interrupted run with these settings; "
                        "pass --resume to continue such a run", method, ckpt)
            return "started fresh (an interrupted run's checkpoint was there; no --resume)"
        return "trained"

    def remove_own_checkpoints(self) -> None:
        """Delete this run's checkpoint files (other configurations' stay); the folder only if empty."""
        for ckpt in self.checkpoints.values():
            ckpt.unlink(missing_ok=True)
            for tmp in ckpt.parent.glob(f".{ckpt.name}.*.tmp") if ckpt.parent.is_dir() else []:
                tmp.unlink(missing_ok=True)
        rmdir_if_empty(self.checkpoint_dir)


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def model_source(cfg: BenchConfig, data: BenchData, device: torch.device, progress: bool, resume: bool,
                 train_missing: bool = True):
    """``get(method)`` of a :class:`ModelSource` (kept for callers of the old function)."""
    return ModelSource(cfg, data, device, progress, resume, train_missing).get


def score_method(tm, cfg: BenchConfig, data: BenchData, device: torch.device):
    """Rows of metrics and raw scores of the detectors that apply to one trained model (see
    :func:`~niood_plugin.bench.detectors.for_method`)."""
    sets = {cfg.id: data.test, **data.oods}
    reps = {name: represent(tm, ds, cfg.batch_size, device) for name, ds in sets.items()}
    names = for_method(cfg.detectors, tm.method)
    fit = None
    if any(DETECTORS.get(n).needs_fit for n in names):
        fit = (represent(tm, data.fit, cfg.batch_size, device).features, data.fit.y)
    rows, scores = [], {}
    for name in names:
        sd = build(name, tm, cfg.ue_variant, fit)
        for ds_name, ds in sets.items():
            scores[(tm.method, name, ds_name)] = score(sd, tm, ds, reps[ds_name], cfg.batch_size, device)
        for ood in data.oods:
            row = {"method": tm.method, "detector": name, "ood": ood, "scored_on": sd.scored_on}
            row.update(ood_metrics(scores[(tm.method, name, cfg.id)], scores[(tm.method, name, ood)]))
            rows.append(row)
    return rows, scores, reps


def _notes(cfg: BenchConfig, data: BenchData) -> list[str]:
    notes = []
    if data.skipped:
        notes.append(f"optional OOD sets skipped, not available under the data root: {', '.join(data.skipped)} "
                     "(online, torchvision downloads them)")
    lossy = [n for n in [cfg.id, *data.oods] if not get_spec(n).generated and dataset_status(n, cfg.data_root)["lossy"]]
    if lossy:
        notes.append(f"read from lossy JPEG copies (pixels are not bit-exact): {', '.join(lossy)}")
    converted = [n for n, d in data.oods.items() if n not in ("gaussian", "uniform")]
    if converted:
        c, h, w = data.image_shape
        notes.append(f"OOD sets converted to the ID geometry {c}x{h}x{w} (luma for RGB->gray, antialiased "
                     f"bilinear resize): {', '.join(converted)}")
    skipped = left_out(cfg.detectors, cfg.methods)
    if skipped:
        notes.append("detectors not scored on methods they do not apply to: " + "; ".join(
            f"{d} ({DETECTORS.get(d).scope()}) on {', '.join(ms)}" for d, ms in skipped.items()))
    return notes
