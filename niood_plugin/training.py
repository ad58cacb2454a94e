"""Plain training pieces shared by the trainer, the harness and the peers: one learning-rate
schedule, one cross-entropy loop with checkpoints, one accuracy, class weights, input checks."""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from .models.layout import as_channels_last
from .errors import InvalidArgumentError, InvalidTypeError

log = logging.getLogger(__name__)

__all__ = ["lr_scheduler", "train_plain", "cross_entropy_objective", "Objective", "accuracy", "class_weights", "progress", "check_loader",
           "first_batch", "xy_pair", "check_labels", "check_image_shape", "LR_SCHEDULES", "SmoothedCrossEntropy"]


LR_SCHEDULES = ("constant", "cosine")


def lr_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_epochs: int) -> LambdaLR:
    """Per-epoch schedule: ``"constant"``, or ``"cosine"`` (lr_e = lr * (1 + cos(pi e / T)) / 2,
    e = 0 .. T-1, stepped once per epoch)."""
    if schedule == "constant" or total_epochs <= 1:
        return LambdaLR(optimizer, lambda e: 1.0)
    if schedule == "cosine":
        return LambdaLR(optimizer, lambda e: 0.5 * (1.0 + math.cos(math.pi * e / total_epochs)))
    raise InvalidArgumentError(f"unknown lr schedule {schedule!r}; choose 'constant' or 'cosine'")


def class_weights(counts: Tensor) -> Tensor:
    """Balanced class weights ``N / (C * n_c)`` from class counts, through scikit-learn's
    ``compute_class_weight("balanced")``; classes with no examples get weight 0."""
    counts = torch.as_tensor(counts).long().cpu()
    present = torch.nonzero(counts > 0).flatten().numpy()
    if present.size == 0:
        raise InvalidArgumentError("class_weights: every class count is 0")
    y = np.repeat(present, counts[present].numpy())
    w = np.zeros(counts.shape[0], dtype=np.float64)
    w[present] = compute_class_weight("balanced", classes=present, y=y)
    return torch.from_numpy(w).to(torch.float32)


def progress(it: Iterable, enabled: bool, desc: str) -> Iterable:
    """``it`` with a tqdm bar when ``enabled``."""
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, leave=False)


@torch.inference_mode()
def accuracy(model: nn.Module, loader: Iterable, device: torch.device | str,
             num_classes: Optional[int] = None) -> float:
    """Top-1 accuracy over the first ``num_classes`` logits (the K ID classes; the garbage
    logit K of a K+1-way model is left out); ``None``: all logits."""
    model.eval()
    correct = seen = 0
    for x, y, *_ in loader:
        logits = model(x.to(device))
        logits = logits if num_classes is None else logits[:, :num_classes]
        correct += int((logits.argmax(1).cpu() == y).sum())
        seen += y.shape[0]
    return correct / max(seen, 1)


#: ``objective(model, x, y, epoch) -> (loss, logits)``: the training loss of one batch.
Objective = Callable[[nn.Module, Tensor, Tensor, int], tuple[Tensor, Tensor]]


def cross_entropy_objective(model: nn.Module, x: Tensor, y: Tensor, epoch: int) -> tuple[Tensor, Tensor]:
    """The plain objective: cross-entropy of ``model(x)``."""
    logits = model(x)
    return F.cross_entropy(logits, y), logits


class SmoothedCrossEntropy:
    """The plain objective with label smoothing (what :func:`train_plain` uses in place of
    :func:`cross_entropy_objective` when its recipe smooths labels)."""

    def __init__(self, label_smoothing: float):
        self.label_smoothing = float(label_smoothing)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, epoch: int) -> tuple[Tensor, Tensor]:
        logits = model(x)
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing), logits

    def get_params(self) -> dict[str, float]:
        return {"label_smoothing": self.label_smoothing}


class _ObjectiveStep(nn.Module):
    """``objective(model, x, y, epoch)`` as one module holding the model and the objective's own
    parameters: what :class:`~torch.nn.parallel.DistributedDataParallel` wraps."""

    def __init__(self, model: nn.Module, objective: Objective, extra_params: Sequence[nn.Parameter]):
        super().__init__()
        self.model = model
        self.extra = nn.ParameterList(extra_params)
        self._objective = (objective,)  # not a submodule: its parameters are in ``extra``

    def forward(self, x: Tensor, y: Tensor, epoch: int) -> tuple[Tensor, Tensor]:
        return self._objective[0](self.model, x, y, epoch)


