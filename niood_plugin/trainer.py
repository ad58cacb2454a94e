"""InversionTrainer: the report's garbage-class training loop (sections 3, 8, 9).

:meth:`InversionTrainer.fit` runs, in order, with a
:class:`~niood_plugin.garbage.GarbageSampler` holding the garbage class's images:

0. **pre-train**: ID data plus Gaussian-noise images labelled as the garbage class (index K),
   class-balanced weighted cross-entropy;
1. for each epoch:
   a. **invert and grow the pool**: freeze the classifier, train the conditional generator
      against it (:class:`~niood_plugin.inversion.Inverter`); new generated images join the
      garbage pool (``GarbageSampler.refresh``);
   b. **measure**: confidence, margin, UE and entropy of the classifier on a fixed batch of
      generated images per class (fixed noise and conditioning for the whole run);
   c. **retrain**: one epoch on ID + garbage (+ :class:`~niood_plugin.negatives.Negatives`,
      if given) with class-balanced weighted CE.

Each epoch ends with an optional atomic checkpoint; ``fit(..., resume=path)`` continues after
the last complete epoch and reproduces an uninterrupted run with the same seed.

Under ``torchrun`` (an initialised ``torch.distributed`` process group) the same ``fit`` runs
data-parallel: the train loader must shard the data (``DistributedSampler``), the classifier
is retrained in ``DistributedDataParallel``, each rank inverts its share of every step (the
generator's gradients all-reduced), generated garbage is gathered so that every rank holds the
same pool, history figures are summed over the ranks, and rank 0 alone validates, runs the
callbacks and writes checkpoints (with every rank's RNG states).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checkpoint, distributed
from .callbacks import Callback
from .conditioning import balanced_labels, sample_conditioning
from .config import InversionConfig
from .devices import resolve_device
from .garbage import GarbageSampler
from .inversion import Inverter
from .models import as_channels_last, check_feature_classifier, generator_for_shape, to_channels_last
from .negatives import Negatives
from .pool import GarbagePool
from .scores import per_class_metrics
from .training import check_image_shape, check_labels, check_loader, class_weights, lr_scheduler, progress
from .validation import Boolean, InstanceOf, Interval, validate_params
from .errors import CallOrderError, InvalidArgumentError

log = logging.getLogger(__name__)

__all__ = ["InversionTrainer", "InversionConfig"]


class InversionTrainer:
    """Train a K+1-way classifier whose extra garbage class learns from network inversion.

    >>> clf = build_classifier("report28", num_outputs=11, in_channels=1)
    >>> trainer = InversionTrainer(clf, num_classes=10, image_shape=(1, 28, 28), epochs=4,
    ...                            negatives=Negatives("warp", per_image=1, last_epochs=2))
    >>> history = trainer.fit(train_loader)           # x in [-1, 1], y in [0, 10)
    >>> detector = UEDetector(trainer.classifier.eval(), garbage_index=10)

    :param classifier: a module with ``features(x)`` and ``head(f)`` (see
        :mod:`niood_plugin.models.protocol`) and exactly ``num_classes + 1`` outputs
    :param num_classes: K; the garbage class is output K
    :param image_shape: ``(C, H, W)`` of the training images
    :param preset: a named set of hyperparameters (:mod:`~niood_plugin.presets`); keyword
        hyperparameters override it, the defaults are our recommendation
    :param dataset: dataset name for ``preset="report"``
    :param negatives: an extra garbage source of transformed ID images; the default is our
        recommendation, ``Negatives("warp", per_image=1, last_epochs=2)``; ``None``: none (the
        report's method as such)
    :param generator: a conditional generator, or ``None`` for the report's for ``image_shape``
    :param callbacks: :class:`~niood_plugin.callbacks.Callback` objects (sample grids, ...)
    :param device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    :param seed: seeds the noise, the conditioning, the pool and torch's global RNG
    :param progress: show progress bars
    :param channels_last: run convolutions in channels-last layout (faster on CPU and GPU)
    :param generator_chunk: generated images per forward/backward (bounds memory)
    :param measure_per_class: fixed-noise images per output in the measure phase
    :param hyperparameters: any field of :class:`~niood_plugin.config.InversionConfig`
    """

    _parameter_constraints = {
        "classifier": [InstanceOf(nn.Module)], "num_classes": [Interval(int, 2, None)],
        "negatives": [InstanceOf(Negatives), None], "generator": [InstanceOf(nn.Module), None],
        "seed": [Interval(int, 0, 2**63 - 1)], "progress": [Boolean()], "channels_last": [Boolean()],
        "generator_chunk": [Interval(int, 1, None)], "measure_per_class": [Interval(int, 1, None)],
    }

    def __init__(self, classifier: nn.Module, num_classes: int, image_shape: Sequence[int], *,
                 preset: Optional[str] = None, dataset: Optional[str] = None,
                 negatives: Optional[Negatives] = Negatives(),
                 generator: Optional[nn.Module] = None, callbacks: Sequence[Callback] = (),
                 device: "str | torch.device" = "cpu", seed: int = 0, progress: bool = True,
                 channels_last: bool = True, generator_chunk: int = 2048, measure_per_class: int = 10,
                 **hyperparameters: Any):
        validate_params(dict(classifier=classifier, num_classes=num_classes, negatives=negatives, generator=generator,
                             seed=seed, progress=progress, channels_last=channels_last,
                             generator_chunk=generator_chunk, measure_per_class=measure_per_class),
                        self._parameter_constraints, "InversionTrainer")
        self.image_shape = check_image_shape(image_shape)
        check_feature_classifier(classifier)
        self.classifier, self.num_classes, self.negatives, self.generator = classifier, num_classes, negatives, generator
        self.callbacks = list(callbacks)
        self.device = resolve_device(device)
        self.seed, self.progress, self.channels_last = seed, progress, channels_last
        self.generator_chunk, self.measure_per_class = generator_chunk, measure_per_class
        self.config = InversionConfig.from_preset(preset, dataset, **hyperparameters)
        if generator is None:
            generator_for_shape(self.image_shape)  # raises now for sizes without a report generator
        if negatives is not None:
            negatives.check(self.image_shape)
        self.history: list[dict[str, Any]] = []
        self.last_samples: Optional[Tensor] = None
        self.garbage: Optional[GarbageSampler] = None  # the garbage class's images (set by fit)

    @property
    def garbage_index(self) -> int:
        """Index of the garbage output: K."""
        return self.num_classes

    @property
    def inverter(self) -> Optional[Inverter]:
        """The :class:`~niood_plugin.inversion.Inverter` of the garbage sampler (after ``fit``)."""
        return None if self.garbage is None else self.garbage.inverter

    @property
    def pool(self) -> Optional[GarbagePool]:
        """The pool of generated garbage (after ``fit``)."""
        return None if self.garbage is None else self.garbage.pool

    # ------------------------------------------------------------------ the method, top to bottom
    def fit(self, train_loader: Iterable, epochs: Optional[int] = None, *, val_loader: Optional[Iterable] = None,
            checkpoint: "Optional[str | Path]" = None, resume: "Optional[str | Path]" = None) -> list[dict[str, Any]]:
        """Pre-train, then run ``epochs`` epochs of invert, measure, grow the pool, retrain.

        :param train_loader: a sized iterable (a DataLoader) of ``(x, y)``: x ``[B, *image_shape]``
            float in [-1, 1], y integer class indices in [0, K)
        :param epochs: overrides the configured number of epochs
        :param val_loader: optional ID validation loader; its accuracy is logged per epoch
        :param checkpoint: file written atomically after every epoch; ``{epoch}`` in the name
            keeps one file per epoch (``run-{epoch}.pt``)
        :param resume: checkpoint to continue from (same settings, seed and data shape)
        :return: ``self.history``, one plain dict per epoch (epoch 0 is pre-training)
        """
        self._start(train_loader, epochs, checkpoint)
        if resume is not None:
            self._resume(resume, train_loader)
        else:
            self._end_epoch(self._pretrain(train_loader, val_loader), checkpoint, train_loader)
        for epoch in range(len(self.history), self.config.epochs + 1):
            t0 = time.perf_counter()
            entry = self.garbage.refresh(self.classifier, self._class_means, desc=f"inversion {epoch}")  # invert, grow the pool
            t1 = time.perf_counter()
            entry.update(self._measure())
            t2 = time.perf_counter()
            entry.update(self._retrain(train_loader, epoch), **self._validate(val_loader))
            t3 = time.perf_counter()
            entry.update(epoch=epoch, phase="inversion", pool_size=len(self.pool), pool_seen=self.pool.seen,
                         inversion_time_s=t1 - t0, metrics_time_s=t2 - t1, retrain_time_s=t3 - t2, time_s=t3 - t0)
            self._end_epoch(entry, checkpoint, train_loader)
        for cb in self._callbacks():
            cb.on_fit_end(self)
        self.classifier.eval()
        self.generator.eval()
        return self.history

    # ------------------------------------------------------------------ phases
    def _pretrain(self, loader: Iterable, val_loader: Optional[Iterable]) -> dict[str, Any]:
        t0 = time.perf_counter()
        self._class_counts = self._count_labels(loader)
        n_noise = self.garbage.start(self._class_counts)
        entry: dict[str, Any] = {"epoch": 0, "phase": "pretrain", "noise_samples": n_noise}
        for _ in range(self.config.pretrain_epochs):
            entry.update(self._retrain(loader, 0))
        entry.update(self._validate(val_loader), time_s=time.perf_counter() - t0)
        return entry

    @torch.inference_mode()
    def _measure(self) -> dict[str, Any]:
        """Report 9.1: metrics of the classifier on fixed-noise samples, per class and averaged."""
        x = self.inverter.generate(self._fixed_cond.labels, self._fixed_z, self._fixed_cond)
        self.classifier.eval()
        per_class = per_class_metrics(self.classifier(x), self._fixed_cond.labels, self.num_classes + 1)
        self.last_samples = x.detach()
        return {**{name: sum(v) / len(v) for name, v in per_class.items()}, "per_class": per_class}

    def _retrain(self, loader: Iterable, epoch: int) -> dict[str, Any]:
        """One epoch on ID + garbage: every ID batch gets its share of the shuffled garbage (and
        its negatives when they are active this epoch)."""
        cfg, k, dev = self.config, self.num_classes, self.device
        lr = self._clf_opt.param_groups[0]["lr"]
        n_garbage = len(self.garbage)
        negs = self.garbage.negatives_active(epoch)
        if hasattr(getattr(loader, "sampler", None), "set_epoch"):  # DistributedSampler: a new order per pass
            loader.sampler.set_epoch(self._scheduler.last_epoch)
        weight = None
        if cfg.weighted_ce:  # balanced over the K ID classes and the garbage as one class (report 3.2)
            n_all = n_garbage + (self.negatives.count(int(self._class_counts.sum())) if negs else 0)
            weight = class_weights(torch.cat([self._class_counts, torch.tensor([n_all])])).to(dev)
        self.classifier.train()
        means: Optional[Tensor] = None  # per-class sums of ID features, for the novelty term
        loss_sum = id_correct = id_seen = g_correct = g_seen = 0
        batches = zip(progress(loader, self.progress, "retrain"), self.garbage.epoch(len(loader)))
        for (x, y, *_), g in batches:  # each ID batch with its share of the shuffled garbage
            extra = self.garbage.make_negatives(x.to(dev), epoch)  # transformed ID images, when on
            if extra is not None:
                g = torch.cat([g, extra])
            xb = torch.cat([x.to(dev), g])
            xb = as_channels_last(xb) if self.channels_last else xb
            yb = torch.cat([y.long().to(dev), torch.full((g.shape[0],), k, dtype=torch.long, device=dev)])
            # self._train_model: the classifier (features and logits for the novelty term), in
            # DistributedDataParallel under a process group
            if cfg.novelty:
                f, logits = self._train_model(xb)
                means = torch.zeros(k, f.shape[1], device=dev) if means is None else means
                means.index_add_(0, yb[:x.shape[0]], f[:x.shape[0]].detach().float())
            else:
                logits = self._train_model(xb)
            loss = F.cross_entropy(logits, yb, weight=weight)
            self._clf_opt.zero_grad(set_to_none=True)
            loss.backward()
            self._clf_opt.step()
            pred, nid = logits.detach().argmax(1), x.shape[0]
            loss_sum += float(loss.detach()) * xb.shape[0]
            id_correct += int((pred[:nid] == yb[:nid]).sum())
            id_seen, g_seen = id_seen + nid, g_seen + g.shape[0]
            g_correct += int((pred[nid:] == k).sum())
        self._scheduler.step()
        self.classifier.eval()
        distributed.average_buffers(self.classifier)  # per-rank BatchNorm statistics -> one model
        loss_sum, id_correct, id_seen, g_correct, g_seen = distributed.all_reduce_sum(
            [loss_sum, id_correct, id_seen, g_correct, g_seen])
        if means is not None:
            self._class_means = F.normalize(distributed.all_reduce_sum_tensor(means), dim=1)
        return {"lr": lr, "train_loss": loss_sum / max(id_seen + g_seen, 1), "train_id_acc": id_correct / max(id_seen, 1),
                "train_garbage_acc": g_correct / max(g_seen, 1), "garbage_size": n_garbage,
                "negatives": bool(negs), "class_weights": [] if weight is None else weight.cpu().tolist()}

    def _validate(self, loader: Optional[Iterable]) -> dict[str, Any]:
        """ID accuracy on ``loader`` (rank 0 over all of it; the others get its figures)."""
        if loader is None:
            return {}
        return distributed.broadcast_object(self._accuracy(loader) if distributed.is_main() else None)

    @torch.inference_mode()
    def _accuracy(self, loader: Iterable) -> dict[str, Any]:
        self.classifier.eval()
        correct = seen = to_garbage = 0
        for x, y, *_ in loader:
            logits = self.classifier(x.to(self.device))
            correct += int((logits[:, :self.num_classes].argmax(1).cpu() == y).sum())
            to_garbage += int((logits.argmax(1) == self.num_classes).sum())
            seen += y.shape[0]
        return {"val_acc": correct / max(seen, 1), "val_to_garbage": to_garbage / max(seen, 1)}

    # ------------------------------------------------------------------ setup and checks (once per fit)
    def _start(self, loader: Iterable, epochs: Optional[int], ckpt: "Optional[str | Path]") -> None:
        if epochs is not None:
            self.config = replace(self.config, epochs=epochs).validate()
        x = check_loader(loader, self.image_shape, self.num_classes)
        distributed.check_sharded(loader, "InversionTrainer.fit")
        if not any(p.requires_grad for p in self.classifier.parameters()):
            raise InvalidArgumentError("every parameter of the classifier is frozen (requires_grad=False): nothing to train")
        if ckpt is not None:
            checkpoint.check_writable(ckpt)
        cfg = self.config
        torch.manual_seed(distributed.rank_seed(self.seed))  # dropout masks differ between ranks
        self.classifier.to(self.device)
        if self.channels_last:
            to_channels_last(self.classifier)
        self._check_outputs(x)
        self.garbage = GarbageSampler(self.num_classes, self.image_shape, config=cfg, generator=self.generator,
                                      negatives=self.negatives, device=self.device, seed=self.seed,
                                      progress=self.progress, channels_last=self.channels_last,
                                      generator_chunk=self.generator_chunk)
        self.generator = self.garbage.generator
        train_model = distributed.FeaturesAndLogits(self.classifier) if cfg.novelty else self.classifier
        self._train_model = distributed.wrap(train_model, self.device)
        self._clf_opt = torch.optim.Adam(self.classifier.parameters(), lr=cfg.classifier_lr)
        self._scheduler = lr_scheduler(self._clf_opt, cfg.lr_schedule, cfg.pretrain_epochs + cfg.epochs)
        fixed = torch.Generator().manual_seed(self.seed + 1)
        labels = balanced_labels(self.num_classes + 1, self.measure_per_class)
        self._fixed_cond = sample_conditioning(cfg.conditioning, labels.shape[0], self.num_classes + 1, labels,
                                               cfg.vector_temperature, fixed)
        self._fixed_z = torch.randn(labels.shape[0], cfg.latent_dim, generator=fixed)
        self._class_counts = torch.zeros(self.num_classes, dtype=torch.long)
        self._class_means: Optional[Tensor] = None
        self.history, self.last_samples = [], None
        for cb in self._callbacks():
            cb.on_fit_start(self)

    def _check_outputs(self, x: Tensor) -> None:
        self.classifier.eval()
        with torch.inference_mode():
            out = self.classifier(x[:2].to(self.device))
        if out.dim() != 2 or out.shape[1] != self.num_classes + 1:
            raise InvalidArgumentError(f"the classifier returns {tuple(out.shape[1:])} outputs but needs {self.num_classes + 1} "
                             f"({self.num_classes} ID classes + 1 garbage); build it with num_outputs="
                             f"{self.num_classes + 1}")

    def _count_labels(self, loader: Iterable) -> Tensor:
        """Images per ID class (one pass over the loader), checking every label once."""
        counts = torch.zeros(self.num_classes, dtype=torch.long)
        for _, y, *_ in loader:
            check_labels(y, self.num_classes)
            counts += torch.bincount(y.long().cpu(), minlength=self.num_classes)
        # over all ranks (with the at most world_size - 1 images a DistributedSampler repeats)
        return distributed.all_reduce_sum_tensor(counts)

    def _callbacks(self) -> list[Callback]:
        """The callbacks, on rank 0 only (they draw and write files)."""
        return self.callbacks if distributed.is_main() else []

    def _end_epoch(self, entry: dict[str, Any], path: "Optional[str | Path]", loader: Iterable) -> None:
        self.history.append(entry)
        log.info("epoch %d: %s", entry["epoch"], _fmt(entry))
        if path is not None:
            ranks = distributed.gather_objects(self._rank_state(loader)) if distributed.world_size() > 1 else None
            if distributed.is_main():
                state = self.state_dict() if ranks is None else {**self.state_dict(), "ranks": ranks}
                checkpoint.save(path, entry["epoch"], self.signature(), state, loader, len(ranks or [0]))
        for cb in self._callbacks():
            cb.on_epoch_end(self, entry)

    # ------------------------------------------------------------------ generation
    def generate(self, labels: Tensor, z: Optional[Tensor] = None, cond: Any = None) -> Tensor:
        """Images of the trained generator for conditioning ``labels`` (see
        :meth:`Inverter.generate <niood_plugin.inversion.Inverter.generate>`)."""
        if self.inverter is None:
            raise CallOrderError("InversionTrainer.generate() needs a trained generator: call fit() (or fit(resume=...)) "
                               "first")
        return self.inverter.generate(labels, z, cond)

    # ------------------------------------------------------------------ checkpoints
    def signature(self) -> str:
        """What a checkpoint must agree on to be resumed: format, configuration, negatives,
        number of classes, image shape and seed (hashed)."""
        return self.config.digest(format=checkpoint.FORMAT, num_classes=self.num_classes,
                                  image_shape=list(self.image_shape), seed=self.seed,
                                  negatives=None if self.negatives is None else self.negatives.to_dict())

    def _rank_state(self, loader: Iterable) -> dict[str, Tensor]:
        """This rank's own random states (the shared generator is in :meth:`state_dict`)."""
        gen = checkpoint.loader_generator(loader)
        return {"rng": self.garbage.rank_rng.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else torch.empty(0),
                "loader_rng": gen.get_state() if gen is not None else torch.empty(0)}

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: weights, optimisers, schedule, pool, RNG states, history."""
        return {
            "classifier": self.classifier.state_dict(), **self.garbage.state_dict(),  # inverter, pool, noise, rng
            "classifier_opt": self._clf_opt.state_dict(), "scheduler": self._scheduler.state_dict(),
            "class_counts": self._class_counts, "class_means": self._class_means, "torch_rng": torch.get_rng_state(),
            # one process: every GPU's state; several: each rank's own GPU, in "ranks"
            "cuda_rng": torch.stack(torch.cuda.get_rng_state_all())
            if self.device.type == "cuda" and distributed.world_size() == 1 else torch.empty(0),
            "history": json.dumps(self.history),
        }

    def _resume(self, path: "str | Path", loader: Iterable) -> None:
        epoch, state = checkpoint.load(path, self.signature(), loader, distributed.world_size())
        try:
            self.classifier.load_state_dict(state["classifier"])
            self.garbage.load_state_dict(state)
            self._clf_opt.load_state_dict(state["classifier_opt"])
            self._scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise checkpoint.CheckpointError(f"checkpoint {path} does not fit this model ({exc}); delete it or "
                                             "start without resume") from exc
        self._class_counts, self._class_means = state["class_counts"], state["class_means"]
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state["cuda_rng"].numel():
            torch.cuda.set_rng_state_all(list(state["cuda_rng"]))
        self.history = json.loads(state["history"])
        if "ranks" in state:  # this rank's own states
            own = state["ranks"][distributed.rank()]
            self.garbage.rank_rng.set_state(own["rng"])
            torch.set_rng_state(own["torch_rng"])
            if self.device.type == "cuda" and own["cuda_rng"].numel():
                torch.cuda.set_rng_state(own["cuda_rng"], self.device)
            gen = checkpoint.loader_generator(loader)
            if gen is not None and own["loader_rng"].numel():
                gen.set_state(own["loader_rng"])
        log.info("resumed from %s after epoch %d", path, epoch)


def _fmt(entry: dict[str, Any]) -> str:
    keys = ("train_id_acc", "val_acc", "inversion_accuracy", "confidence", "ue", "pool_size", "time_s")
    return ", ".join(f"{k}={entry[k]:.4g}" for k in keys if k in entry)
