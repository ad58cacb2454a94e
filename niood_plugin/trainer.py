"""InversionTrainer: the report's garbage-class training loop (sections 3, 8, 9).

One call of :meth:`InversionTrainer.fit` runs

0. **pre-training**: one epoch on ID data plus Gaussian-noise images labelled as the
   garbage class (index K), with class-balanced weighted cross-entropy;
1. for each epoch:
   a. **inversion** – freeze the classifier; train the conditional generator for
      ``inversion_steps`` steps, each on ``samples_per_step`` fresh samples conditioned on
      all K + 1 outputs, with ``L_inv = alpha KL + beta CE + gamma cosine + delta ortho``
      (plus ``novelty * Novelty`` if set, not in the report: see :func:`~.losses.novelty_loss`);
   b. **metrics** – confidence, margin, UE and entropy of the classifier on a fixed batch of
      ``metric_samples_per_class`` generated images per class (fixed noise and fixed
      conditioning for the whole run), per class and averaged, plus the inversion accuracy
      of the last step;
   c. **garbage** – the last step's samples go into the garbage pool;
   d. **retraining** – one epoch on ID + garbage with class-balanced weighted CE, the
      weights recomputed from the current class counts (with ``jigsaw > 0``, not in the
      report, each batch's garbage also gets ``jigsaw`` negatives per ID image: tile-shuffled,
      quarter-turned or warped copies (``negatives``),
      a fraction of them or, above 1, several each: see :mod:`~.negatives`).

Every epoch ends with an optional atomic checkpoint; ``fit(..., resume=path)`` continues
after the last complete epoch and reproduces an uninterrupted run with the same seed.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .conditioning import Conditioning, balanced_labels, sample_conditioning
from .errors import CheckpointError
from .files import atomic_torch_save, load_checkpoint
from .losses import InversionLossWeights, class_balanced_weights, inversion_loss, novelty_loss
from .models import (CONDITIONINGS, as_channels_last, build_generator, check_feature_classifier,
                     generator_for_shape, to_channels_last)
from .negatives import WARP_CELLS, WARP_STRENGTH, check_negatives, check_warp, make_negatives, parse_kinds
from .pool import POLICIES, GarbagePool, dequantize, quantize
from .presets import get_preset
from .scores import per_class_metrics

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "niood-inversion/1"
METRIC_NAMES = ("confidence", "margin", "ue", "entropy")
LR_SCHEDULES = ("constant", "cosine")
GARBAGE_CLASSES = ("single", "per-class")
_IGNORE = -100                     # cross-entropy target of a left-out negative (F.cross_entropy default)


def epoch_lr(base_lr: float, schedule: str, epoch: int, total_epochs: int) -> float:
    """Learning rate of classifier epoch ``epoch`` (0-based) of ``total_epochs``."""
    if schedule == "constant" or total_epochs <= 1:
        return base_lr
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / total_epochs))


@dataclass
class InversionConfig:
    """All hyperparameters of :class:`InversionTrainer` (names as in the report)."""

    alpha: float = 0.0                 # weight of the KL loss
    beta: float = 1.0                  # weight of the cross-entropy loss
    gamma: float = 0.0                 # weight of the cosine-similarity loss
    delta: float = 0.0                 # weight of the feature-orthogonality loss
    latent_dim: int = 100              # size of the generator's latent z
    batch_size: int = 32               # classifier batch size (ID part; garbage is added)
    inversion_steps: int = 100         # generator updates per epoch
    samples_per_step: int = 11_000     # generated images per generator update
    epochs: int = 20                   # inversion + retraining epochs after pre-training
    classifier_lr: float = 1e-4
    generator_lr: float = 1e-3
    conditioning: str = "vector"       # vector | matrix | vector-matrix
    generator_width: int = 64          # ngf of the report generators
    generator_chunk: int = 2048        # images per forward/backward within one step (memory)
    vector_temperature: float = 1.0    # softmax temperature of conditioning vectors
    noise_samples: int = 0             # Gaussian garbage images; 0 = mean ID class size
    pool_capacity: Optional[int] = 100_000
    pool_policy: str = "reservoir"     # all | fifo | reservoir
    pretrain_epochs: int = 1
    metric_samples_per_class: int = 10
    weighted_ce: bool = True           # class-balanced weights (report 3.2)
    garbage_per_epoch: int = 0         # 0: the last step's samples go to the pool (report);
                                       # N > 0: N fresh samples of the final generator instead
    lr_schedule: str = "constant"      # classifier learning rate: constant | cosine (per epoch)
    garbage_source: str = "inversion"  # inversion | noise (ablation: fresh Gaussian noise, no generator)
    garbage_classes: str = "single"    # single: one garbage class (K+1 outputs, the report);
                                       # per-class: one per ID class (2K outputs, report's future work)
    channels_last: bool = True         # convolutions in channels-last layout (faster; see models.layout)
    novelty: float = 0.0               # weight of a term pushing generated features away from their
                                       # class's mean ID feature (not in the report; 0 = off)
    jigsaw: float = 0.0                # negatives per ID image in each retraining batch, labelled garbage
                                       # (not in the report; 0 = off; see negatives.py)
    negatives: str = "jigsaw"          # which negatives: jigsaw | rotate | warp, or several joined by + (split evenly)
    jigsaw_grid: int = 4               # tiles per side of a jigsaw negative
    jigsaw_from: int = 0               # first inversion epoch with negatives (0: from pre-training on;
                                       # late is better, see negatives.py)
    jigsaw_head_only: bool = False     # negatives train the head only (no gradient into the features)
    negatives_spare: float = 1.0       # leave out a negative while the classifier gives its source class a
                                       # probability above this (1.0: keep all; see negatives.py)
    warp_cells: int = WARP_CELLS       # warp negatives: control points per side of the displacement field
    warp_strength: float = WARP_STRENGTH  # warp negatives: std of the offsets, in half-widths of the image

    def validate(self) -> None:
        InversionLossWeights(self.alpha, self.beta, self.gamma, self.delta)
        for name in ("latent_dim", "batch_size", "inversion_steps", "samples_per_step", "epochs",
                     "generator_width", "generator_chunk", "metric_samples_per_class"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("pretrain_epochs", "noise_samples", "garbage_per_epoch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        for name in ("novelty", "jigsaw"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        parse_kinds(self.negatives)
        check_warp(self.warp_cells, self.warp_strength)
        spare = self.negatives_spare
        if not isinstance(spare, (int, float)) or isinstance(spare, bool) or not 0 < spare <= 1:
            raise ValueError(f"negatives_spare must be a probability in (0, 1] (1.0 keeps every negative), "
                             f"got {spare!r}")
        if not isinstance(self.jigsaw_grid, int) or isinstance(self.jigsaw_grid, bool) or self.jigsaw_grid < 2:
            raise ValueError(f"jigsaw_grid must be an int >= 2, got {self.jigsaw_grid!r}")
        for name in ("classifier_lr", "generator_lr", "vector_temperature"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not isinstance(self.jigsaw_from, int) or isinstance(self.jigsaw_from, bool) or self.jigsaw_from < 0:
            raise ValueError(f"jigsaw_from must be an int >= 0, got {self.jigsaw_from!r}")
        if self.jigsaw and self.jigsaw_from > self.epochs:
            raise ValueError(f"jigsaw_from {self.jigsaw_from} is after the last epoch ({self.epochs}), so no "
                             "negatives would be used: lower it or set jigsaw=0")
        for name in ("weighted_ce", "channels_last", "jigsaw_head_only"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.garbage_classes not in GARBAGE_CLASSES:
            raise ValueError(f"unknown garbage_classes {self.garbage_classes!r}; choose one of {GARBAGE_CLASSES}")
        if self.garbage_source not in ("inversion", "noise"):
            raise ValueError(f"unknown garbage_source {self.garbage_source!r}; choose 'inversion' or 'noise'")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of {LR_SCHEDULES}")
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"unknown conditioning {self.conditioning!r}; choose one of {CONDITIONINGS}")
        if self.pool_policy not in POLICIES:
            raise ValueError(f"unknown pool_policy {self.pool_policy!r}; choose one of {POLICIES}")
        if self.pool_capacity is None and self.pool_policy != "all":
            raise ValueError(f"pool_policy {self.pool_policy!r} needs a pool_capacity")
        if self.pool_policy == "all" and self.pool_capacity is not None:
            need = self.epochs * (self.garbage_per_epoch or self.samples_per_step)
            if need > self.pool_capacity:
                raise ValueError(
                    f"pool_policy 'all' would hold {need} images but pool_capacity is {self.pool_capacity}: "
                    "raise pool_capacity, set it to None (unbounded), or use 'fifo'/'reservoir'"
                )

    def identity(self, epoch: Optional[int] = None) -> dict[str, Any]:
        """The fields as a dict, for checkpoint signatures and cache keys.  Options added after
        0.1 are left out while off, so checkpoints and caches written before them stay valid.

        With ``epoch`` (0 = after pre-training), options that have not acted by the end of that
        epoch are left out too (jigsaw negatives with a later ``jigsaw_from``): the state of a
        run after ``epoch`` is then keyed like that of the same run without them, which it is."""
        out = asdict(self)
        if not self.novelty:
            out.pop("novelty")
        if self.negatives == "jigsaw":
            out.pop("negatives")
        if self.negatives_spare == 1.0:
            out.pop("negatives_spare")
        at_defaults = (self.warp_cells, self.warp_strength) == (WARP_CELLS, WARP_STRENGTH)
        if at_defaults or "warp" not in parse_kinds(self.negatives):
            out.pop("warp_cells")
            out.pop("warp_strength")
        if not self.jigsaw or (epoch is not None and self.jigsaw_from > epoch):
            for name in ("jigsaw", "negatives", "jigsaw_grid", "jigsaw_from", "jigsaw_head_only", "negatives_spare",
                         "warp_cells", "warp_strength"):
                out.pop(name, None)
        return out

    @classmethod
    def from_preset(cls, preset: Optional[str], dataset: Optional[str] = None, **overrides: Any) -> "InversionConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown hyperparameter(s) {unknown}; known: {sorted(known)}")
        values = get_preset(preset, dataset) if preset else {}
        values.update(overrides)  # an explicit None is kept (e.g. pool_capacity=None: unbounded)
        cfg = cls(**values)
        cfg.validate()
        return cfg


class InversionTrainer:
    """Train a K+1-way classifier whose extra garbage class learns from network inversion.

    >>> clf = build_classifier("report28", num_outputs=11, in_channels=1)
    >>> trainer = InversionTrainer(clf, num_classes=10, image_shape=(1, 28, 28), preset="fast")
    >>> history = trainer.fit(train_loader)           # x in [-1, 1], y in [0, 10)
    >>> detector = UEDetector(trainer.classifier.eval(), garbage_index=10)

    :param classifier: a module following :mod:`niood_plugin.models.protocol`
        (``features`` + ``head``) with exactly ``num_classes + 1`` outputs, or ``2 * num_classes``
        with ``garbage_classes="per-class"`` (one garbage class per ID class, the report's
        future-work idea: an image generated for class c trains garbage class K + c; score such a
        model through :class:`~niood_plugin.models.MergeGarbage`, which makes it K+1-way exactly)
    :param num_classes: K, the number of in-distribution classes; the garbage class is index K
    :param image_shape: ``(C, H, W)`` of the training images
    :param preset: ``"fast"``, ``"smoke"``, ``"report"`` (needs ``dataset``) or
        ``"report-<dataset>"``; explicit keyword hyperparameters override it
    :param dataset: dataset name for ``preset="report"``
    :param generator: a conditional generator module, or ``None`` to build the report's
        generator for ``image_shape`` (``report28``/``report32``)
    :param device: ``"cpu"``, ``"cuda"``, ...
    :param seed: seeds the noise, the conditioning, the pool and torch's global RNG
    :param progress: show tqdm progress bars
    :param sample_dir: if set, save a grid of the fixed-noise samples every epoch there
    :param hyperparameters: any field of :class:`InversionConfig`
    """

    def __init__(self, classifier: nn.Module, num_classes: int, image_shape: tuple[int, int, int],
                 *, preset: Optional[str] = None, dataset: Optional[str] = None,
                 generator: Optional[nn.Module] = None, device: str | torch.device = "cpu",
                 seed: int = 0, progress: bool = True, sample_dir: Optional[str | Path] = None,
                 alpha: Optional[float] = None, beta: Optional[float] = None,
                 gamma: Optional[float] = None, delta: Optional[float] = None,
                 latent_dim: Optional[int] = None, batch_size: Optional[int] = None,
                 inversion_steps: Optional[int] = None, samples_per_step: Optional[int] = None,
                 epochs: Optional[int] = None, classifier_lr: Optional[float] = None,
                 generator_lr: Optional[float] = None, conditioning: Optional[str] = None,
                 **more: Any):
        self.classifier = classifier
        self.num_classes = num_classes
        self.image_shape = tuple(image_shape)
        self.generator = generator
        self.device = torch.device(device)
        self.seed = seed
        self.progress = progress
        self.sample_dir = Path(sample_dir) if sample_dir is not None else None
        named = dict(alpha=alpha, beta=beta, gamma=gamma, delta=delta, latent_dim=latent_dim, batch_size=batch_size,
                     inversion_steps=inversion_steps, samples_per_step=samples_per_step, epochs=epochs,
                     classifier_lr=classifier_lr, generator_lr=generator_lr, conditioning=conditioning)
        # Named arguments left at None mean "the preset's value"; **more is taken as given.
        self.config = InversionConfig.from_preset(
            preset, dataset, **{k: v for k, v in named.items() if v is not None}, **more)
        self.history: list[dict[str, Any]] = []
        self._check_static()

    # ------------------------------------------------------------------ checks
    def _check_static(self) -> None:
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {self.num_classes!r}")
        if len(self.image_shape) != 3 or any((not isinstance(s, int)) or s <= 0 for s in self.image_shape):
            raise ValueError(f"image_shape must be (C, H, W) positive ints, got {self.image_shape!r}")
        check_feature_classifier(self.classifier)
        if self.generator is None:
            generator_for_shape(self.image_shape)  # raises early for unsupported sizes
        if self.config.jigsaw:
            check_negatives(parse_kinds(self.config.negatives), self.config.jigsaw_grid, self.image_shape)

    @property
    def garbage_index(self) -> int:
        """Index of the (first) garbage output: K."""
        return self.num_classes

    @property
    def num_garbage(self) -> int:
        """Number of garbage outputs: 1, or K with ``garbage_classes="per-class"``."""
        return self.num_classes if self.config.garbage_classes == "per-class" else 1

    @property
    def num_outputs(self) -> int:
        return self.num_classes + self.num_garbage

    def _slots_of(self, labels: Tensor) -> Tensor:
        """Garbage slot of generated images conditioned on output ``labels``.

        Per-class: an image generated for ID class c (or for garbage class K + c) goes to
        garbage class K + c, slot c.  Single: slot 0.
        """
        if self.num_garbage == 1:
            return torch.zeros_like(labels, dtype=torch.long)
        return labels.long() % self.num_classes

    def _random_slots(self, n: int) -> Tensor:
        if self.num_garbage == 1:
            return torch.zeros(n, dtype=torch.long)
        return torch.randint(self.num_garbage, (n,), generator=self._rng)

    def _check_batch(self, x: Tensor, y: Tensor) -> None:
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError("train_loader must yield (x, y) tensor pairs")
        if not x.is_floating_point():
            raise TypeError(f"images must be floating point in [-1, 1], got {x.dtype}")
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"images have shape {tuple(x.shape[1:])} but image_shape is {self.image_shape}: "
                             "resize the data or pass the right image_shape")
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"labels must be a 1-D tensor of length {x.shape[0]}, got shape {tuple(y.shape)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}) (the garbage class {self.num_classes} "
                             f"is added by the trainer), got range [{int(y.min())}, {int(y.max())}]")
        if not torch.isfinite(x).all():
            raise ValueError("images contain NaN or Inf: check the data pipeline (e.g. a division by a zero std)")
        lo, hi = float(x.min()), float(x.max())
        if (lo < -1.0 - 1e-3 or hi > 1.0 + 1e-3) and not self._warned_range:
            self._warned_range = True
            log.warning("images range over [%.3g, %.3g], not [-1, 1]: the generator's Tanh outputs [-1, 1], "
                        "so normalise the data (x = 2 * x01 - 1) for garbage and ID images to be comparable", lo, hi)

    def _check_model_outputs(self, x: Tensor) -> None:
        self.classifier.eval()
        with torch.inference_mode():
            out = self.classifier(x[:2].to(self.device))
        if out.dim() != 2 or out.shape[1] != self.num_outputs:
            raise ValueError(f"the classifier returns {tuple(out.shape[1:])} outputs but needs {self.num_outputs} "
                             f"({self.num_classes} ID classes + {self.num_garbage} garbage, garbage_classes="
                             f"{self.config.garbage_classes!r}); build it with num_outputs={self.num_outputs}")

    # ------------------------------------------------------------------ setup
    def _setup(self, first_x: Tensor) -> None:
        cfg = self.config
        torch.manual_seed(self.seed)
        self._rng = torch.Generator().manual_seed(self.seed)
        self.classifier.to(self.device)
        if cfg.channels_last:
            to_channels_last(self.classifier)
        self._check_model_outputs(first_x)
        if self.generator is None:
            self.generator = build_generator(
                generator_for_shape(self.image_shape), num_classes=self.num_outputs, nz=cfg.latent_dim,
                out_channels=self.image_shape[0], conditioning=cfg.conditioning, ngf=cfg.generator_width)
        self.generator.to(self.device)
        if cfg.channels_last:
            to_channels_last(self.generator)
        self._clf_opt = torch.optim.Adam(self.classifier.parameters(), lr=cfg.classifier_lr)
        self._gen_opt = torch.optim.Adam(self.generator.parameters(), lr=cfg.generator_lr, betas=(0.5, 0.999))
        self.pool = GarbagePool(self.image_shape, cfg.pool_capacity, cfg.pool_policy, seed=self.seed)
        fixed = torch.Generator().manual_seed(self.seed + 1)
        labels = balanced_labels(self.num_outputs, cfg.metric_samples_per_class)
        self._fixed_cond = sample_conditioning(cfg.conditioning, labels.shape[0], self.num_outputs, labels,
                                               cfg.vector_temperature, fixed)
        self._fixed_z = torch.randn(labels.shape[0], cfg.latent_dim, generator=fixed)
        self._noise = torch.empty((0, *self.image_shape), dtype=torch.uint8)
        self._noise_slots = torch.empty(0, dtype=torch.long)
        self._class_counts = torch.zeros(self.num_classes, dtype=torch.long)
        self._class_means: Optional[Tensor] = None
        self._start_epoch = 0
        self.history = []

    # ------------------------------------------------------------------ fit
    def fit(self, train_loader: Iterable, epochs: Optional[int] = None, *, val_loader: Optional[Iterable] = None,
            checkpoint: Optional[str | Path] = None, resume: Optional[str | Path] = None) -> list[dict[str, Any]]:
        """Pre-train, then run ``epochs`` inversion + retraining epochs.

        :param train_loader: yields ``(x, y)``, x ``[B, *image_shape]`` in [-1, 1], y in [0, K)
        :param epochs: overrides the configured number of epochs
        :param val_loader: optional ID validation loader; its accuracy is logged per epoch
        :param checkpoint: file to write (atomically) after every epoch; ``{epoch}`` in the name
            keeps one file per epoch (``run-{epoch}.pt``)
        :param resume: checkpoint file to continue from; it must come from a run with the same
            settings, or one that differs only in options that had not yet acted (see
            :meth:`run_signature`)
        :return: ``self.history``, one plain dict per epoch (epoch 0 is pre-training)
        """
        if epochs is not None:
            if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs <= 0:
                raise ValueError(f"epochs must be a positive int, got {epochs!r}")
            self.config.epochs = epochs
            self.config.validate()
        self._warned_range = False
        first = next(iter(train_loader), None)
        if first is None:
            raise ValueError("train_loader is empty: it yielded no batch")
        self._check_batch(*first[:2])
        self._setup(first[0])
        if resume is not None:
            self._load(resume, train_loader)
        else:
            self._pretrain(train_loader, val_loader)
            self._save(checkpoint, train_loader)
        for epoch in range(self._start_epoch + 1, self.config.epochs + 1):
            self._epoch(epoch, train_loader, val_loader)
            self._save(checkpoint, train_loader)
        self.classifier.eval()
        self.generator.eval()
        return self.history

    def _pretrain(self, loader: Iterable, val_loader: Optional[Iterable]) -> None:
        cfg = self.config
        t0 = time.perf_counter()
        for batch in loader:
            self._class_counts += torch.bincount(batch[1].long().cpu(), minlength=self.num_classes)
        n_noise = cfg.noise_samples or int(self._class_counts.float().mean().round())
        noise = torch.randn((n_noise, *self.image_shape), generator=self._rng).clamp_(-1, 1)
        self._noise = quantize(noise)
        self._noise_slots = self._random_slots(n_noise)
        entry: dict[str, Any] = {"epoch": 0, "phase": "pretrain", "noise_samples": n_noise}
        for i in range(cfg.pretrain_epochs):
            entry.update(self._retrain(loader, i))
        entry.update(self._validate(val_loader))
        entry["time_s"] = time.perf_counter() - t0
        self.history.append(entry)
        log.info("pre-training: %s", _fmt(entry))

    def _epoch(self, epoch: int, loader: Iterable, val_loader: Optional[Iterable]) -> None:
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"epoch": epoch, "phase": "inversion"}
        cfg = self.config
        if cfg.garbage_source == "noise":
            n = cfg.garbage_per_epoch or cfg.samples_per_step
            samples = torch.randn((n, *self.image_shape), generator=self._rng).clamp_(-1, 1)
            slots = self._random_slots(n)
        else:
            samples, labels, inv = self._invert(epoch)
            if cfg.garbage_per_epoch:
                samples, labels = self._fresh_samples(cfg.garbage_per_epoch)
            slots = self._slots_of(labels)
            entry.update(inv)
        t1 = time.perf_counter()
        if cfg.garbage_source == "inversion":
            entry.update(self._fixed_metrics(epoch))
        self.pool.add(samples, slots)
        entry["pool_size"] = len(self.pool)
        entry["pool_seen"] = self.pool.seen
        t2 = time.perf_counter()
        entry.update(self._retrain(loader, self.config.pretrain_epochs + epoch - 1))
        entry.update(self._validate(val_loader))
        t3 = time.perf_counter()
        entry.update(inversion_time_s=t1 - t0, metrics_time_s=t2 - t1, retrain_time_s=t3 - t2, time_s=t3 - t0)
        self.history.append(entry)
        log.info("epoch %d: %s", epoch, _fmt(entry))

    # ------------------------------------------------------------------ inversion
    def _invert(self, epoch: int) -> tuple[Tensor, Tensor, dict[str, Any]]:
        cfg = self.config
        weights = InversionLossWeights(cfg.alpha, cfg.beta, cfg.gamma, cfg.delta)
        clf, gen = self.classifier, self.generator
        clf.eval()
        gen.train()
        frozen = [p.requires_grad for p in clf.parameters()]
        for p in clf.parameters():
            p.requires_grad_(False)
        n, chunk = cfg.samples_per_step, cfg.generator_chunk
        last_images: list[Tensor] = []
        last_labels: list[Tensor] = []
        correct = 0
        parts: dict[str, float] = {}
        total = 0.0
        try:
            for step in _progress(range(cfg.inversion_steps), self.progress, f"inversion {epoch}"):
                final = step == cfg.inversion_steps - 1
                keep = final and not cfg.garbage_per_epoch  # else fresh samples replace them
                cond = sample_conditioning(cfg.conditioning, n, self.num_outputs, None,
                                           cfg.vector_temperature, self._rng)
                z = torch.randn(n, cfg.latent_dim, generator=self._rng)
                self._gen_opt.zero_grad(set_to_none=True)
                total, parts = 0.0, {}
                for s in range(0, n, chunk):
                    c = cond[s:s + chunk].to(self.device)
                    x = gen(z[s:s + chunk].to(self.device), c.vector, c.matrix)
                    f = clf.features(x)
                    logits = clf.head(f)
                    loss, p = inversion_loss(logits, f, c.labels, c.target, weights)
                    if cfg.novelty and self._class_means is not None:
                        term = novelty_loss(f, c.labels.to(f.device), self._class_means)
                        loss = loss + cfg.novelty * term
                        p["novelty"] = float(term.detach())
                    share = x.shape[0] / n
                    (loss * share).backward()
                    total += float(loss.detach()) * share
                    for k, v in p.items():
                        parts[k] = parts.get(k, 0.0) + v * share
                    if final:
                        correct += int((logits.detach().argmax(1) == c.labels.to(logits.device)).sum())
                    if keep:
                        last_images.append(x.detach().cpu())
                        last_labels.append(c.labels.cpu())
                self._gen_opt.step()
        finally:
            for p, req in zip(clf.parameters(), frozen):
                p.requires_grad_(req)
        images = torch.cat(last_images) if last_images else torch.empty((0, *self.image_shape))
        labels = torch.cat(last_labels) if last_labels else torch.empty(0, dtype=torch.long)
        return images, labels, {"inversion_loss": total, **{f"inversion_{k}": v for k, v in parts.items()},
                                         "inversion_accuracy": correct / n}

    @torch.inference_mode()
    def generate(self, labels: Tensor, z: Optional[Tensor] = None, cond: Optional[Conditioning] = None) -> Tensor:
        """Images from the generator for conditioning ``labels``.

        The generator runs with batch statistics, as during inversion: its BatchNorm running
        averages are never used in training and lag behind it, so eval mode would show
        images unlike the ones that go into the garbage pool.  Running averages are left as
        they were.
        """
        if self.generator is None:
            raise RuntimeError("the generator does not exist yet: call fit() first")
        cfg = self.config
        labels = labels.cpu()
        if cond is None:
            cond = sample_conditioning(cfg.conditioning, labels.shape[0], self.num_outputs, labels,
                                       cfg.vector_temperature, self._rng)
        if z is None:
            z = torch.randn(labels.shape[0], cfg.latent_dim, generator=self._rng)
        was = self.generator.training
        saved = {k: v.clone() for k, v in self.generator.state_dict().items() if "running" in k or "num_batches" in k}
        self.generator.train()
        c = cond.to(self.device)
        out = self.generator(z.to(self.device), c.vector, c.matrix)
        self.generator.load_state_dict(saved, strict=False)
        self.generator.train(was)
        return out

    def _fresh_samples(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` samples of the current generator, conditioned on all outputs uniformly, and their labels."""
        labels = torch.randint(self.num_outputs, (n,), generator=self._rng)
        chunk = self.config.generator_chunk
        return torch.cat([self.generate(labels[s:s + chunk]).cpu() for s in range(0, n, chunk)]), labels

    @torch.inference_mode()
    def _fixed_metrics(self, epoch: int) -> dict[str, Any]:
        """Report 9.1: metrics on fixed noise / fixed conditioning, per class and averaged."""
        x = self.generate(self._fixed_cond.labels, self._fixed_z, self._fixed_cond)
        self.classifier.eval()
        logits = self.classifier(x)
        per_class = per_class_metrics(logits, self._fixed_cond.labels, self.num_outputs)
        if self.sample_dir is not None:
            from torchvision.utils import save_image

            self.sample_dir.mkdir(parents=True, exist_ok=True)
            save_image(x.cpu(), self.sample_dir / f"samples_epoch_{epoch:03d}.png",
                       nrow=self.config.metric_samples_per_class, normalize=True, value_range=(-1, 1))
        out: dict[str, Any] = {name: sum(v) / len(v) for name, v in per_class.items()}
        out["per_class"] = per_class
        return out

    # ------------------------------------------------------------------ retraining
    def _garbage(self) -> tuple[Tensor, Tensor]:
        """All garbage images (uint8) and their slots: the Gaussian noise, then the pool."""
        if not len(self.pool):
            return self._noise, self._noise_slots
        return torch.cat([self._noise, self.pool.raw()]), torch.cat([self._noise_slots, self.pool.slots()])

    def _retrain(self, loader: Iterable, epoch: int) -> dict[str, Any]:
        """One epoch on ID + garbage: every ID batch gets its share of shuffled garbage."""
        cfg = self.config
        lr = epoch_lr(cfg.classifier_lr, cfg.lr_schedule, epoch, cfg.pretrain_epochs + cfg.epochs)
        for group in self._clf_opt.param_groups:
            group["lr"] = lr
        garbage, slots = self._garbage()
        # negatives join from inversion epoch `jigsaw_from` on (classifier epoch `epoch` is 0-based
        # over pre-training and inversion epochs; every pre-training epoch counts as epoch 0)
        neg_share = cfg.jigsaw if max(epoch - cfg.pretrain_epochs + 1, 0) >= cfg.jigsaw_from else 0.0
        kinds = parse_kinds(cfg.negatives)
        n_batches = len(loader) if hasattr(loader, "__len__") else None
        if n_batches is None:
            raise TypeError("train_loader must have a length (a DataLoader or a list of batches)")
        order = torch.randperm(garbage.shape[0], generator=self._rng)
        per_batch = math.ceil(garbage.shape[0] / max(n_batches, 1))
        weight = None
        if cfg.weighted_ce:
            # Balanced over the K ID classes and *the garbage as one class* (report 3.2).  With
            # per-class garbage every garbage output gets that one per-sample weight, so garbage
            # keeps the loss share it has in the single-garbage model; balancing K garbage classes
            # like ID classes would give garbage half of the loss.  Jigsaw negatives count as
            # garbage (about ``jigsaw`` per ID image this epoch).
            n_garbage = garbage.shape[0] + round(neg_share * int(self._class_counts.sum()))
            w = class_balanced_weights(torch.cat([self._class_counts, torch.tensor([n_garbage])]))
            weight = torch.cat([w[:self.num_classes], w[self.num_classes:].expand(self.num_garbage)]).to(self.device)
        self.classifier.train()
        means: Optional[Tensor] = None  # per-class sums of ID features, for the novelty term
        loss_sum = id_correct = id_seen = g_correct = g_seen = spared = 0
        for i, batch in enumerate(_progress(loader, self.progress, "retrain")):
            x, y = batch[0], batch[1].long()
            self._check_batch(x, y)
            pick = order[i * per_batch:(i + 1) * per_batch]
            g = dequantize(garbage[pick]).to(self.device)
            g_slots = slots[pick]
            n_neg = round(neg_share * x.shape[0])
            if n_neg:
                # Negatives of this batch's first images (jigsaw > 1: of all of them, cycled, each copy
                # with its own tile order); per-class garbage: slot of the source class.
                src = torch.arange(n_neg) % x.shape[0]
                neg = make_negatives(x[src].to(self.device), kinds, cfg.jigsaw_grid, self._rng,
                                     cfg.warp_cells, cfg.warp_strength)
                g = torch.cat([g, neg])
                g_slots = torch.cat([g_slots, self._slots_of(y[src].cpu())])
            xb = torch.cat([x.to(self.device), g])
            if cfg.channels_last:
                xb = as_channels_last(xb)
            yb = torch.cat([y.to(self.device), (self.garbage_index + g_slots).to(self.device)])
            head_only = bool(n_neg) and cfg.jigsaw_head_only
            if cfg.novelty or head_only:
                f = self.classifier.features(xb)
                if head_only:  # the negatives are the last n_neg rows
                    f = torch.cat([f[:-n_neg], f[-n_neg:].detach()])
                logits = self.classifier.head(f)
            else:
                logits = self.classifier(xb)
            if cfg.novelty:
                if means is None:
                    means = torch.zeros(self.num_classes, f.shape[1], device=self.device)
                means.index_add_(0, yb[:x.shape[0]], f[:x.shape[0]].detach().float())
            if n_neg and cfg.negatives_spare < 1.0:
                # a negative the classifier still takes for its source class (a bag on its side is
                # still a bag) is not one: leave it out of this batch's loss
                p_src = logits[-n_neg:].detach().float().softmax(1).gather(1, y[src].to(self.device)[:, None])
                yb[-n_neg:] = yb[-n_neg:].masked_fill(p_src[:, 0] > cfg.negatives_spare, _IGNORE)
                spared += int((yb[-n_neg:] == _IGNORE).sum())
            loss = F.cross_entropy(logits, yb, weight=weight, ignore_index=_IGNORE)
            self._clf_opt.zero_grad(set_to_none=True)
            loss.backward()
            self._clf_opt.step()
            pred = logits.detach().argmax(1)
            nid = x.shape[0]
            loss_sum += float(loss.detach()) * xb.shape[0]
            id_correct += int((pred[:nid] == yb[:nid]).sum())
            id_seen += nid
            g_correct += int((pred[nid:] >= self.garbage_index).sum())  # any garbage output
            g_seen += g.shape[0]
        self.classifier.eval()
        if means is not None:
            self._class_means = F.normalize(means, dim=1)
        return {"lr": lr, "train_loss": loss_sum / max(id_seen + g_seen, 1), "train_id_acc": id_correct / max(id_seen, 1),
                "train_garbage_acc": g_correct / max(g_seen, 1), "garbage_size": int(garbage.shape[0]),
                "negatives_spared": spared,
                "class_weights": [] if weight is None else weight.cpu().tolist()}

    @torch.inference_mode()
    def _validate(self, loader: Optional[Iterable]) -> dict[str, Any]:
        if loader is None:
            return {}
        self.classifier.eval()
        correct = seen = to_garbage = 0
        for batch in loader:
            x, y = batch[0].to(self.device), batch[1].to(self.device)
            logits = self.classifier(x)
            pred_id = logits[:, : self.num_classes].argmax(1)
            correct += int((pred_id == y).sum())
            to_garbage += int((logits.argmax(1) >= self.garbage_index).sum())
            seen += y.shape[0]
        return {"val_acc": correct / max(seen, 1), "val_to_garbage": to_garbage / max(seen, 1)}

    # ------------------------------------------------------------------ checkpoints
    def run_signature(self, epoch: int) -> str:
        """What determines this run's state after ``epoch`` (0 = pre-training): the settings that
        have acted by then, the number of classes, the image shape and the seed.  Checkpoints
        carry it; ``fit(resume=...)`` accepts a checkpoint whose signature equals this one, so
        runs that differ only in later-acting options (``jigsaw_from``) can share a prefix."""
        cfg = self.config.identity(epoch)
        if self.config.lr_schedule == "constant":
            cfg.pop("epochs")  # resuming with more epochs is allowed (a cosine schedule depends on it)
        return json.dumps({"config": cfg, "num_classes": self.num_classes, "image_shape": list(self.image_shape),
                           "seed": self.seed}, sort_keys=True)

    def _save(self, path: Optional[str | Path], loader: Iterable) -> None:
        if path is None:
            return
        epoch = int(self.history[-1]["epoch"])
        if "{epoch}" in str(path):
            path = str(path).replace("{epoch}", str(epoch))
        loader_gen = _loader_generator(loader)
        state = {
            "format": CHECKPOINT_FORMAT,
            "signature": self.run_signature(epoch),
            "epoch": epoch,
            "classifier": self.classifier.state_dict(),
            "generator": self.generator.state_dict(),
            "classifier_opt": self._clf_opt.state_dict(),
            "generator_opt": self._gen_opt.state_dict(),
            "pool": self.pool.state_dict(),
            "noise": self._noise,
            "noise_slots": self._noise_slots,
            "class_counts": self._class_counts,
            "class_means": self._class_means,
            "rng": self._rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.stack(torch.cuda.get_rng_state_all()) if self.device.type == "cuda" else torch.empty(0),
            "history": json.dumps(self.history),
            "loader_rng": loader_gen.get_state() if isinstance(loader_gen, torch.Generator) else torch.empty(0),
        }
        atomic_torch_save(state, path)

    def _load(self, path: str | Path, loader: Iterable) -> None:
        state = load_checkpoint(path, CHECKPOINT_FORMAT)
        if state["signature"] != self.run_signature(int(state["epoch"])):
            raise CheckpointError(f"checkpoint {path} was written by a run with another configuration, "
                                  "seed or data shape; resume with the same settings or start a new run")
        try:
            self.classifier.load_state_dict(state["classifier"])
            self.generator.load_state_dict(state["generator"])
            self._clf_opt.load_state_dict(state["classifier_opt"])
            self._gen_opt.load_state_dict(state["generator_opt"])
            self.pool.load_state_dict(state["pool"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} does not fit this model ({exc}); delete it or start "
                                  "without resume") from exc
        self._noise = state["noise"]
        self._noise_slots = state.get("noise_slots", torch.zeros(self._noise.shape[0], dtype=torch.long))
        self._class_counts = state["class_counts"]
        self._class_means = state.get("class_means")
        self._rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng", torch.empty(0)).numel():
            torch.cuda.set_rng_state_all(list(state["cuda_rng"]))
        loader_gen = _loader_generator(loader)
        if isinstance(loader_gen, torch.Generator) and state["loader_rng"].numel():
            loader_gen.set_state(state["loader_rng"])
        self.history = json.loads(state["history"])
        self._start_epoch = int(state["epoch"])
        log.info("resumed from %s after epoch %d", path, self._start_epoch)


def _loader_generator(loader: Iterable) -> Optional[torch.Generator]:
    """The shuffling generator of a DataLoader (its own, or its sampler's), if any.

    Its state goes into checkpoints: without it a resumed run would see the batches in
    another order than an uninterrupted one.
    """
    candidates = [loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)]
    candidates += [getattr(c, "sampler", None) for c in candidates[1:] if c is not None]
    for c in candidates:
        gen = getattr(c, "generator", None)
        if isinstance(gen, torch.Generator):
            return gen
    return None


def _progress(it: Iterable, enabled: bool, desc: str) -> Iterable:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, leave=False)


def _fmt(entry: dict[str, Any]) -> str:
    keys = ("train_id_acc", "val_acc", "inversion_accuracy", "confidence", "ue", "pool_size", "time_s")
    return ", ".join(f"{k}={entry[k]:.4g}" for k in keys if k in entry)
