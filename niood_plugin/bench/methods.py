"""Training methods compared by the harness, and the on-disk cache of trained models.

A method turns ID training data into a :class:`TrainedModel`.  Every method trains the
same architecture (``cfg.classifier`` at width ``cfg.width``; a patch-whitening layer, as
``airnet``'s, set from the first 5,000 ID training images) on the same loader (shuffling,
augmentation ``cfg.augment``), seed and device, with the preset's optimisation recipe.  Trained
weights are cached under ``cache_dir`` by a hash of everything that affects training, so adding
a detector or an OOD set never retrains.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..callbacks import Checkpoint, Measure, SampleGrid
from ..data import TensorData, build_augmentation
from .. import distributed
from ..errors import CheckpointError, ConfigError
from ..files import atomic_torch_save, load_checkpoint
from ..models import add_garbage_output, build_classifier, init_whitening, to_channels_last
from ..models.airnet import PatchWhitening
from ..negatives import Negatives
from ..pool import quantize
from ..registry import Registry
from ..presets import Preset
from ..training import train_plain
from .config import BenchConfig
from .defaults import DEFAULT_WIDTH, WIDTH_ARGUMENT
from .probe import probe_seconds

log = logging.getLogger(__name__)

CACHE_FORMAT = "niood-bench-model/2"
SAMPLES = 512  # generated outliers kept with an inversion model (feature-space plots)
WHITENING_IMAGES = 5_000  # ID training images that set a patch-whitening layer (airbench94 uses 5,000)


@dataclass
class TrainedModel:
    """A trained classifier and what the harness needs to score and report it."""

    method: str
    model: nn.Module
    num_classes: int
    garbage_index: Optional[int]          # None: a plain K-way model
    train_time_s: float
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, nn.Module] = field(default_factory=dict)  # e.g. BAL's discriminator
    cached: bool = False
    samples: Optional[torch.Tensor] = None  # uint8 images of the method's own outliers (feature plots)


@dataclass
class MethodContext:
    """Everything a method's training function may use."""

    cfg: BenchConfig
    train: TensorData
    val: Optional[TensorData]
    num_classes: int
    image_shape: tuple[int, int, int]
    device: torch.device
    progress: bool
    checkpoint_dir: Path
    sample_dir: Path
    resume: bool
    get: Callable[[str], TrainedModel]    # another method's (cached) model, e.g. FIG needs 'standard'
    probe: Optional[Callable[[Optional[int]], Any]] = None  # garbage_index -> per-epoch QualityProbe

    def probes(self, garbage_index: Optional[int]) -> list:
        return [] if self.probe is None else [self.probe(garbage_index)]

    def classifier_name(self) -> str:
        return self.cfg.classifier or self.cfg.resolved().classifier

    def width(self) -> Optional[int]:
        return self.cfg.width if self.cfg.width is not None else DEFAULT_WIDTH.get(self.classifier_name())

    def augment_name(self) -> str:
        return self.cfg.augment or self.cfg.resolved().augment or "none"

    def new_classifier(self, num_outputs: int) -> nn.Module:
        torch.manual_seed(self.cfg.seed)
        name, width = self.classifier_name(), self.width()
        kwargs = {WIDTH_ARGUMENT[name]: width} if name in WIDTH_ARGUMENT and width is not None else {}
        model = build_classifier(name, num_outputs, self.image_shape[0], **kwargs)
        if any(isinstance(m, PatchWhitening) for m in model.modules()):  # airnet: one whitening for every method
            init_whitening(model, self.train.x[:WHITENING_IMAGES])  # float32 in [-1, 1], the first ones
        # The same layout for training, for scoring and for a model reloaded from the cache:
        # layouts differ in the last bits of a convolution.
        return to_channels_last(model)

    def recipe(self) -> Preset:
        """Every method's training recipe (epochs, lr, schedule, batch size) and our garbage's settings."""
        return self.cfg.recipe()

    def negatives(self) -> Optional[Negatives]:
        return self.cfg.negatives_object()

    def checkpoint_path(self, method: str) -> Path:
        """The checkpoint file of ``method``'s unfinished training under these settings: named by
        the method and its cache key for one process, whatever the number of processes, so that
        ``--resume`` with another number finds it and is refused (the file records the number
        that wrote it) instead of starting fresh beside it."""
        return self.checkpoint_dir / f"{method}-{cache_key(method, self, world_size=1)}.pt"

    def loader(self, batch_size: int, shard: bool = True):
        """The ID training batches every method sees: shuffled, augmented (``cfg.augment``), on the device.

        Under torchrun (``shard``) each rank gets its shard of every global batch of ``batch_size``
        (``batch_size / world_size`` images); ``shard=False``: all the data (a method that trains
        the same on every rank)."""
        w = distributed.world_size() if shard else 1
        if batch_size % w:
            raise ConfigError(f"batch_size {batch_size} does not split over {w} processes: choose a multiple of {w}")
        return self.train.loader(batch_size=batch_size // w, shuffle=True, seed=self.cfg.seed,
                                 augment=build_augmentation(self.augment_name()), device=self.device,
                                 distributed=shard)