def train_plain(model: nn.Module, loader: Iterable, epochs: int, lr: Optional[float], device: torch.device | str,
                progress_bar: bool = False, val_loader: Optional[Iterable] = None, lr_schedule: str = "constant",
                channels_last: bool = False, name: str = "standard",
                on_epoch_end: Optional[Callable[[nn.Module, dict[str, Any]], None]] = None,
                objective: Objective = cross_entropy_objective,
                extra_params: Iterable[nn.Parameter] = (),
                checkpoint: "Optional[str | os.PathLike[str]]" = None,
                resume: "Optional[str | os.PathLike[str]]" = None, recipe: str = "adam") -> list[dict[str, Any]]:
    """Training with the optimisation ``recipe`` (a name in :data:`~niood_plugin.recipes.RECIPES`;
    ``"adam"``: Adam and the per-epoch ``lr_schedule`` of :func:`lr_scheduler`): plain cross-entropy,
    or any ``objective(model, x, y, epoch) -> (loss, logits)`` (e.g. LogitNorm, VOS), whose own
    parameters (``extra_params``) are trained along; ``on_epoch_end(model, entry)`` is called
    after each epoch with its history entry (``lr``: the learning rate the epoch started with).

    ``lr`` is in the recipe's unit (``"airbench"``: per 1,024 examples); ``None``: the recipe's
    default.  A recipe's label smoothing applies to the plain cross-entropy objective only (an
    objective of its own, such as LogitNorm's or VOS's, computes its own loss).

    The loader's first batch is checked before training (a loader of ``(x, y)`` tensor pairs,
    a non-empty first batch of finite float32 inputs, integer labels within the model's
    outputs), without moving its shuffling generator or torch's random state.

    ``checkpoint``: a file written atomically after every epoch (after ``on_epoch_end``;
    ``{epoch}`` in the name keeps one file per epoch), holding the model, ``extra_params``,
    the optimiser, the schedule (per batch or per epoch), the recipe's Lookahead weights when it
    has them, the history, the objective's ``state_dict()`` when it has one
    (VOS's feature queues) and the random states (torch, CUDA, the loader's generator).
    ``resume``: such a file to continue from, after its last complete epoch; with the same
    arguments the result is the model an uninterrupted run gives.  A checkpoint of other
    settings (epochs, recipe, learning rate, schedule, objective, model, input shape, batches per epoch)
    or of another number of processes is refused with a
    :class:`~niood_plugin.errors.CheckpointError`.

    Under a ``torch.distributed`` process group (``torchrun``) it trains data-parallel: the
    loader must shard the data (its ``sampler.set_epoch`` is called every epoch), the model and
    ``extra_params`` train inside one ``DistributedDataParallel`` module (so objectives that
    call ``features``/``head`` are synchronised too), BatchNorm running statistics are averaged
    after each epoch, history figures are summed over the ranks, and rank 0 alone validates,
    calls ``on_epoch_end`` and writes the checkpoint (with every rank's own random states and
    objective state)."""
    from . import checkpoint as checkpoints, distributed
    from .recipes import RECIPE, build_optimisation, resolve_lr
    from .validation import check_param

    check_param("recipe", recipe, RECIPE, "train_plain")
    lr = resolve_lr(recipe, lr)
    device = torch.device(device)
    x0 = _check_plain_loader(loader, model, device, channels_last)
    distributed.check_sharded(loader, "train_plain")
    if checkpoint is not None:
        checkpoints.check_writable(checkpoint)
    extra_params = list(extra_params)
    optim = build_optimisation(recipe, model, extra_params, steps_per_epoch=len(loader), epochs=epochs,
                               batch_size=x0.shape[0] * distributed.world_size(), lr=lr, lr_schedule=lr_schedule)
    if optim.label_smoothing and objective is cross_entropy_objective:
        objective = SmoothedCrossEntropy(optim.label_smoothing)
    step = distributed.wrap(_ObjectiveStep(model, objective, extra_params), device,
                            find_unused_parameters=bool(extra_params))  # VOS's start unused
    run = checkpoints.PlainRun(model, objective, extra_params, optim.optimizer, optim.scheduler, loader, device,
                               optim.lookahead)
    signature = run.signature(x0.shape[1:], epochs=epochs, lr=lr, lr_schedule=lr_schedule, recipe=recipe,
                              channels_last=channels_last) if checkpoint is not None or resume is not None else ""
    history = run.resume(resume, signature) if resume is not None else []
    for epoch in range(len(history), epochs):
        t0, lr_now = time.perf_counter(), optim.lr
        model.train()
        seen = 0  # the figures stay on the device until the epoch ends: no host round-trip per batch
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        if hasattr(getattr(loader, "sampler", None), "set_epoch"):
            loader.sampler.set_epoch(epoch)
        for x, y in progress(loader, progress_bar, f"{name} {epoch}"):
            x, y = x.to(device), y.to(device)
            if channels_last:
                x = as_channels_last(x)
            with optim.autocast(device):  # bf16 where native (recipe's amp; Optimisation.autocast), else fp32
                loss, logits = step(x, y, epoch)
            optim.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()  # and, per-step recipes, the schedule and Lookahead
            loss_sum += loss.detach().double() * x.shape[0]
            correct += (logits.detach().argmax(1) == y).sum()
            seen += x.shape[0]
        distributed.average_buffers(model)
        loss_sum, correct, seen = distributed.all_reduce_sum([float(loss_sum), int(correct), seen])
        entry = {"epoch": epoch, "lr": lr_now, "train_loss": loss_sum / max(seen, 1),
                 "train_id_acc": correct / max(seen, 1)}
        optim.end_epoch()
        if val_loader is not None:
            entry["val_acc"] = distributed.broadcast_object(
                accuracy(model, val_loader, device) if distributed.is_main() else None)
        entry["time_s"] = time.perf_counter() - t0
        history.append(entry)
        if on_epoch_end is not None and distributed.is_main():
            on_epoch_end(model, entry)
        log.info("%s epoch %d: %s", name, epoch, entry)
        if checkpoint is not None:  # after on_epoch_end: its entries and random draws are in it
            run.save(checkpoint, epoch, signature, history)
    model.eval()
    return history


