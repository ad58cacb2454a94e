"""Optimisation recipes chosen by name: the optimiser, the learning-rate schedule (stepped per
batch or per epoch), the loss's label smoothing and, optionally, Lookahead weight averaging.

Both training loops take a recipe by name (``InversionTrainer(recipe=...)``,
``train_plain(recipe=...)``), so every harness method can train with the same one.  Recipes
are held in :data:`RECIPES` (a :class:`~niood_plugin.registry.Registry`, timm's idiom):

* ``"adam"`` (the default): ``Adam(lr)`` with the per-epoch schedule of
  :func:`~niood_plugin.training.lr_scheduler` (``lr_schedule``), no label smoothing; default
  lr 3e-3.
* ``"airbench"``: the recipe of airbench94 (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on
  a single GPU", 2024, arXiv:2404.00498), written from the paper's description: Nesterov SGD,
  learning rate and weight decay per 1,024 examples, a larger learning rate for the shifts of
  the normalisation layers, a per-batch triangular schedule, label smoothing 0.2, Lookahead,
  and the patch-whitening bias trained for the first epochs only (:class:`AirbenchRecipe`).
* ``"airbench-no-lookahead"``, ``"airbench-no-smoothing"``, ``"airbench-fp32"``: the same
  without Lookahead, without label smoothing, resp. without bf16 autocast (for ablations).

>>> opt = build_optimisation("airbench", model, steps_per_epoch=49, epochs=10, batch_size=1024)
>>> loss = F.cross_entropy(model(x), y, label_smoothing=opt.label_smoothing)
>>> loss.backward(); opt.step()          # once per batch
>>> opt.end_epoch()                      # once per epoch
>>> register_recipe("mine", dataclasses.replace(get_recipe("airbench"), label_smoothing=0.0))

A recipe's ``lr`` is its own unit (``"adam"``: Adam's learning rate; ``"airbench"``: per
1,024 examples); ``lr=None`` takes the recipe's ``default_lr``.  ``lr_schedule`` applies to
``"adam"`` only: the airbench recipes have their own schedule.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from .devices import fast_bf16
from .errors import CheckpointError
from .models.airnet import PatchWhitening
from .registry import Registry
from .training import lr_scheduler
from .validation import POSITIVE_FLOAT, POSITIVE_INT, validate_params

__all__ = ["RECIPES", "RECIPE", "Recipe", "AdamRecipe", "AirbenchRecipe", "Optimisation", "Lookahead",
           "build_optimisation", "get_recipe", "list_recipes", "register_recipe", "resolve_lr", "triangular"]

_BUILD_CONSTRAINTS = {"steps_per_epoch": POSITIVE_INT, "epochs": POSITIVE_INT, "batch_size": POSITIVE_INT,
                      "lr": [*POSITIVE_FLOAT, None]}
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


class Lookahead:
    """Lookahead (Zhang et al., NeurIPS 2019, "Lookahead Optimizer: k steps forward, 1 step back")
    as airbench uses it: every ``every`` optimiser steps the slow weights move towards the fast
    ones, ``slow += (1 - d) (fast - slow)``, and the fast weights restart from them.  The decay
    ``d = decay * (t / T)^3`` grows from 0 (no averaging early on) to ``decay`` at the end of
    the run's ``T`` steps; after the last step the model holds the slow weights (``d = 1``).
    Parameters only: BatchNorm statistics are not averaged.  The slow weights start as the
    weights of the first step (:meth:`start`), so a model loaded or broadcast by
    ``DistributedDataParallel`` after the recipe was built starts them right."""

    def __init__(self, params: Iterable[nn.Parameter], total_steps: int, every: int = 5, decay: float = 0.95 ** 5):
        self.params = list(params)
        self.slow: Optional[list[torch.Tensor]] = None
        self.total_steps, self.every, self.decay, self.steps = total_steps, every, decay, 0

    def start(self) -> None:
        """Copy the current weights as the slow ones, once (before the first optimiser step)."""
        if self.slow is None:
            self.slow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        """After each optimiser step."""
        self.start()
        self.steps += 1
        last = self.steps >= self.total_steps
        if self.steps % self.every and not last:
            return
        d = 1.0 if last else self.decay * (self.steps / self.total_steps) ** 3
        for slow, fast in zip(self.slow, self.params):
            slow.lerp_(fast, 1.0 - d)
            fast.copy_(slow)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "slow": [s.clone() for s in self.slow or []]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        slow = list(state["slow"])
        if slow and [v.shape for v in slow] != [p.shape for p in self.params]:
            raise CheckpointError("the checkpoint's Lookahead weights do not fit this model's parameters; resume "
                                  "with the model and recipe that wrote it, or start without resume")
        self.steps = int(state["steps"])
        self.slow = [v.to(p.device, p.dtype, copy=True) for v, p in zip(slow, self.params)] if slow else None


@dataclass
class Optimisation:
    """What a recipe builds for one run: call :meth:`step` after each ``loss.backward()`` and
    :meth:`end_epoch` after each pass over the data; use ``label_smoothing`` in the loss.  The
    ``optimizer``, ``scheduler`` and ``lookahead`` (when on) states are what a checkpoint saves."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    per_step: bool
    steps_per_epoch: int
    label_smoothing: float = 0.0
    lookahead: Optional[Lookahead] = None
    amp: bool = False

    def autocast(self, device: "torch.device | str") -> contextlib.AbstractContextManager:
        """The context of a training step's forward pass and loss: bf16 autocast when the recipe's
        ``amp`` is on and ``device`` computes bf16 natively (:func:`~niood_plugin.devices.fast_bf16`:
        a CUDA GPU, or a CPU with AVX512-BF16 / AMX), else nothing (fp32).  No gradient scaler
        is needed for bf16; the weights, optimiser and normalisation statistics stay fp32."""
        if self.amp and fast_bf16(device):
            return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self) -> None:
        """The optimiser's step, then (per-step recipes) the schedule's and Lookahead's."""
        if self.lookahead is not None:
            self.lookahead.start()  # the weights of the first step
        self.optimizer.step()
        if self.per_step:
            self.scheduler.step()
        if self.lookahead is not None:
            self.lookahead.step()

    def end_epoch(self) -> None:
        """The schedule's step of a per-epoch recipe (nothing for a per-step one)."""
        if not self.per_step:
            self.scheduler.step()

    @property
    def epochs_done(self) -> int:
        """Complete passes so far (from the schedule's counter, so a restored schedule knows them)."""
        return self.scheduler.last_epoch // (self.steps_per_epoch if self.per_step else 1)

    @property
    def lr(self) -> float:
        """The current learning rate of the first parameter group (the model's weights)."""
        return self.optimizer.param_groups[0]["lr"]