def _train_inversion(ctx: MethodContext) -> TrainedModel:
    """Ours from scratch: pre-training on ID data and noise, then the preset's inversion epochs."""
    return _fit_inversion(ctx, "inversion", ctx.new_classifier(ctx.num_classes + 1), ctx.recipe(), 0.0)


def _train_inversion_ft(ctx: MethodContext) -> TrainedModel:
    """Ours as a fine-tune of the cached ``standard`` model: its head gets a garbage output
    (:func:`~niood_plugin.models.add_garbage_output`), then ``finetune_epochs`` epochs of invert
    and retrain at ``finetune_lr``, no pre-training; its cost includes the ``standard`` model."""
    base = ctx.get("standard")
    lr = {} if ctx.cfg.finetune_lr is None else {"lr": ctx.cfg.finetune_lr}
    recipe = ctx.recipe().updated(epochs=ctx.cfg.finetune_epochs, pretrain_epochs=0, **lr)
    clf = add_garbage_output(copy.deepcopy(base.model)).to(ctx.device)
    return _fit_inversion(ctx, "inversion-ft", clf, recipe, base.train_time_s)


def _fit_inversion(ctx: MethodContext, method: str, clf: nn.Module, recipe: Preset, before_s: float) -> TrainedModel:
    ckpt = ctx.checkpoint_path(method)  # tied to the settings
    callbacks = [Measure(), SampleGrid(ctx.sample_dir, final_only=True), *ctx.probes(ctx.num_classes),
                 Checkpoint(ckpt)]
    trainer = recipe.create(clf, ctx.num_classes, ctx.image_shape, negatives=ctx.negatives(), device=ctx.device,
                            seed=ctx.cfg.seed, progress=ctx.progress, callbacks=callbacks)
    resume = ckpt if ctx.resume and ckpt.is_file() else None
    t0 = time.perf_counter()
    history = trainer.fit(ctx.loader(recipe.batch_size), val_loader=_val_loader(ctx), resume=resume)
    # On resume, time spent before the interruption is in the history.
    elapsed = sum(h.get("time_s", 0.0) for h in history) if resume else time.perf_counter() - t0 - probe_seconds(history)
    return TrainedModel(method, clf.eval(), ctx.num_classes, ctx.num_classes, before_s + elapsed, history,
                        samples=quantize(trainer.garbage.inverter.sample(SAMPLES)[0].cpu()))


def _val_loader(ctx: MethodContext):
    return None if ctx.val is None else ctx.val.loader(batch_size=ctx.cfg.batch_size)


def _plain_epochs(ctx: MethodContext) -> int:
    return ctx.recipe().total_epochs