def _check_plain_loader(loader: Iterable, model: nn.Module, device: torch.device, channels_last: bool) -> Tensor:
    """:func:`train_plain`'s checks of its loader's first batch (see there); returns its inputs.
    The loader's generator and torch's random state are put back afterwards, so the check
    changes neither the batches nor the model of the training."""
    from .checkpoint import loader_generator

    gen = loader_generator(loader)
    saved = torch.get_rng_state(), None if gen is None else gen.get_state()
    try:
        x, y = first_batch(loader, "train_plain()")
        if not torch.isfinite(x).all():
            raise InvalidArgumentError("the inputs of train_loader's first batch contain NaN or Inf: check the data "
                                       "pipeline (e.g. a division by a zero std)")
        was_training = model.training
        model.eval()
        with torch.no_grad():  # the number of outputs, for the label range
            xs = x[:2].to(device)
            out = model(as_channels_last(xs) if channels_last else xs)
        model.train(was_training)
    finally:
        torch.set_rng_state(saved[0])
        if gen is not None:
            gen.set_state(saved[1])
    num_outputs = out.shape[1] if isinstance(out, Tensor) and out.dim() == 2 else None
    check_labels(y, num_outputs if num_outputs is not None else sys.maxsize, x.shape[0],
                 what=f"one per output of the model, which has {num_outputs}")
    return x


