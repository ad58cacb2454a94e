"""One benchmark run: data -> trained models -> detector scores -> metrics -> report.

Each stage hands its output to the next and never calls back: ``load_data`` gives
tensors, ``methods.obtain`` a trained (or cached) model, ``detectors.build`` +
``evaluate.score`` the scores, ``evaluate.ood_metrics`` the rows, and ``report`` /
``plots`` write them.
"""
from __future__ import annotations

import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import TensorData, list_datasets, load_dataset, subset_indices
from ..detector import VARIANTS as UE_VARIANTS
from ..errors import ConfigError
from ..presets import list_presets
from . import plots
from .config import ALL_DETECTORS, BenchConfig
from .detectors import applicable, build
from .evaluate import ood_metrics, represent, score
from .methods import METHODS, MethodContext, accuracy, list_methods, obtain
from .report import write_results

log = logging.getLogger(__name__)


@dataclass
class BenchData:
    train: TensorData
    test: TensorData
    oods: dict[str, TensorData]
    fit: TensorData                      # ID training subset for feature detectors

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.train.image_shape

    @property
    def num_classes(self) -> int:
        return int(self.train.num_classes)


def validate(cfg: BenchConfig) -> None:
    """Check every name and number in ``cfg`` before any work starts."""
    datasets = list_datasets()
    for name in [cfg.id, *cfg.ood]:
        if name not in datasets:
            raise ConfigError(f"unknown dataset {name!r}; choose from {datasets}")
    if cfg.id in ("gaussian", "uniform", "tinyimagenet"):
        raise ConfigError(f"{cfg.id!r} has no class labels and cannot be the in-distribution set")
    if cfg.id in cfg.ood:
        raise ConfigError(f"{cfg.id!r} is both the ID set and an OOD set")
    if not cfg.ood:
        raise ConfigError("no OOD set given (--ood)")
    for m in cfg.methods:
        if m not in METHODS:
            raise ConfigError(f"unknown method {m!r}; choose from {list_methods()}")
    if not cfg.methods:
        raise ConfigError("no method given (--method)")
    valid_detectors = list(ALL_DETECTORS) + ["bal"]
    for d in cfg.detectors:
        if d not in valid_detectors:
            raise ConfigError(f"unknown detector {d!r}; choose from {valid_detectors}")
    if cfg.preset not in list_presets():
        raise ConfigError(f"unknown preset {cfg.preset!r}; choose from {list_presets()}")
    if cfg.ue_variant not in UE_VARIANTS:
        raise ConfigError(f"unknown ue_variant {cfg.ue_variant!r}; choose from {list(UE_VARIANTS)}")
    for name in ("width", "fit_limit", "batch_size"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name} must be > 0, got {getattr(cfg, name)}")
    for name in ("epochs", "train_limit", "test_limit", "threads"):
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value}")
    try:  # unknown or bad trainer hyperparameters (--set, hparams) fail here, before any work
        cfg.inversion_config()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"hyperparameters: {exc}") from exc
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {cfg.device!r} requested but CUDA is not available; use --device cpu")


def prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".niood-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to --out {out}: {exc.strerror or exc}; choose a writable directory") from exc