def _train_like_standard(ctx: MethodContext, name: str, objective=None) -> TrainedModel:
    """K outputs, as many ID passes as ``inversion`` makes, the same recipe (optimiser, schedule,
    label smoothing), learning rate and schedule as ``inversion``; ``objective`` (None:
    cross-entropy) is the only difference between methods."""
    recipe = ctx.recipe()
    trainer = recipe.to_dict()["trainer"]  # the same recipe, lr and schedule as the trainer's
    model = ctx.new_classifier(ctx.num_classes).to(ctx.device)
    epochs = _plain_epochs(ctx)
    extra = {}
    if objective is not None:
        objective = objective(model, epochs)
        extra = {"objective": objective, "extra_params": getattr(objective, "trainable", list)()}
    # dropout masks: the same whatever ran before in this process (and per rank under torchrun)
    torch.manual_seed(distributed.rank_seed(ctx.cfg.seed))
    ckpt = ctx.checkpoint_path(name)  # after every epoch; --resume continues from it
    resume = ckpt if ctx.resume and ckpt.is_file() else None
    t0 = time.perf_counter()
    probe = ctx.probes(None)
    history = train_plain(model, ctx.loader(recipe.batch_size), epochs, trainer["lr"], ctx.device, ctx.progress,
                          _val_loader(ctx), trainer["lr_schedule"], channels_last=True, name=name,
                          on_epoch_end=probe[0] if probe else None, checkpoint=ckpt, resume=resume,
                          recipe=trainer["recipe"], **extra)
    # On resume, time spent before the interruption is in the history.
    elapsed = sum(h.get("time_s", 0.0) for h in history) if resume else time.perf_counter() - t0 - probe_seconds(history)
    return TrainedModel(name, model, ctx.num_classes, None, elapsed, history)


def _train_standard(ctx: MethodContext) -> TrainedModel:
    """Same architecture with K outputs, plain CE, as many ID passes as ``inversion`` makes."""
    return _train_like_standard(ctx, "standard")


def _logitnorm(model: nn.Module, epochs: int):
    from ..peers import LogitNormObjective

    return LogitNormObjective()


def _vos(model: nn.Module, epochs: int):
    from ..peers import VOSObjective

    return VOSObjective(model, epochs)


def _train_fig(ctx: MethodContext) -> TrainedModel:
    """FIG (Zhao et al., arXiv:2108.09976): fine-tune the cached ``standard`` model with its implicit generator."""
    from ..peers import FIGTrainer

    base = ctx.get("standard")
    model = copy.deepcopy(base.model).to(ctx.device)
    trainer = FIGTrainer(model, ctx.num_classes, ctx.image_shape, device=ctx.device, seed=ctx.cfg.seed,
                         progress=ctx.progress, max_epochs=ctx.cfg.fig_max_epochs)
    torch.manual_seed(ctx.cfg.seed)
    t0 = time.perf_counter()
    # FIG trains in one process: under torchrun every rank runs the same (seeded) fine-tuning
    history = trainer.fit(ctx.loader(128, shard=False), epochs=ctx.cfg.fig_epochs)  # None: until its stop rule
    # Its cost includes training the standard model it starts from.
    elapsed = base.train_time_s + time.perf_counter() - t0
    return TrainedModel("fig", trainer.classifier.eval(), ctx.num_classes, None, elapsed, history)


def _feature_dim(ctx: MethodContext, model: nn.Module) -> int:
    model.eval()
    with torch.inference_mode():
        return int(model.features(torch.zeros(1, *ctx.image_shape, device=ctx.device)).shape[1])


def _bal_skeleton(ctx: MethodContext) -> TrainedModel:
    from ..peers import FeatureDiscriminator

    model = ctx.new_classifier(ctx.num_classes).to(ctx.device)
    disc = FeatureDiscriminator(ctx.num_classes, _feature_dim(ctx, model)).to(ctx.device)
    return TrainedModel("bal", model, ctx.num_classes, None, 0.0, extra={"discriminator": disc})


