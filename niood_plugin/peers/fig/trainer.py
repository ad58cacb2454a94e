"""FIGTrainer: fine-tune a pretrained classifier on its own implicit generator's samples
(Algorithm 2 of FIG)."""
from __future__ import annotations

import logging
import time
from typing import Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...training import check_labels, progress, xy_pair
from ...validation import Boolean, InstanceOf, Interval, Options, check_param, validate_params
from ...devices import Device as TorchDevice
from .objectives import fig_loss, softmax_entropy
from .sampler import DECAY, IMAGE_SHAPE, _langevin
from ...errors import InvalidArgumentError

log = logging.getLogger(__name__)

__all__ = ["FIGTrainer"]

_POSITIVE = Interval(float, 0, None, closed="neither")
_NON_NEGATIVE = Interval(float, 0, None, closed="left")


def _batch_xy(batch: Any, num_classes: int) -> tuple[Tensor, Tensor]:
    """``(x, y)`` of one training batch, refused unless it is a pair of tensors with labels in [0, K)."""
    x, y = xy_pair(batch, "FIGTrainer")
    check_labels(y, num_classes, x.shape[0], what="FIGTrainer's num_classes")
    return x, y


class FIGTrainer:
    """Fine-tune a *pretrained* K-way classifier with FIG (Algorithm 2).

    For every ID batch of size ``b`` the current classifier's implicit generator is sampled
    (:func:`~niood_plugin.peers.langevin_sample`, ``max(1, int(b * gen_fraction))`` images),
    then one optimizer step on :func:`~niood_plugin.peers.fig_loss` is taken (Adam at 1e-4 by
    default, see the package docstring for the choices).  :meth:`fit` without ``epochs`` trains
    until the stop rule is met (the generated samples' mean max-softmax <= ``stop_confidence``)
    or for ``max_epochs`` epochs.  After :meth:`fit`, ``trainer.classifier`` is the fine-tuned
    model (the same object that was passed in, updated in place and left in eval mode); score
    it with max-softmax.

    >>> trainer = FIGTrainer(clf, num_classes=10, image_shape=(1, 28, 28))
    >>> history = trainer.fit(train_loader)            # stop rule, at most max_epochs epochs
    >>> trainer.stopped_epoch_                         # the epoch at which the rule was met
    >>> trainer.fit(train_loader, epochs=2)            # exactly 2 more epochs
    """

    _parameter_constraints: dict = {
        "classifier": [InstanceOf(nn.Module, "a pretrained torch.nn.Module")],
        "num_classes": [Interval(int, 2, None)],
        "image_shape": [IMAGE_SHAPE],
        "lr": [_POSITIVE],
        "momentum": [_NON_NEGATIVE],
        "weight_decay": [_NON_NEGATIVE],
        "gen_fraction": [Interval(float, 0, 1)],  # the paper's K
        "entropy_weight": [_NON_NEGATIVE],
        "entropy_temperature": [_POSITIVE],
        "optimizer": [Options("sgd", "adam")],
        "c": [_POSITIVE],
        "eps0": [_POSITIVE],
        "decay": [DECAY],
        "decay_every": [Interval(int, 1, None)],
        "noise_std": [_NON_NEGATIVE, None],
        "min_steps": [Interval(int, 0, None)],
        "max_steps": [Interval(int, 1, None)],
        "tol": [_NON_NEGATIVE],
        "window": [Interval(int, 1, None)],
        "stop_confidence": [Interval(float, 0, 1, closed="neither"), None],
        "max_epochs": [Interval(int, 1, None)],
        "stop_samples": [Interval(int, 1, None)],
        "device": [TorchDevice()],
        "seed": [Interval(int, 0, None)],
        "progress": [Boolean()],
    }

    def __init__(
        self,
        classifier: nn.Module,
        num_classes: int,
        image_shape: Sequence[int],
        *,
        lr: float = 1e-4,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        gen_fraction: float = 0.1,
        entropy_weight: float = 1.0,
        entropy_temperature: float = 10.0,
        optimizer: str = "adam",
        c: float = 5.0,
        eps0: float = 0.1,
        decay: float = 0.9,
        decay_every: int = 100,
        noise_std: Optional[float] = None,
        min_steps: int = 10,
        max_steps: int = 100,
        tol: float = 0.01,
        window: int = 5,
        stop_confidence: Optional[float] = 0.5,
        max_epochs: int = 5,
        stop_samples: int = 256,
        device: Union[str, torch.device] = "cpu",
        seed: int = 0,
        progress: bool = True,
    ):
        self.classifier = classifier
        self.num_classes = num_classes
        self.image_shape = image_shape
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.gen_fraction = gen_fraction
        self.entropy_weight = entropy_weight
        self.entropy_temperature = entropy_temperature
        self.optimizer = optimizer
        self.c = c
        self.eps0 = eps0
        self.decay = decay
        self.decay_every = decay_every
        self.noise_std = noise_std
        self.min_steps = min_steps
        self.max_steps = max_steps
        self.tol = tol
        self.window = window
        self.stop_confidence = stop_confidence
        self.max_epochs = max_epochs
        self.stop_samples = stop_samples
        self.device = device
        self.seed = seed
        self.progress = progress
        validate_params({name: getattr(self, name) for name in self._parameter_constraints},
                        self._parameter_constraints, type(self).__name__)
        if min_steps > max_steps:
            raise InvalidArgumentError(f"min_steps ({min_steps}) must be <= max_steps ({max_steps})")
        if stop_confidence is not None and stop_confidence <= 1.0 / num_classes:
            raise InvalidArgumentError(f"stop_confidence ({stop_confidence}) must be > 1/num_classes = {1.0 / num_classes:.4g}: "
                             "the mean max-softmax never falls below 1/K, so the rule could never stop")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.history_: list[dict] = []
        self.stopped_epoch_: Optional[int] = None
        self._optimizer: Optional[torch.optim.Optimizer] = None

    def _num_generated(self, batch_size: int) -> int:
        if self.gen_fraction == 0:
            return 0
        return max(1, int(batch_size * self.gen_fraction))

    def sample(self, n: int, generator: Optional[torch.Generator] = None, return_info: bool = False):
        """Draw ``n`` samples from the current classifier's implicit generator
        (:func:`~niood_plugin.peers.langevin_sample` with this trainer's sampler settings)."""
        check_param("n", n, [Interval(int, 1, None)], "FIGTrainer.sample")
        return self._sample(n, generator, return_info)

    def _sample(self, n: int, generator: Optional[torch.Generator], return_info: bool):
        # the settings were checked once, in __init__
        return _langevin(
            self.classifier, n, self.image_shape, c=self.c, eps0=self.eps0, decay=self.decay,
            decay_every=self.decay_every, noise_std=self.noise_std, min_steps=self.min_steps,
            max_steps=self.max_steps, tol=self.tol, window=self.window, generator=generator,
            device=torch.device(self.device), return_info=return_info,
        )

    @property
    def stop_threshold(self) -> Optional[float]:
        """The generated samples' mean max-softmax at or below which :meth:`fit` stops
        (``stop_confidence``; ``None`` when the rule is off)."""
        return self.stop_confidence

    def generated_confidence(self, n: Optional[int] = None) -> float:
        """Mean max-softmax of ``n`` (default ``stop_samples``) fresh samples of the current
        implicit generator, drawn with a fixed seed (``seed``), so values of successive calls
        differ only through the classifier.  This is the stop rule's measurement."""
        n = self.stop_samples if n is None else n
        check_param("n", n, [Interval(int, 1, None)], "FIGTrainer.generated_confidence")
        gen = torch.Generator(device="cpu").manual_seed(self.seed + 1_000_003)
        clf = self.classifier.to(torch.device(self.device))
        x = self._sample(n, gen, False)
        was_training = clf.training
        clf.eval()
        try:
            with torch.no_grad():
                conf = clf(x).softmax(dim=1).max(dim=1).values.mean().item()
        finally:
            clf.train(was_training)
        return conf

    def stop_reached(self, record: dict) -> bool:
        """Whether an epoch's ``record`` meets the stop rule (``gen_confidence_end <= stop_threshold``)."""
        threshold = self.stop_threshold
        return threshold is not None and record["gen_confidence_end"] <= threshold

    def fit(self, train_loader: Any, epochs: Optional[int] = None) -> list[dict]:
        """Fine-tune on ``train_loader`` (batches ``(x, y)``).

        * ``epochs=None`` (default): the stop rule.  Train epoch by epoch until the implicit
          generator stops fooling the classifier (the paper's "until the implicit generator
          barely generates the samples with high confidence predictions", sec. 3.3; Fig. 3):
          after every epoch, ``stop_samples`` fresh samples are drawn with a fixed seed
          (:meth:`generated_confidence`) and training stops once their mean max-softmax is
          ``<= stop_confidence`` (an absolute mean max-softmax, > 1/K); at the
          latest after ``max_epochs`` epochs.  With ``stop_confidence=None``: ``max_epochs`` epochs.
        * ``epochs=N``: exactly ``N`` epochs, whatever the rule says (``gen_confidence_end`` and
          ``stop_met`` are still recorded).

        Calling ``fit`` again continues training (the optimizer state is kept; ``max_epochs``
        counts the epochs of this call).

        :return: one plain dict per epoch of this call: ``epoch``, ``loss``, ``ce``, ``entropy``
            (mean softmax entropy of the generated samples, the term subtracted in the loss),
            ``gen_confidence`` (running mean over the epoch of the generated samples' mean
            max-softmax, before each update), ``gen_confidence_end`` (the stop rule's fresh
            sample after the epoch), ``stop_met`` (``gen_confidence_end <= stop_threshold``),
            ``stopped`` (training ended here because of the rule), ``id_train_acc``,
            ``sampler_steps`` (mean Langevin steps per batch), ``num_generated``, ``time_s``.
            ``stopped_epoch_`` is the epoch at which the rule stopped training (``None``: it did not).
        """
        check_param("epochs", epochs, [Interval(int, 1, None), None], type(self).__name__)
        rule = epochs is None
        n_epochs = self.max_epochs if rule else epochs
        device = torch.device(self.device)
        clf = self.classifier.to(device)
        if self._optimizer is None:
            if self.optimizer == "adam":
                self._optimizer = torch.optim.Adam(clf.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            else:
                self._optimizer = torch.optim.SGD(
                    clf.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
                )
        if rule:
            self.stopped_epoch_ = None
        gen = torch.Generator(device="cpu").manual_seed(self.seed + len(self.history_))
        history: list[dict] = []
        for _ in range(n_epochs):
            record = self._epoch(train_loader, clf, device, gen)
            t0 = time.perf_counter()
            record["gen_confidence_end"] = self.generated_confidence()
            record["time_s"] += time.perf_counter() - t0
            record["stop_met"] = self.stop_reached(record)
            record["stopped"] = bool(rule and record["stop_met"])
            log.info(
                "FIG epoch %d: loss %.4f ce %.4f entropy %.4f gen-conf %.3f (end %.3f) acc %.3f steps %.1f "
                "(%.1fs)", record["epoch"], record["loss"], record["ce"], record["entropy"],
                record["gen_confidence"], record["gen_confidence_end"], record["id_train_acc"],
                record["sampler_steps"], record["time_s"],
            )
            self.history_.append(record)
            history.append(record)
            if record["stopped"]:
                self.stopped_epoch_ = record["epoch"]
                break
        clf.eval()
        return history

    def _epoch(self, train_loader: Any, clf: nn.Module, device: torch.device, gen: torch.Generator) -> dict:
        epoch = len(self.history_) + 1
        t0 = time.perf_counter()
        sums = {"loss": 0.0, "ce": 0.0, "entropy": 0.0, "gen_confidence": 0.0, "steps": 0.0}
        n_batches = correct = seen = n_gen_total = 0
        batches = progress(train_loader, self.progress, f"FIG epoch {epoch}")
        for batch in batches:
            x, y = _batch_xy(batch, self.num_classes)
            x, y = x.to(device), y.to(device).long()
            n_gen = self._num_generated(x.shape[0])
            if n_gen:
                x_gen, info = self._sample(n_gen, gen, True)
                sums["steps"] += info["steps"]
                sums["gen_confidence"] += info["confidence"]
            else:
                x_gen = x.new_empty((0, *x.shape[1:]))
            clf.train()
            logits = clf(torch.cat([x, x_gen], dim=0))
            logits_id, logits_gen = logits[: x.shape[0]], logits[x.shape[0]:]
            loss = fig_loss(logits_id, y, logits_gen, entropy_weight=self.entropy_weight,
                            entropy_temperature=self.entropy_temperature)
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._optimizer.step()

            with torch.no_grad():
                sums["loss"] += loss.item()
                sums["ce"] += F.cross_entropy(logits_id, y).item()
                if n_gen:
                    sums["entropy"] += softmax_entropy(logits_gen / self.entropy_temperature).mean().item()
                # running accuracy on the batches' train-mode logits (not training.accuracy,
                # which re-runs the model in eval mode over a loader)
                correct += (logits_id.argmax(dim=1) == y).sum().item()
                seen += x.shape[0]
            n_gen_total += n_gen
            n_batches += 1
        if n_batches == 0:
            raise InvalidArgumentError("train_loader yielded no batches")
        gen_batches = n_batches if self.gen_fraction > 0 else 1
        return {
            "epoch": epoch,
            "loss": sums["loss"] / n_batches,
            "ce": sums["ce"] / n_batches,
            "entropy": sums["entropy"] / gen_batches,
            "gen_confidence": sums["gen_confidence"] / gen_batches,
            "id_train_acc": correct / max(seen, 1),
            "sampler_steps": sums["steps"] / gen_batches,
            "num_generated": n_gen_total,
            "time_s": time.perf_counter() - t0,
        }
