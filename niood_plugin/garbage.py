"""The garbage class's images for any training loop: the method as parts.

:class:`GarbageSampler` holds what the report adds to a classifier's training (sections 3
and 8): Gaussian-noise images at first, then samples of a conditional generator trained by
network inversion against the (frozen) classifier, kept in a bounded
:class:`~niood_plugin.pool.GarbagePool`.  It never touches the classifier's optimiser or loss,
so it fits any loop: a plain PyTorch one (``examples/own_loop.py``), Lightning, or OpenOOD's
trainers (:mod:`niood_plugin.integrations.openood`).  :class:`~niood_plugin.InversionTrainer`
is one user of it.

>>> garbage = GarbageSampler(num_classes=10, image_shape=(1, 28, 28), preset="fast")
>>> garbage.start(class_counts)                 # noise: as many images as an average class
>>> loss_fn = pytorch_ood.loss.BackgroundClassLoss(n_classes=10)   # label -1 -> output K
>>> for epoch in range(1 + garbage.config.epochs):
...     if epoch:
...         garbage.refresh(clf)                # invert the classifier; new images join the pool
...     for (x, y), g in zip(loader, garbage.epoch(len(loader))):
...         neg = garbage.make_negatives(x, epoch)  # with GarbageSampler(..., negatives=Negatives())
...         g = g if neg is None else torch.cat([g, neg])
...         logits = clf(torch.cat([x, g]))
...         loss = loss_fn(logits, torch.cat([y, torch.full((len(g),), -1)]))
...         ...                                  # backward and step, as the loop does anyway
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

from . import distributed
from .config import InversionConfig
from .devices import resolve_device
from .inversion import Inverter
from .losses import InversionLossWeights
from .models import build_generator, generator_for_shape, to_channels_last
from .negatives import Negatives
from .pool import GarbagePool, dequantize, quantize
from .training import check_image_shape
from .validation import Boolean, InstanceOf, Interval, validate_params
from .errors import InvalidArgumentError

__all__ = ["GarbageSampler"]


class GarbageSampler:
    """Noise, then network-inversion samples, for a classifier's garbage class (output K).

    :param num_classes: K, the ID classes; the classifier has K + 1 outputs
    :param image_shape: ``(C, H, W)`` of the training images (in [-1, 1])
    :param preset: a named set of hyperparameters (:mod:`~niood_plugin.presets`); keywords
        override it
    :param config: an :class:`~niood_plugin.InversionConfig` instead of ``preset`` and keywords
    :param generator: a conditional generator ``G(z, vector, matrix)``, or ``None`` for the
        report's for ``image_shape`` (built now, from torch's global RNG)
    :param negatives: a second source of garbage, transformed ID images
        (:class:`~niood_plugin.Negatives`), served by :meth:`make_negatives`; ``None``: none
    :param device: where the generator runs and the garbage batches are made
    :param seed: seeds the noise, the inversion draws, the garbage order and the pool
    :param channels_last: generator in channels-last layout
    :param generator_chunk: generated images per forward/backward (bounds memory)
    :param hyperparameters: fields of :class:`~niood_plugin.InversionConfig`

    Under a ``torch.distributed`` process group every rank holds the same noise and pool, and
    :meth:`epoch` gives each rank its share of every batch's garbage.
    """

    _parameter_constraints = {
        "num_classes": [Interval(int, 2, None)], "config": [InstanceOf(InversionConfig), None],
        "generator": [InstanceOf(nn.Module), None], "negatives": [InstanceOf(Negatives), None],
        "seed": [Interval(int, 0, 2**63 - 1)],
        "progress": [Boolean()], "channels_last": [Boolean()], "generator_chunk": [Interval(int, 1, None)],
    }

    def __init__(self, num_classes: int, image_shape: Sequence[int], *, preset: Optional[str] = None,
                 dataset: Optional[str] = None, config: Optional[InversionConfig] = None,
                 generator: Optional[nn.Module] = None, negatives: Optional[Negatives] = None,
                 device: "str | torch.device" = "cpu", seed: int = 0,
                 progress: bool = False, channels_last: bool = True, generator_chunk: int = 2048,
                 **hyperparameters: Any):
        validate_params(dict(num_classes=num_classes, config=config, generator=generator, negatives=negatives, seed=seed,
                             progress=progress, channels_last=channels_last, generator_chunk=generator_chunk),
                        self._parameter_constraints, "GarbageSampler")
        if config is not None and (preset is not None or hyperparameters):
            raise InvalidArgumentError("GarbageSampler: give either config or preset/hyperparameters, not both")
        self.num_classes, self.image_shape = num_classes, check_image_shape(image_shape)
        self.config = config if config is not None else InversionConfig.from_preset(preset, dataset,
                                                                                     **hyperparameters)
        self.device, self.seed, self.negatives = resolve_device(device), seed, negatives
        if negatives is not None:
            negatives.check(self.image_shape)
        cfg = self.config
        if generator is None:
            generator = build_generator(generator_for_shape(self.image_shape), num_classes=num_classes + 1,
                                        nz=cfg.latent_dim, out_channels=self.image_shape[0],
                                        conditioning=cfg.conditioning, ngf=cfg.generator_width)
        self.generator = generator.to(self.device)
        if channels_last:
            to_channels_last(self.generator)
        distributed.broadcast_module(self.generator)  # one generator: rank 0's initial weights
        #: the shared random stream (the same draws on every rank)
        self.rng = torch.Generator().manual_seed(seed)
        #: per-rank draws (the negatives of this rank's images): ``rng`` itself in one process
        self.rank_rng = self.rng if distributed.world_size() == 1 else \
            torch.Generator().manual_seed(distributed.rank_seed(seed))
        self.inverter = Inverter(self.generator, num_classes + 1,
                                 InversionLossWeights(cfg.alpha, cfg.beta, cfg.gamma, cfg.delta),
                                 conditioning=cfg.conditioning, latent_dim=cfg.latent_dim, lr=cfg.generator_lr,
                                 temperature=cfg.vector_temperature, novelty=cfg.novelty, chunk=generator_chunk,
                                 device=self.device, rng=self.rng, progress_bar=progress)
        self.pool = GarbagePool(self.image_shape, cfg.pool_capacity, cfg.pool_policy, seed=seed)
        self.noise = torch.empty((0, *self.image_shape), dtype=torch.uint8)

    # ------------------------------------------------------------------ the three calls of a loop
    def start(self, class_counts: "Tensor | Sequence[int]") -> int:
        """Draw the Gaussian-noise garbage: ``config.noise_samples`` images, or as many as an
        average ID class (``class_counts``: images per class over the whole training set).
        Returns their number."""
        counts = torch.as_tensor(class_counts).float()
        n = self.config.noise_samples or int(counts.mean().round())
        self.noise = quantize(torch.randn((n, *self.image_shape), generator=self.rng).clamp_(-1, 1))
        return n

    def refresh(self, classifier: nn.Module, class_means: Optional[Tensor] = None,
                desc: str = "inversion") -> dict[str, Any]:
        """Train the generator by inversion of ``classifier`` (frozen meanwhile; its K + 1
        outputs, ``features`` and ``head``), then add new images to the pool: the last step's
        samples, or ``config.garbage_per_epoch`` fresh ones.  Returns the inversion's figures
        (loss, its parts, inversion accuracy)."""
        cfg = self.config
        images, _, stats = self.inverter.invert(classifier, cfg.inversion_steps, cfg.samples_per_step,
                                                keep_last=not cfg.garbage_per_epoch, class_means=class_means,
                                                desc=desc)
        if cfg.garbage_per_epoch:  # fresh samples of the final generator instead of the last step's
            images, _ = self.inverter.sample(cfg.garbage_per_epoch)
        self.pool.add(images)
        return stats

    def epoch(self, num_batches: int) -> Iterator[Tensor]:
        """The garbage of one pass over ``num_batches`` ID batches: all of it (noise and pool),
        shuffled, an equal share per batch (float in [-1, 1] on the device; this rank's part of
        each share under a process group)."""
        garbage = self.raw()
        order = torch.randperm(garbage.shape[0], generator=self.rng)  # the same on every rank
        per_batch = math.ceil(garbage.shape[0] / max(num_batches, 1))
        for i in range(num_batches):
            idx = order[i * per_batch:(i + 1) * per_batch]
            yield dequantize(garbage[idx[distributed.shard(idx.shape[0])]]).to(self.device)

    def negatives_active(self, epoch: int) -> bool:
        """Whether the negatives join the garbage in ``epoch`` (1 .. ``config.epochs``; 0 is
        pre-training)."""
        return self.negatives is not None and self.negatives.active(epoch, self.config.epochs)

    def make_negatives(self, x: Tensor, epoch: int) -> Optional[Tensor]:
        """Negatives of the ID batch ``x`` for ``epoch`` (add them to the batch's garbage), or
        ``None`` when they are off this epoch."""
        if not self.negatives_active(epoch) or not self.negatives.count(x.shape[0]):
            return None
        return self.negatives.make(x, self.rank_rng)

    # ------------------------------------------------------------------ contents and state
    def raw(self) -> Tensor:
        """All garbage images, noise then pool, as uint8."""
        return self.noise if not len(self.pool) else torch.cat([self.noise, self.pool.raw()])

    def __len__(self) -> int:
        return int(self.noise.shape[0]) + len(self.pool)

    def state_dict(self) -> dict[str, Any]:
        return {"inverter": self.inverter.state_dict(), "pool": self.pool.state_dict(), "noise": self.noise,
                "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inverter.load_state_dict(state["inverter"])
        self.pool.load_state_dict(state["pool"])
        self.noise = state["noise"]
        self.rng.set_state(state["rng"])