def _train_bal(ctx: MethodContext) -> TrainedModel:
    """BAL (Pei et al., ECCV 2022): feature-space GAN on the frozen ``standard`` model."""
    from ..peers import BALTrainer

    base = ctx.get("standard")
    model = copy.deepcopy(base.model).to(ctx.device).eval()
    trainer = BALTrainer(model, ctx.num_classes, device=ctx.device, seed=ctx.cfg.seed, progress=ctx.progress)
    torch.manual_seed(ctx.cfg.seed)
    t0 = time.perf_counter()
    history = trainer.fit(ctx.loader(128, shard=False), epochs=ctx.cfg.bal_epochs)  # as FIG: the same on every rank
    elapsed = base.train_time_s + time.perf_counter() - t0
    return TrainedModel("bal", model, ctx.num_classes, None, elapsed, history,
                        extra={"discriminator": trainer.discriminator.eval()})


@dataclass(frozen=True)
class Method:
    """``skeleton(ctx)``: the untrained model (to load cached weights into); ``train(ctx)``: train it."""

    name: str
    skeleton: Callable[[MethodContext], TrainedModel]
    train: Callable[[MethodContext], TrainedModel]
    description: str = ""


METHODS: Registry[Method] = Registry("method")


def register_method(method: Method) -> None:
    METHODS.register(method.name, method)


register_method(Method(
    "inversion",
    lambda ctx: TrainedModel("inversion", ctx.new_classifier(ctx.num_classes + 1), ctx.num_classes,
                             ctx.num_classes, 0.0),
    _train_inversion, "ours: K+1 classifier, garbage class filled by network inversion"))
register_method(Method(
    "inversion-ft",
    lambda ctx: TrainedModel("inversion-ft", ctx.new_classifier(ctx.num_classes + 1), ctx.num_classes,
                             ctx.num_classes, 0.0),
    _train_inversion_ft, "ours as a fine-tune: 'standard' given a garbage output, then the inversion epochs"))
register_method(Method(
    "standard",
    lambda ctx: TrainedModel("standard", ctx.new_classifier(ctx.num_classes), ctx.num_classes, None, 0.0),
    _train_standard, "same architecture, K outputs, plain cross-entropy"))
register_method(Method(
    "fig",
    lambda ctx: TrainedModel("fig", ctx.new_classifier(ctx.num_classes), ctx.num_classes, None, 0.0),
    _train_fig, "FIG: 'standard' fine-tuned on Langevin samples of its implicit generator"))
register_method(Method("bal", _bal_skeleton, _train_bal,
                       "BAL: conditional feature GAN on the frozen 'standard' model; adds the 'bal' detector"))
register_method(Method(
    "logitnorm",
    lambda ctx: TrainedModel("logitnorm", ctx.new_classifier(ctx.num_classes), ctx.num_classes, None, 0.0),
    lambda ctx: _train_like_standard(ctx, "logitnorm", _logitnorm),
    "LogitNorm: 'standard' with pytorch-ood's LogitNorm loss (tau 0.04) instead of cross-entropy"))
register_method(Method(
    "vos",
    lambda ctx: TrainedModel("vos", ctx.new_classifier(ctx.num_classes), ctx.num_classes, None, 0.0),
    lambda ctx: _train_like_standard(ctx, "vos", _vos),
    "VOS: 'standard' plus pytorch-ood's virtual-outlier energy regulariser (from 40% of the epochs)"))


def list_methods() -> list[str]:
    return METHODS.list()


def obtain(method: str, ctx: MethodContext, cache_dir: Path, train_missing: bool = True) -> TrainedModel:
    """The trained model of ``method``: from the cache if there, else trained and cached.

    With ``train_missing=False`` a model missing from the cache is an error, not a training run.
    """
    m = METHODS.get(method)
    key = cache_key(method, ctx)
    path = cache_dir / f"{method}-{key}.pt"
    if path.is_file():
        log.info("%s: using cached model %s", method, path)
        return load_trained(path, key, m.skeleton(ctx))
    if not train_missing:
        raise CheckpointError(f"no cached {method} model for these settings ({path}): run `niood-bench run` "
                              "first with the same --config/flags, or pass --train to train it here")
    tm = m.train(ctx)
    if distributed.is_main():
        save_trained(tm, path, key)
    distributed.barrier()
    return tm


