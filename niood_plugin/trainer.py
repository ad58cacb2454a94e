"""InversionTrainer: a K+1-way classifier whose garbage class learns from network inversion
(report sections 3, 8, 9).

:meth:`InversionTrainer.fit` is the loop of ``examples/own_loop.py`` plus what only a trainer
adds (class-balanced weights, DDP): pre-train on ID data and noise garbage, then every epoch
invert (the :class:`~niood_plugin.garbage.GarbageSampler` trains its generator against the
frozen classifier and grows the pool) and retrain one epoch on ID + garbage.  Everything else
is a :class:`~niood_plugin.callbacks.Callback`: the figures of the generated images
(``Measure``, the default), sample grids, checkpoints (``Checkpoint``; ``fit(resume=path)``).

Under ``torchrun`` the same ``fit`` runs data-parallel: the loader shards the data
(``DistributedSampler``), the classifier trains in ``DistributedDataParallel``, the sampler
keeps one pool on every rank, history figures are summed over the ranks, and rank 0 alone
validates and runs the callbacks (a checkpoint gathers every rank's random states).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import distributed
from .callbacks import Callback, Measure, restore
from .devices import resolve_device
from .errors import InvalidArgumentError
from .garbage import GarbageSampler
from .models import as_channels_last, check_feature_classifier, check_garbage_outputs, to_channels_last
from .recipes import RECIPE, Optimisation, build_optimisation, resolve_lr
from .training import LR_SCHEDULES, accuracy, check_labels, check_loader, class_weights, progress
from .validation import FLAG, POSITIVE_FLOAT, POSITIVE_INT, NONNEGATIVE_INT, SEED, InstanceOf, Options, \
    validate_params

log = logging.getLogger(__name__)

__all__ = ["InversionTrainer"]


class InversionTrainer:
    """Train a K+1-way classifier whose extra garbage class learns from network inversion.

    >>> clf = build_classifier("report28", num_outputs=11, in_channels=1)
    >>> trainer = InversionTrainer(clf, GarbageSampler(10, (1, 28, 28)), epochs=4)
    >>> history = trainer.fit(train_loader)           # x in [-1, 1], y in [0, 10)
    >>> detector = UEDetector(trainer.classifier.eval(), garbage_index=10)

    :param classifier: a module with ``features(x)`` and ``head(f)`` (see
        :mod:`niood_plugin.models.protocol`) and ``garbage.num_classes + 1`` outputs
    :param garbage: the garbage class's images: noise, inversion samples, negatives, and all
        their parameters (:class:`~niood_plugin.GarbageSampler`)
    :param epochs: inversion + retraining epochs after pre-training
    :param pretrain_epochs: epochs on ID data + noise before the first inversion
    :param lr: the classifier's learning rate, in the recipe's unit; ``None``: the recipe's default
    :param lr_schedule: ``"cosine"`` or ``"constant"``, per epoch over all the epochs (recipe ``"adam"``)
    :param recipe: optimiser, schedule, label smoothing: ``"adam"``, ``"airbench"`` (:mod:`~niood_plugin.recipes`)
    :param weighted_ce: class-balanced cross-entropy, the garbage counted as one class (report 3.2)
    :param device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    :param seed: seeds torch's global RNG (dropout) before training
    :param callbacks: :class:`~niood_plugin.callbacks.Callback` objects; the default measures
        the generated images every epoch (:class:`~niood_plugin.callbacks.Measure`)
    :param progress: a progress bar per retraining epoch
    :param channels_last: run the classifier in channels-last layout (faster on CPU and GPU)
    """

    _parameter_constraints = {
        "classifier": [InstanceOf(nn.Module)], "garbage": [InstanceOf(GarbageSampler)],
        "epochs": POSITIVE_INT, "pretrain_epochs": NONNEGATIVE_INT, "lr": [*POSITIVE_FLOAT, None],
        "lr_schedule": [Options(*LR_SCHEDULES)], "recipe": RECIPE, "weighted_ce": FLAG, "seed": SEED,
        "progress": FLAG, "channels_last": FLAG,
    }
    #: the parameters of the method (what a checkpoint and a cache key must agree on)
    hyperparameters = ("epochs", "pretrain_epochs", "lr", "lr_schedule", "recipe", "weighted_ce", "seed")

    def __init__(self, classifier: nn.Module, garbage: GarbageSampler, *, epochs: int = 10, pretrain_epochs: int = 1,
                 lr: Optional[float] = None, lr_schedule: str = "cosine", recipe: str = "adam",
                 weighted_ce: bool = True, device: "str | torch.device" = "cpu", seed: int = 0,
                 callbacks: Sequence[Callback] = (Measure(),), progress: bool = True, channels_last: bool = True):
        params = {k: v for k, v in locals().items() if k in self._parameter_constraints}
        validate_params(params, self._parameter_constraints, "InversionTrainer")
        check_feature_classifier(classifier)
        vars(self).update(params, lr=resolve_lr(recipe, lr))
        self.callbacks = list(callbacks)
        self.device = resolve_device(device)
        self.history: list[dict[str, Any]] = []
        self.optimisation: Optional[Optimisation] = None  # set by fit: optimiser, schedule, Lookahead
        self.class_counts_: Optional[Tensor] = None  # images per ID class (fit)
        self.class_means_: Optional[Tensor] = None  # normalised ID feature means, for the novelty term
        self.train_loader: Optional[Iterable] = None

    @property
    def num_classes(self) -> int:
        """K, the ID classes (the garbage sampler's)."""
        return self.garbage.num_classes

    @property
    def garbage_index(self) -> int:
        """Index of the garbage output: K."""
        return self.garbage.num_classes

    def get_params(self) -> dict[str, Any]:
        """The method's hyperparameters, the garbage sampler's included."""
        return {**{k: getattr(self, k) for k in self.hyperparameters}, "garbage": self.garbage.get_params()}

    # ------------------------------------------------------------------ the method, top to bottom
    def fit(self, train_loader: Iterable, *, val_loader: Optional[Iterable] = None,
            resume: "Optional[str | Path]" = None) -> list[dict[str, Any]]:
        """Pre-train, then ``epochs`` epochs of invert and retrain.

        :param train_loader: a sized iterable (a DataLoader) of ``(x, y)``: x ``[B, *image_shape]``
            float in [-1, 1], y integer class indices in [0, K)
        :param val_loader: optional ID validation loader; its accuracy is logged per epoch
        :param resume: a :class:`~niood_plugin.callbacks.Checkpoint` file to continue from
            (same parameters, seed and data shape)
        :return: ``self.history``, one plain dict per epoch (epoch 0 is pre-training)
        """
        model = self._setup(train_loader)  # checks; the garbage on the device; DDP under torchrun
        callbacks = [cb for cb in self.callbacks if distributed.is_main() or cb.all_ranks]
        for cb in callbacks:
            cb.on_fit_start(self)
        if resume is not None:
            restore(self, resume)
        else:
            t0 = time.perf_counter()
            self.class_counts_ = self._count_labels(train_loader)
            entry = {"epoch": 0, "phase": "pretrain",
                     "noise_samples": self.garbage.start(self.class_counts_, self.epochs)}  # noise garbage
            for _ in range(self.pretrain_epochs):
                entry.update(self._retrain(model, train_loader, 0))
            self._end_epoch(callbacks, entry, self._validate(val_loader), time_s=time.perf_counter() - t0)
        for epoch in range(len(self.history), self.epochs + 1):
            t0 = time.perf_counter()
            entry = self.garbage.refresh(self.classifier, self.class_means_, desc=f"inversion {epoch}")  # invert
            t1 = time.perf_counter()
            for cb in callbacks:
                cb.on_refresh_end(self, entry)  # e.g. Measure: the classifier on generated images
            t2 = time.perf_counter()
            entry.update(self._retrain(model, train_loader, epoch), **self._validate(val_loader))
            t3 = time.perf_counter()
            self._end_epoch(callbacks, entry, epoch=epoch, phase="inversion", pool_size=len(self.garbage.pool),
                            pool_seen=self.garbage.pool.seen, inversion_time_s=t1 - t0, metrics_time_s=t2 - t1,
                            retrain_time_s=t3 - t2, time_s=t3 - t0)
        for cb in callbacks:
            cb.on_fit_end(self)
        self.classifier.eval()
        self.garbage.generator.eval()
        return self.history

    def _retrain(self, model: nn.Module, loader: Iterable, epoch: int) -> dict[str, Any]:
        """One epoch on ID + garbage: every ID batch with its share of the shuffled garbage (and
        its negatives when they are on this epoch): the own-loop example's epoch."""
        k, dev, garbage = self.num_classes, self.device, self.garbage
        lr, optim = self.optimisation.lr, self.optimisation
        if hasattr(getattr(loader, "sampler", None), "set_epoch"):  # DistributedSampler: a new order per pass
            loader.sampler.set_epoch(optim.epochs_done)
        weight = None
        if self.weighted_ce:  # balanced over the K ID classes and all the garbage as one class
            n_garbage = len(garbage) + garbage.negatives_count(epoch, int(self.class_counts_.sum()))
            weight = class_weights(torch.cat([self.class_counts_, torch.tensor([n_garbage])])).to(dev)
        means: Optional[Tensor] = None  # per-class sums of ID features, for the novelty term
        sums = torch.zeros(3, dtype=torch.float64, device=dev)  # loss, ID correct, garbage correct (on the device)
        id_seen = g_seen = 0
        self.classifier.train()
        for (x, y, *_), g in zip(progress(loader, self.progress, "retrain"), garbage.epoch(len(loader))):
            x = x.to(dev)
            extra = garbage.make_negatives(x, epoch)  # transformed ID images, when on
            g = g if extra is None else torch.cat([g, extra])
            xb = torch.cat([x, g])
            xb = as_channels_last(xb) if self.channels_last else xb
            yb = torch.cat([y.long().to(dev), torch.full((g.shape[0],), k, dtype=torch.long, device=dev)])
            with optim.autocast(dev):  # bf16 on CUDA (the recipe's amp); nothing on the CPU
                if garbage.novelty:  # the model returns features and logits
                    f, logits = model(xb)
                    means = torch.zeros(k, f.shape[1], device=dev) if means is None else means
                    means.index_add_(0, yb[:x.shape[0]], f[:x.shape[0]].detach().float())
                else:
                    logits = model(xb)
                loss = F.cross_entropy(logits, yb, weight=weight, label_smoothing=optim.label_smoothing)
            optim.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()  # and, per-step recipes, the schedule and Lookahead
            pred, nid = logits.detach().argmax(1), x.shape[0]
            sums += torch.stack([loss.detach().double() * xb.shape[0], (pred[:nid] == yb[:nid]).sum().double(),
                                 (pred[nid:] == k).sum().double()])
            id_seen, g_seen = id_seen + nid, g_seen + g.shape[0]
        optim.end_epoch()
        self.classifier.eval()
        distributed.average_buffers(self.classifier)  # per-rank BatchNorm statistics -> one model
        loss_sum, id_correct, g_correct, id_seen, g_seen = distributed.all_reduce_sum(sums.tolist() + [id_seen, g_seen])
        if means is not None:
            self.class_means_ = F.normalize(distributed.all_reduce_sum_tensor(means), dim=1)
        return {"lr": lr, "train_loss": loss_sum / max(id_seen + g_seen, 1), "train_id_acc": id_correct / max(id_seen, 1),
                "train_garbage_acc": g_correct / max(g_seen, 1), "garbage_size": len(garbage),
                "negatives": garbage.negatives_active(epoch),
                "class_weights": [] if weight is None else weight.cpu().tolist()}

    def _validate(self, loader: Optional[Iterable]) -> dict[str, Any]:
        """ID accuracy on ``loader`` over the K ID logits (rank 0; the others get its figure)."""
        if loader is None:
            return {}
        acc = accuracy(self.classifier, loader, self.device, self.num_classes) if distributed.is_main() else None
        return {"val_acc": distributed.broadcast_object(acc)}

    # ------------------------------------------------------------------ setup and checks (once per fit)
    def _setup(self, loader: Iterable) -> nn.Module:
        """Check the data and the classifier, seed, place everything, build the optimiser;
        returns the module to train (DDP-wrapped under a process group)."""
        x = check_loader(loader, self.garbage.image_shape, self.num_classes)
        distributed.check_sharded(loader, "InversionTrainer.fit")
        if not any(p.requires_grad for p in self.classifier.parameters()):
            raise InvalidArgumentError("every parameter of the classifier is frozen (requires_grad=False): "
                                       "nothing to train")
        torch.manual_seed(distributed.rank_seed(self.seed))  # dropout masks differ between ranks
        self.classifier.to(self.device)
        if self.channels_last:
            to_channels_last(self.classifier)
        check_garbage_outputs(self.classifier, x[:2].to(self.device), self.num_classes)
        self.garbage.to(self.device)  # builds the report generator now, from the seeded global RNG
        self.optimisation = build_optimisation(  # the ID batch sets the recipe's batch size; garbage is added to it
            self.recipe, self.classifier, steps_per_epoch=len(loader), epochs=self.pretrain_epochs + self.epochs,
            batch_size=x.shape[0] * distributed.world_size(), lr=self.lr, lr_schedule=self.lr_schedule)
        self.class_counts_ = self.class_means_ = None
        self.history, self.train_loader = [], loader
        return distributed.wrap(distributed.FeaturesAndLogits(self.classifier) if self.garbage.novelty
                                else self.classifier, self.device)

    def _count_labels(self, loader: Iterable) -> Tensor:
        """Images per ID class (one pass over the loader), checking every label once."""
        counts = torch.zeros(self.num_classes, dtype=torch.long)
        for _, y, *_ in loader:
            check_labels(y, self.num_classes)
            counts += torch.bincount(y.long().cpu(), minlength=self.num_classes)
        # over all ranks (with the at most world_size - 1 images a DistributedSampler repeats)
        return distributed.all_reduce_sum_tensor(counts)

    def _end_epoch(self, callbacks: Sequence[Callback], entry: dict[str, Any], *parts: dict[str, Any],
                   **more: Any) -> None:
        for part in parts:
            entry.update(part)
        entry.update(more)
        self.history.append(entry)
        log.info("epoch %d: %s", entry["epoch"], _fmt(entry))
        for cb in callbacks:
            cb.on_epoch_end(self, entry)


def _fmt(entry: dict[str, Any]) -> str:
    keys = ("train_id_acc", "val_acc", "inversion_accuracy", "confidence", "ue", "pool_size", "time_s")
    return ", ".join(f"{k}={entry[k]:.4g}" for k in keys if k in entry)