def check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """``image_shape`` as a ``(C, H, W)`` tuple of positive Python ints; a tuple, list,
    ``torch.Size`` or 1-D numpy array of integers is accepted, anything else raises
    :class:`~niood_plugin.errors.InvalidArgumentError`."""
    if isinstance(image_shape, np.ndarray):
        shape = tuple(image_shape.tolist()) if image_shape.ndim == 1 else ()
    else:
        shape = tuple(image_shape) if isinstance(image_shape, (tuple, list, torch.Size)) else ()
    if len(shape) != 3 or any(isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)) or s <= 0
                              for s in shape):
        raise InvalidArgumentError(f"image_shape must be (C, H, W), three positive ints; got {image_shape!r}")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def check_loader(loader: Iterable, image_shape: tuple[int, int, int], num_classes: int) -> Tensor:
    """The first batch's images, after checking the loader and that batch once (see
    :func:`first_batch`; then the image shape, finite values, the range and the labels)."""
    x, y = first_batch(loader, "fit()")
    if tuple(x.shape[1:]) != image_shape:
        raise InvalidArgumentError(f"images have shape {tuple(x.shape[1:])} but image_shape is {image_shape}: resize the "
                         "data or pass the right image_shape")
    if not torch.isfinite(x).all():
        raise InvalidArgumentError("images contain NaN or Inf: check the data pipeline (e.g. a division by a zero std)")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 - 1e-3 or hi > 1.0 + 1e-3:
        log.warning("images range over [%.3g, %.3g], not [-1, 1]: the generator's Tanh outputs [-1, 1], so "
                    "normalise the data (x = 2 * x01 - 1) for garbage and ID images to be comparable", lo, hi)
    check_labels(y, num_classes, x.shape[0])
    return x


def xy_pair(batch: Any, owner: str = "") -> tuple[Tensor, Tensor]:
    """``(x, y)`` of one batch, refused unless it is a pair of tensors (``owner``: who was given
    the loader, for the message)."""
    if not (isinstance(batch, (tuple, list)) and len(batch) >= 2 and all(isinstance(t, Tensor) for t in batch[:2])):
        what = (f"a dict with keys {sorted(map(str, batch))}" if isinstance(batch, dict)
                else f"a {type(batch).__name__}")
        raise InvalidTypeError(f"{owner + ': ' if owner else ''}train_loader must yield (x, y) tensor pairs, got "
                               f"{what}: wrap a dict-yielding loader so it yields (batch['image'], batch['label'])")
    return batch[0], batch[1]


def first_batch(loader: Iterable, owner: str = "fit()") -> tuple[Tensor, Tensor]:
    """The first ``(x, y)`` of ``loader`` (``owner``: the function it was given to, for the
    messages), after checking that ``loader`` is a sized iterable of ``(x, y)`` tensor pairs
    whose first batch holds at least one float32 input: one-line errors instead of torch's
    from deep inside the training step."""
    if hasattr(loader, "x") and hasattr(loader, "loader"):
        raise InvalidTypeError(f"{owner} needs a loader, got a dataset: pass data.loader(batch_size=..., shuffle=True)")
    if not hasattr(loader, "__len__") or not hasattr(loader, "__iter__"):
        raise InvalidTypeError(f"train_loader must be a sized iterable of (x, y) batches such as a DataLoader, got "
                        f"{type(loader).__name__}")
    batch = next(iter(loader), None)
    if batch is None:
        raise InvalidArgumentError("train_loader is empty: it yielded no batch")
    x, y = xy_pair(batch)
    if x.dim() == 0 or x.shape[0] == 0:
        raise InvalidArgumentError(f"the first batch of train_loader is empty (inputs of shape {tuple(x.shape)}): every "
                                   "batch needs at least one image; check the data set's size, the sampler and drop_last")
    if x.dtype != torch.float32:
        raise InvalidTypeError(f"images must be float32 in [-1, 1], got {x.dtype}: convert them with x.float()")
    return x, y


def check_labels(y: Tensor, num_classes: int, n: Optional[int] = None, what: Optional[str] = None) -> None:
    """``y``: integer class indices, one per image (``n``), in ``[0, num_classes)``; ``what``
    names where ``num_classes`` comes from in the message (default: the trainer's K ID classes)."""
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise InvalidTypeError(f"labels must be integer class indices, got {y.dtype}: convert them with y.long() "
                        "(fractional labels are not supported)")
    if y.dim() != 1 or (n is not None and y.shape[0] != n):
        raise InvalidArgumentError(f"labels must be a 1-D tensor with one label per image, got shape {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        where = what or f"the trainer adds the garbage class {num_classes}"
        raise InvalidArgumentError(f"labels must lie in [0, {num_classes}) ({where}), "
                         f"got range [{int(y.min())}, {int(y.max())}]")
