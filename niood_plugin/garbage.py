"""The garbage class's images for any training loop: the method as parts.

:class:`GarbageSampler` holds what the report adds to a classifier's training (sections 3
and 8): Gaussian-noise images at first, then samples of a conditional generator trained by
network inversion against the (frozen) classifier, kept in a bounded
:class:`~niood_plugin.pool.GarbagePool`, and warped ID images (:class:`~niood_plugin.Negatives`)
in the last epochs.  It owns every parameter of the garbage and its random streams; it never
touches the classifier's optimiser or loss, so it fits any loop: a plain PyTorch one
(``examples/own_loop.py``), Lightning, OpenOOD's trainers.  :class:`~niood_plugin.InversionTrainer`
is one user of it.

>>> garbage = GarbageSampler(num_classes=10, image_shape=(1, 28, 28)).to(device)
>>> garbage.start(class_counts, epochs=4)        # noise: as many images as an average class
>>> loss_fn = pytorch_ood.loss.BackgroundClassLoss(n_classes=10)   # label -1 -> output K
>>> for epoch in range(1 + 4):                   # 0: pre-training on ID data and noise
...     if epoch:
...         garbage.refresh(clf)                 # invert the classifier; new images join the pool
...     for (x, y), g in zip(loader, garbage.epoch(len(loader))):
...         neg = garbage.make_negatives(x, epoch)   # warped ID images in the last epochs
...         g = g if neg is None else torch.cat([g, neg])
...         logits = clf(torch.cat([x, g]))
...         loss = loss_fn(logits, torch.cat([y, torch.full((len(g),), -1)]))
...         ...                                   # backward and step, as the loop does anyway
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

from . import distributed
from .devices import resolve_device
from .errors import CallOrderError, CheckpointError, InvalidArgumentError
from .inversion import Inverter
from .losses import InversionLossWeights
from .models import CONDITIONINGS, build_generator, generator_for_shape, to_channels_last
from .negatives import Negatives
from .pool import POLICIES, GarbagePool, dequantize, quantize
from .training import check_image_shape
from .validation import (FLAG, NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, SEED, WEIGHT, InstanceOf, Interval,
                         Options, validate_params)

__all__ = ["GarbageSampler"]


class GarbageSampler:
    """Noise, then network-inversion samples (and negatives), for a classifier's garbage class
    (output K).  The defaults are our recommendation for a 2-core CPU; the report's own
    settings are the ``report-<dataset>`` presets (:mod:`~niood_plugin.presets`).

    :param num_classes: K, the ID classes; the classifier has K + 1 outputs
    :param image_shape: ``(C, H, W)`` of the training images (in [-1, 1])
    :param negatives: a second source of garbage, transformed ID images, served by
        :meth:`make_negatives`; ``None``: none (the report's method as such)
    :param generator: a conditional generator ``G(z, vector, matrix)``, or ``None`` for the
        report's for ``image_shape``, built from torch's global RNG when first needed
        (:meth:`to`, :meth:`start`), so a seeded loop repeats exactly
    :param alpha: weight of the inversion loss's KL term (report section 8)
    :param beta: weight of its cross-entropy term
    :param gamma: weight of its cosine-similarity term
    :param delta: weight of its feature-orthogonality term
    :param novelty: weight of a novelty term (not in the report): generated features away
        from the ID class means, which the caller passes to :meth:`refresh`
    :param latent_dim: size of the generator's latent ``z``
    :param generator_width: ``ngf`` of the report generators
    :param conditioning: ``"vector"``, ``"matrix"`` or ``"vector-matrix"``
    :param vector_temperature: softmax temperature of the conditioning vectors (report: 1;
        0.2 keeps the label visible to the generator)
    :param inversion_steps: generator updates per :meth:`refresh`
    :param samples_per_step: generated images per update (report: 11,000; at equal compute
        many small steps learn the conditioning where a few large ones stay at chance)
    :param generator_lr: Adam learning rate of the generator
    :param noise_samples: Gaussian garbage images; 0: as many as an average ID class
    :param garbage_per_epoch: fresh samples of the final generator into the pool per refresh;
        0: the last step's samples (the report)
    :param pool_capacity: images the pool holds at most; ``None``: unbounded (policy ``"all"``)
    :param pool_policy: ``"all"``, ``"fifo"`` or ``"reservoir"``
    :param seed: seeds the noise, the inversion draws, the garbage order and the pool
    :param progress: a progress bar per inversion
    :param channels_last: generator in channels-last layout
    :param generator_chunk: generated images per forward/backward (bounds memory)

    Under a ``torch.distributed`` process group every rank holds the same noise and pool, and
    :meth:`epoch` gives each rank its share of every batch's garbage.
    """

    _parameter_constraints = {
        "num_classes": [Interval(int, 2, None)], "negatives": [InstanceOf(Negatives), None],
        "generator": [InstanceOf(nn.Module), None], "alpha": WEIGHT, "beta": WEIGHT, "gamma": WEIGHT,
        "delta": WEIGHT, "novelty": WEIGHT, "latent_dim": POSITIVE_INT, "generator_width": POSITIVE_INT,
        "conditioning": [Options(*CONDITIONINGS)], "vector_temperature": POSITIVE_FLOAT,
        "inversion_steps": POSITIVE_INT, "samples_per_step": POSITIVE_INT, "generator_lr": POSITIVE_FLOAT,
        "noise_samples": NONNEGATIVE_INT, "garbage_per_epoch": NONNEGATIVE_INT,
        "pool_capacity": [Interval(int, 1, None), None], "pool_policy": [Options(*POLICIES)],
        "seed": SEED, "progress": FLAG, "channels_last": FLAG, "generator_chunk": POSITIVE_INT,
    }

    def __init__(self, num_classes: int, image_shape: Sequence[int], *, negatives: Optional[Negatives] = Negatives(),
                 generator: Optional[nn.Module] = None, alpha: float = 0.0, beta: float = 1.0, gamma: float = 0.0,
                 delta: float = 0.0, novelty: float = 0.0, latent_dim: int = 100, generator_width: int = 32,
                 conditioning: str = "vector", vector_temperature: float = 0.2, inversion_steps: int = 100,
                 samples_per_step: int = 220, generator_lr: float = 1e-3, noise_samples: int = 0,
                 garbage_per_epoch: int = 2_200, pool_capacity: Optional[int] = 60_000,
                 pool_policy: str = "reservoir", seed: int = 0, progress: bool = True, channels_last: bool = True,
                 generator_chunk: int = 2048):
        params = {k: v for k, v in locals().items() if k in self._parameter_constraints}
        validate_params(params, self._parameter_constraints, "GarbageSampler")
        vars(self).update(params)
        self.image_shape = check_image_shape(image_shape)
        self._check_pool()
        InversionLossWeights(alpha, beta, gamma, delta)  # at least one inversion loss weight > 0
        if generator is None:
            generator_for_shape(self.image_shape)  # raises now for sizes without a report generator
        if negatives is not None:
            negatives.check(self.image_shape)
        self.device = torch.device("cpu")
        #: the shared random stream (the same draws on every rank)
        self.rng = torch.Generator().manual_seed(seed)
        #: per-rank draws (the negatives of this rank's images): ``rng`` itself in one process
        self.rank_rng = self.rng if distributed.world_size() == 1 else \
            torch.Generator().manual_seed(distributed.rank_seed(seed))
        self.pool = GarbagePool(self.image_shape, pool_capacity, pool_policy, seed=seed)
        self.noise = torch.empty((0, *self.image_shape), dtype=torch.uint8)
        self.inverter: Optional[Inverter] = None
        self.epochs: Optional[int] = None  # the run's inversion epochs, set by start()

    def _check_pool(self) -> None:
        if self.pool_capacity is None and self.pool_policy != "all":
            raise InvalidArgumentError(f"GarbageSampler: pool_policy {self.pool_policy!r} needs a pool_capacity "
                                       "(or use pool_policy='all')")

    def get_params(self) -> dict[str, Any]:
        """The constructor's keyword arguments (scikit-learn's convention), for records and
        checkpoint signatures: ``negatives`` as a dict, the generator by class name."""
        params = {k: getattr(self, k) for k in self._parameter_constraints}
        params["negatives"] = None if self.negatives is None else self.negatives.to_dict()
        params["generator"] = None if self.generator is None else type(self.generator).__name__
        return params

    # ------------------------------------------------------------------ placement
    def to(self, device: "str | torch.device") -> "GarbageSampler":
        """Make the garbage batches (and run the generator) on ``device``; builds the report's
        generator now if it is not built yet.  Returns ``self``."""
        self.device = resolve_device(device)
        self._build()
        self.generator.to(self.device)
        self.inverter.device = self.device
        return self

    def _build(self) -> None:
        """The generator and its :class:`~niood_plugin.inversion.Inverter`, once."""
        if self.inverter is not None:
            return
        if self.generator is None:
            self.generator = build_generator(generator_for_shape(self.image_shape), num_outputs=self.num_classes + 1,
                                             nz=self.latent_dim, out_channels=self.image_shape[0],
                                             conditioning=self.conditioning, ngf=self.generator_width)
        self.generator.to(self.device)
        if self.channels_last:
            to_channels_last(self.generator)
        distributed.broadcast_module(self.generator)  # one generator: rank 0's initial weights
        self.inverter = Inverter(self.generator, self.num_classes + 1,
                                 InversionLossWeights(self.alpha, self.beta, self.gamma, self.delta),
                                 conditioning=self.conditioning, latent_dim=self.latent_dim, lr=self.generator_lr,
                                 temperature=self.vector_temperature, novelty=self.novelty,
                                 chunk=self.generator_chunk, device=self.device, rng=self.rng,
                                 progress_bar=self.progress)

    # ------------------------------------------------------------------ the three calls of a loop
    def start(self, class_counts: "Tensor | Sequence[int]", epochs: int) -> int:
        """Begin a run of ``epochs`` inversion epochs (after pre-training): draw the Gaussian-noise
        garbage, ``noise_samples`` images or as many as an average ID class (``class_counts``:
        images per class over the whole training set).  Returns their number."""
        counts = torch.as_tensor(class_counts)
        if counts.shape != (self.num_classes,) or counts.is_floating_point() or counts.is_complex() \
                or bool((counts < 0).any()) or not int(counts.sum()):
            raise InvalidArgumentError(f"GarbageSampler.start: class_counts must be {self.num_classes} non-negative "
                                       f"integer counts (images per ID class), not all 0; got {_describe(counts)}")
        validate_params({"epochs": epochs}, {"epochs": POSITIVE_INT}, "GarbageSampler.start")
        need = epochs * (self.garbage_per_epoch or self.samples_per_step)
        if self.pool_policy == "all" and self.pool_capacity is not None and need > self.pool_capacity:
            raise InvalidArgumentError(f"GarbageSampler: pool_policy 'all' would hold {need} images over {epochs} "
                                       f"epochs but pool_capacity is {self.pool_capacity}: raise pool_capacity, set "
                                       "it to None (unbounded), or use 'fifo'/'reservoir'")
        self._build()
        self.epochs = epochs
        n = self.noise_samples or int(counts.float().mean().round())
        self.noise = quantize(torch.randn((n, *self.image_shape), generator=self.rng).clamp_(-1, 1))
        return n

    def refresh(self, classifier: nn.Module, class_means: Optional[Tensor] = None,
                desc: str = "inversion") -> dict[str, Any]:
        """Train the generator by inversion of ``classifier`` (frozen meanwhile; its K + 1
        outputs, ``features`` and ``head``), then add new images to the pool: the last step's
        samples, or ``garbage_per_epoch`` fresh ones.  ``class_means``: ``[K, D]`` normalised
        ID feature means, for the novelty term.  Returns the inversion's figures (loss, its
        parts, inversion accuracy)."""
        self._check_started("refresh")
        images, _, stats = self.inverter.invert(classifier, self.inversion_steps, self.samples_per_step,
                                                keep_last=not self.garbage_per_epoch, class_means=class_means,
                                                desc=desc)
        if self.garbage_per_epoch:  # fresh samples of the final generator instead of the last step's
            images, _ = self.inverter.sample(self.garbage_per_epoch)
        self.pool.add(images)
        return stats

    def epoch(self, num_batches: int) -> Iterator[Tensor]:
        """The garbage of one pass over ``num_batches`` ID batches: all of it (noise and pool),
        shuffled, an equal share per batch (float in [-1, 1] on the device; this rank's part of
        each share under a process group)."""
        self._check_started("epoch")
        validate_params({"num_batches": num_batches}, {"num_batches": POSITIVE_INT}, "GarbageSampler.epoch")
        return self._shares(num_batches)

    def _shares(self, num_batches: int) -> Iterator[Tensor]:
        garbage = self.raw()
        order = torch.randperm(garbage.shape[0], generator=self.rng)  # the same on every rank
        per_batch = math.ceil(garbage.shape[0] / num_batches)
        for i in range(num_batches):
            idx = order[i * per_batch:(i + 1) * per_batch]
            yield dequantize(garbage[idx[distributed.shard(idx.shape[0])]]).to(self.device)

    def negatives_active(self, epoch: int) -> bool:
        """Whether the negatives join the garbage in ``epoch`` (1 .. ``epochs``; 0 is pre-training)."""
        return self.negatives is not None and self.negatives.active(epoch, self._check_started("negatives"))

    def negatives_count(self, epoch: int, num_id: int) -> int:
        """Negatives made in ``epoch`` for ``num_id`` ID images (0 when they are off)."""
        return self.negatives.count(num_id) if self.negatives_active(epoch) else 0

    def make_negatives(self, x: Tensor, epoch: int) -> Optional[Tensor]:
        """Negatives of the ID batch ``x`` for ``epoch`` (add them to the batch's garbage), or
        ``None`` when they are off this epoch."""
        if not self.negatives_count(epoch, x.shape[0]):
            return None
        return self.negatives.make(x, self.rank_rng)

    def _check_started(self, call: str) -> int:
        if self.epochs is None:
            raise CallOrderError(f"GarbageSampler.{call}() before start(): call start(class_counts, epochs) first "
                                 "(it draws the noise garbage), or load_state_dict(...) to continue a run")
        return self.epochs

    # ------------------------------------------------------------------ contents and state
    def raw(self) -> Tensor:
        """All garbage images, noise then pool, as uint8."""
        return self.noise if not len(self.pool) else torch.cat([self.noise, self.pool.raw()])

    def __len__(self) -> int:
        return int(self.noise.shape[0]) + len(self.pool)

    def state_dict(self) -> dict[str, Any]:
        """The shared state (the same on every rank): generator, its optimiser, pool, noise,
        the shared random stream and the run's epochs."""
        self._check_started("state_dict")
        return {"inverter": self.inverter.state_dict(), "pool": self.pool.state_dict(), "noise": self.noise,
                "rng": self.rng.get_state(), "epochs": self.epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` of a sampler with the same parameters."""
        keys = {"inverter", "pool", "noise", "rng", "epochs"}
        if not isinstance(state, dict) or not keys <= set(state):
            missing = sorted(keys - set(state)) if isinstance(state, dict) else sorted(keys)
            raise CheckpointError(f"GarbageSampler.load_state_dict: not a GarbageSampler state (missing {missing}); "
                                  "pass what GarbageSampler.state_dict() returned")
        noise = state["noise"]
        if not isinstance(noise, Tensor) or noise.dtype != torch.uint8 or tuple(noise.shape[1:]) != self.image_shape:
            raise CheckpointError(f"GarbageSampler.load_state_dict: the state holds garbage images of shape "
                                  f"{tuple(getattr(noise, 'shape', ()))[1:]}, this sampler makes {self.image_shape}: "
                                  "it comes from another data set or image size")
        self._build()
        try:
            self.inverter.load_state_dict(state["inverter"])
            self.pool.load_state_dict(state["pool"])
            self.rng.set_state(state["rng"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"GarbageSampler.load_state_dict: the state does not fit this sampler ({exc}); "
                                  "build the sampler with the parameters it was saved with") from exc
        self.noise, self.epochs = noise, int(state["epochs"])

    def rank_state_dict(self) -> dict[str, Tensor]:
        """This rank's own random stream (the negatives' draws)."""
        return {"rng": self.rank_rng.get_state()}

    def load_rank_state_dict(self, state: dict[str, Tensor]) -> None:
        self.rank_rng.set_state(state["rng"])


def _describe(counts: Tensor) -> str:
    values = counts.flatten()[:12].tolist()
    return f"{values}{' ...' if counts.numel() > 12 else ''} ({counts.dtype}, shape {tuple(counts.shape)})"