@dataclass(frozen=True)
class Recipe:
    """Base class: ``recipe(model, extra_params, steps_per_epoch=, epochs=, batch_size=, lr=,
    lr_schedule=)`` builds an :class:`Optimisation` for the trainable parameters of ``model``
    and ``extra_params`` (an objective's own, e.g. VOS's); ``default_lr`` is used for ``lr=None``.

    ``amp``: the forward pass and loss of every training step run under bf16 autocast where the
    device computes bf16 natively (:meth:`Optimisation.autocast`: CUDA GPUs, CPUs with
    AVX512-BF16 or AMX), fp32 elsewhere; :class:`~niood_plugin.models.airnet.ShiftBatchNorm`
    normalises in fp32.  The same run therefore differs between such a machine and another; a
    results file records which (``environment.fast_bf16``)."""

    default_lr: float = 3e-3
    label_smoothing: float = 0.0
    amp: bool = False

    def __call__(self, model: nn.Module, extra_params: Sequence[nn.Parameter] = (), *, steps_per_epoch: int,
                 epochs: int, batch_size: int, lr: Optional[float] = None,
                 lr_schedule: str = "constant") -> Optimisation:
        validate_params(dict(steps_per_epoch=steps_per_epoch, epochs=epochs, batch_size=batch_size, lr=lr),
                        _BUILD_CONSTRAINTS, type(self).__name__)
        return self.build(model, list(extra_params), steps_per_epoch, epochs, batch_size,
                          self.default_lr if lr is None else lr, lr_schedule)

    def build(self, model: nn.Module, extra_params: list[nn.Parameter], steps_per_epoch: int, epochs: int,
              batch_size: int, lr: float, lr_schedule: str) -> Optimisation:
        raise NotImplementedError