def cache_key(method: str, ctx: MethodContext, world_size: Optional[int] = None) -> str:
    """Hash of everything that changes the trained weights of ``method``; ``world_size``: the
    number of processes to key for (default: this run's)."""
    cfg = ctx.cfg
    negatives = ctx.negatives() if method in ("inversion", "inversion-ft") else None
    payload = {
        "method": method, "id": cfg.id, "train_limit": cfg.train_limit, "seed": cfg.seed,
        "classifier": ctx.classifier_name(), "width": ctx.width(), "image_shape": list(ctx.image_shape),
        "config": ctx.recipe().to_dict(), "n_train": len(ctx.train), "version": CACHE_FORMAT,
        "negatives": None if negatives is None else negatives.to_dict(),
        "peers": {"fig_epochs": cfg.fig_epochs, "fig_max_epochs": cfg.fig_max_epochs,
                  "bal_epochs": cfg.bal_epochs} if method in ("fig", "bal") else
                 {"finetune_epochs": cfg.finetune_epochs, "finetune_lr": cfg.finetune_lr} if method == "inversion-ft"
                 else {},
    }
    defaults = _peer_defaults(method)
    if defaults:  # a peer's own hyperparameters: a changed default retrains it
        payload["peer_defaults"] = defaults
    if payload["config"]["trainer"].get("recipe") == "adam":  # absent when the default: keys stay valid
        del payload["config"]["trainer"]["recipe"]
    if ctx.augment_name() != "none":  # absent when off: keys of models trained before augmentation stay valid
        payload["augment"] = ctx.augment_name()
    processes = distributed.world_size() if world_size is None else world_size
    if processes > 1:  # a model of N processes (per-rank BatchNorm statistics) is another model
        payload["world_size"] = processes
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _peer_defaults(method: str) -> dict[str, Any]:
    """The constructor defaults of the peer class behind ``method`` (they set how it trains)."""
    from .. import peers

    cls = {"fig": peers.FIGTrainer, "bal": peers.BALTrainer, "logitnorm": peers.LogitNormObjective,
           "vos": peers.VOSObjective}.get(method)
    if cls is None:
        return {}
    skip = {"classifier", "model", "device", "seed", "progress", "num_classes", "image_shape", "feature_dim",
            "epochs"}
    return {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items()
            if n not in skip and p.default is not inspect.Parameter.empty and _plain(p.default)}


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str)) or (
        isinstance(value, (tuple, list)) and all(_plain(v) for v in value))


def save_trained(tm: TrainedModel, path: Path, key: str) -> None:
    atomic_torch_save({
        "format": CACHE_FORMAT, "key": key, "method": tm.method, "num_classes": tm.num_classes,
        "garbage_index": -1 if tm.garbage_index is None else tm.garbage_index,
        "train_time_s": tm.train_time_s, "history": json.dumps(tm.history),
        "model": tm.model.state_dict(), "extra": {k: m.state_dict() for k, m in tm.extra.items()},
        "samples": tm.samples,
    }, path)


def load_trained(path: Path, key: str, fresh: TrainedModel) -> TrainedModel:
    """Fill ``fresh`` (an untrained model of the right architecture) from the cache file."""
    state = load_checkpoint(path, CACHE_FORMAT)
    if state["key"] != key:
        raise CheckpointError(f"cache file {path} has key {state['key']}, expected {key}; delete it")
    try:
        fresh.model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"cache file {path} does not fit the model: delete it ({exc})") from exc
    if set(state["extra"]) != set(fresh.extra):
        raise CheckpointError(f"cache file {path} holds {sorted(state['extra'])}, expected {sorted(fresh.extra)}; "
                              "delete it")
    for name, sd in state["extra"].items():
        fresh.extra[name].load_state_dict(sd)
    fresh.model.eval()
    fresh.train_time_s = float(state["train_time_s"])
    fresh.history = json.loads(state["history"])
    fresh.samples = state.get("samples")
    fresh.cached = True
    return fresh