def load_data(cfg: BenchConfig) -> BenchData:
    train = load_dataset(cfg.id, "train", cfg.data_root, limit=cfg.train_limit, seed=cfg.seed)
    if train.num_classes is None:
        raise ConfigError(f"{cfg.id!r} has no class labels")
    shape = train.image_shape
    test = load_dataset(cfg.id, "test", cfg.data_root, limit=cfg.test_limit, seed=cfg.seed)
    oods = {name: load_dataset(name, "test", cfg.data_root, image_shape=shape, limit=cfg.test_limit, seed=cfg.seed)
            for name in cfg.ood}
    idx = subset_indices(train.y, min(cfg.fit_limit, len(train)), seed=cfg.seed)  # class-stratified
    fit = train if idx is None else TensorData(train.x[idx], train.y[idx], f"{cfg.id}-fit")
    missing = sorted(set(range(int(train.num_classes))) - set(fit.y.unique().tolist()))
    if missing:
        raise ConfigError(f"classes {missing} have no training images (train_limit={cfg.train_limit}, "
                          f"fit_limit={cfg.fit_limit}): raise them")
    return BenchData(train, test, oods, fit)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux/macOS)."""
    import resource
    import sys as _sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if _sys.platform == "darwin" else rss / 1024


def environment(device: torch.device) -> dict[str, Any]:
    import pytorch_ood
    import sklearn
    import timm
    import torchvision

    from .. import __version__

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__, "torchvision": torchvision.__version__, "pytorch_ood": pytorch_ood.__version__,
        "timm": timm.__version__, "sklearn": sklearn.__version__, "niood_plugin": __version__,
    }


def run(cfg: BenchConfig, *, progress: bool = True, resume: bool = False, command: str = "") -> dict[str, Any]:
    """Run the benchmark described by ``cfg``; returns the results payload (also written to ``cfg.out``)."""
    t_start = time.perf_counter()
    validate(cfg)
    out = Path(cfg.out)
    prepare_out(out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    t0 = time.perf_counter()
    data = load_data(cfg)
    timings: dict[str, Any] = {"data_s": time.perf_counter() - t0, "train_s": {}, "score_s": {}}
    log.info("data: %s train %d, test %d, OOD %s (%.1f s)", cfg.id, len(data.train), len(data.test),
             {k: len(v) for k, v in data.oods.items()}, timings["data_s"])

    get = model_source(cfg, data, device, progress, resume)

    results: list[dict[str, Any]] = []
    methods_info: dict[str, Any] = {}
    all_scores: dict[tuple[str, str, str], np.ndarray] = {}
    for method in cfg.methods:
        t0 = time.perf_counter()
        tm = get(method)
        tm.model.to(device).eval()
        timings["train_s"][method] = time.perf_counter() - t0
        t0 = time.perf_counter()
        id_acc = accuracy(tm.model, data.test.loader(batch_size=cfg.batch_size), device, tm.num_classes)
        rows, scores = score_method(tm, cfg, data, device)
        for r in rows:
            r["id_accuracy"] = id_acc
        results += rows
        all_scores.update(scores)
        timings["score_s"][method] = time.perf_counter() - t0
        methods_info[method] = {"id_accuracy": id_acc, "train_time_s": tm.train_time_s,
                                "score_time_s": timings["score_s"][method], "cached": tm.cached,
                                "garbage_index": tm.garbage_index, "history": tm.history}
        log.info("%s: ID accuracy %.4f, trained in %.1f s%s", method, id_acc, tm.train_time_s,
                 " (cached)" if tm.cached else "")
        plots.training_curves(out, method, tm.history)

    t0 = time.perf_counter()
    plots.roc_curves(out, all_scores, cfg.id)
    plots.histograms(out, all_scores, cfg.id)
    timings["plots_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    timings["peak_rss_mb"] = peak_rss_mb()
    payload = {
        "command": command, "config": cfg.to_dict(), "environment": environment(device), "timings": timings,
        "id_accuracy": methods_info[cfg.methods[0]]["id_accuracy"], "methods": methods_info, "results": results,
        "notes": _notes(cfg, data),
    }
    write_results(out, payload)
    checkpoints = out / "checkpoints"
    if checkpoints.is_dir() and not resume:
        shutil.rmtree(checkpoints, ignore_errors=True)  # finished: the model cache holds the result
    return payload


def model_source(cfg: BenchConfig, data: BenchData, device: torch.device, progress: bool, resume: bool,
                 train_missing: bool = True):
    """``get(method)``: the trained model of ``method``, from the cache or trained once per process."""
    out = Path(cfg.out)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else out / "models"
    trained: dict[str, Any] = {}

    def get(method: str):
        if method not in trained:
            ctx = MethodContext(cfg=cfg, train=data.train, val=None, num_classes=data.num_classes,
                                image_shape=data.image_shape, device=device, progress=progress,
                                checkpoint_dir=out / "checkpoints", sample_dir=out / "samples" / method,
                                resume=resume, get=get)
            trained[method] = obtain(method, ctx, cache_dir, train_missing)
        return trained[method]

    return get


def score_method(tm, cfg: BenchConfig, data: BenchData, device: torch.device):
    """Rows of metrics and raw scores of every applicable detector for one trained model."""
    sets = {cfg.id: data.test, **data.oods}
    reps = {name: represent(tm, ds, cfg.batch_size, device) for name, ds in sets.items()}
    fit_rep = represent(tm, data.fit, cfg.batch_size, device)
    fit = (fit_rep.features, data.fit.y)
    names = list(cfg.detectors)
    if "bal" not in names and applicable("bal", tm):
        names.append("bal")
    rows, scores = [], {}
    for name in names:
        if not applicable(name, tm):
            continue
        sd = build(name, tm, cfg.ue_variant, fit)
        for ds_name, ds in sets.items():
            scores[(tm.method, name, ds_name)] = score(sd, tm, ds, reps[ds_name], cfg.batch_size, device)
        for ood in data.oods:
            row = {"method": tm.method, "detector": name, "ood": ood, "scored_on": sd.scored_on}
            row.update(ood_metrics(scores[(tm.method, name, cfg.id)], scores[(tm.method, name, ood)]))
            rows.append(row)
    return rows, scores


def _notes(cfg: BenchConfig, data: BenchData) -> list[str]:
    notes = []
    if "cifar10-jpeg" in cfg.ood or cfg.id == "cifar10-jpeg":
        notes.append("cifar10-jpeg is a lossy JPEG copy of CIFAR-10 (about quality 75): pixels are not bit-exact")
    converted = [n for n, d in data.oods.items() if n not in ("gaussian", "uniform")]
    if converted:
        c, h, w = data.image_shape
        notes.append(f"OOD sets converted to the ID geometry {c}x{h}x{w} (luma for RGB->gray, antialiased "
                     f"bilinear resize): {', '.join(converted)}")
    return notes