@dataclass(frozen=True)
class AdamRecipe(Recipe):
    """``Adam(lr)`` over every parameter of the model and ``extra_params``, the per-epoch
    ``lr_scheduler(optimizer, lr_schedule, epochs)``; ``batch_size`` is not used."""

    def build(self, model, extra_params, steps_per_epoch, epochs, batch_size, lr, lr_schedule) -> Optimisation:
        opt = torch.optim.Adam([*model.parameters(), *extra_params], lr=lr)
        return Optimisation(opt, lr_scheduler(opt, lr_schedule, epochs), per_step=False,
                            steps_per_epoch=steps_per_epoch, label_smoothing=self.label_smoothing, amp=self.amp)


def triangular(total_steps: int, warmup: float = 0.23, start: float = 0.2,
               end: float = 0.07) -> Callable[[int], float]:
    """The factor on the peak learning rate at step ``t`` (``LambdaLR``'s lambda): linear from
    ``start`` at step 0 to 1 at step ``int(warmup T)``, then linear to ``end`` at step ``T``."""
    peak = int(total_steps * warmup)

    def factor(step: int) -> float:
        if step < peak:
            return start + (1.0 - start) * step / peak
        return 1.0 + (end - 1.0) * min(step - peak, total_steps - peak) / max(total_steps - peak, 1)

    return factor


@dataclass(frozen=True)
class AirbenchRecipe(Recipe):
    """airbench94's optimisation (Jordan 2024, arXiv:2404.00498), from the paper's description.

    * **Nesterov SGD**, momentum ``momentum`` (0.85).
    * **Units per 1,024 examples.**  The paper gives ``lr`` (11.5) and ``weight_decay``
      (0.0153) per 1,024 examples for a *summed* loss, the step per example being
      ``lr / (1024 G)`` with ``G = 1 + 1 / (1 - momentum)``.  Our loops take the *mean* loss
      over a batch of ``B`` examples, whose gradient is the summed one divided by ``B``, so
      SGD gets ``lr_sgd = lr B / (1024 G)`` (1.5 at B = 1,024): the same updates as the paper's
      at any batch size, so one ``lr`` serves every batch size.  ``B`` is the loader's batch
      (all processes together); :class:`~niood_plugin.InversionTrainer` adds garbage images to
      each batch without changing ``B``.
    * **Weight decay** decoupled from the learning rate: torch's SGD adds ``weight_decay p`` to
      the gradient, so it gets ``weight_decay / lr`` (resp. ``/ (lr bias_scaler)`` for the
      shifts) and each step shrinks the weights by ``schedule(t) weight_decay B / (1024 G)``,
      the paper's decay per example, whatever ``lr`` and ``bias_scaler`` are.
    * **Bias scaler**: the shifts (``bias``) of normalisation layers (BatchNorm, GroupNorm,
      LayerNorm) learn at ``bias_scaler`` (64) times the learning rate.
    * **Schedule** per batch (:func:`triangular` in a ``LambdaLR``): from ``start_factor``
      (0.2) of the peak up to the peak at ``warmup`` (23%) of the steps, then down to
      ``end_factor`` (0.07) at the last step.
    * **Whitening bias**: the bias of a :class:`~niood_plugin.models.airnet.PatchWhitening`
      layer trains at the main learning rate for the first ``whiten_bias_epochs`` (3) epochs,
      then is frozen (learning rate 0); ``None``: trained throughout.
    * **Label smoothing** ``label_smoothing`` (0.2) in the cross-entropy of both loops (with
      :func:`~niood_plugin.training.train_plain`, only for the plain cross-entropy objective:
      LogitNorm's and VOS's losses are their own).
    * **Lookahead** (``lookahead``, on): :class:`Lookahead` every ``lookahead_every`` (5) steps
      with decay ``lookahead_decay`` (0.95^5).
    * **bf16 autocast** (``amp``, on) where the device computes bf16 natively (see :class:`Recipe`).
    """

    default_lr: float = 11.5
    label_smoothing: float = 0.2
    momentum: float = 0.85
    weight_decay: float = 0.0153
    bias_scaler: float = 64.0
    warmup: float = 0.23
    start_factor: float = 0.2
    end_factor: float = 0.07
    whiten_bias_epochs: Optional[int] = 3
    lookahead: bool = True
    lookahead_every: int = 5
    lookahead_decay: float = 0.95 ** 5
    amp: bool = True

    def build(self, model, extra_params, steps_per_epoch, epochs, batch_size, lr, lr_schedule) -> Optimisation:
        shifts = [m.bias for m in model.modules() if isinstance(m, _NORMS) and isinstance(m.bias, nn.Parameter)]
        whiten = [m.bias for m in model.modules() if isinstance(m, PatchWhitening)]
        special = {id(p) for p in shifts + whiten}
        others = [p for p in [*model.parameters(), *extra_params] if id(p) not in special and p.requires_grad]
        shifts, whiten = [p for p in shifts if p.requires_grad], [p for p in whiten if p.requires_grad]
        lr_sgd = lr * batch_size / (1024 * (1 + 1 / (1 - self.momentum)))
        wd = self.weight_decay / lr  # times lr_sgd: weight_decay B / (1024 G) per step
        groups = [dict(params=others, lr=lr_sgd, weight_decay=wd),  # group 0: what a history's "lr" shows
                  dict(params=shifts, lr=lr_sgd * self.bias_scaler, weight_decay=wd / self.bias_scaler),
                  dict(params=whiten, lr=lr_sgd, weight_decay=wd)]
        opt = torch.optim.SGD(groups, lr=lr_sgd, momentum=self.momentum, nesterov=True)
        total = steps_per_epoch * epochs
        factor = triangular(total, self.warmup, self.start_factor, self.end_factor)
        frozen_from = math.inf if self.whiten_bias_epochs is None else self.whiten_bias_epochs * steps_per_epoch
        sched = LambdaLR(opt, [factor, factor, lambda t: factor(t) if t < frozen_from else 0.0])
        ahead = Lookahead(others + shifts + whiten, total, self.lookahead_every, self.lookahead_decay) \
            if self.lookahead else None
        return Optimisation(opt, sched, per_step=True, steps_per_epoch=steps_per_epoch,
                            label_smoothing=self.label_smoothing, lookahead=ahead, amp=self.amp)


RECIPES: Registry[Recipe] = Registry("recipe")
RECIPES.register("adam", AdamRecipe())
RECIPES.register("airbench", AirbenchRecipe())
RECIPES.register("airbench-no-lookahead", AirbenchRecipe(lookahead=False))
RECIPES.register("airbench-no-smoothing", AirbenchRecipe(label_smoothing=0.0))
RECIPES.register("airbench-fp32", AirbenchRecipe(amp=False))


class _RegisteredName:
    """A constraint (:mod:`niood_plugin.validation`): a name registered in ``registry`` now."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.registry

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(n) for n in self.registry.list())


#: The constraint of a ``recipe`` parameter: a name in :data:`RECIPES`.
RECIPE = [_RegisteredName(RECIPES)]


def register_recipe(name: str, recipe: Recipe) -> Recipe:
    """Add ``recipe`` under ``name`` (selectable by every loop and the harness's ``--set recipe=``)."""
    return RECIPES.register(name, recipe)


def get_recipe(name: str) -> Recipe:
    """Recipe ``name`` (:class:`~niood_plugin.registry.UnknownNameError` lists the known ones)."""
    return RECIPES.get(name)


def list_recipes() -> list[str]:
    return RECIPES.list()


def resolve_lr(name: str, lr: Optional[float]) -> float:
    """``lr``, or recipe ``name``'s ``default_lr`` when ``lr`` is None."""
    return get_recipe(name).default_lr if lr is None else lr


def build_optimisation(name: str, model: nn.Module, extra_params: Sequence[nn.Parameter] = (), *,
                       steps_per_epoch: int, epochs: int, batch_size: int, lr: Optional[float] = None,
                       lr_schedule: str = "constant") -> Optimisation:
    """Recipe ``name``'s :class:`Optimisation` for ``model`` (and ``extra_params``): ``epochs``
    passes of ``steps_per_epoch`` batches of ``batch_size`` examples."""
    return RECIPES.create(name, model, extra_params, steps_per_epoch=steps_per_epoch, epochs=epochs,
                          batch_size=batch_size, lr=lr, lr_schedule=lr_schedule)
