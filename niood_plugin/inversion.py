"""Network inversion: a conditional generator trained against a frozen classifier.

:class:`Inverter` owns the generator and its optimiser.  :meth:`Inverter.invert` trains it
for ``steps`` updates, each on ``n`` fresh samples conditioned on all K + 1 outputs, with
``L_inv = alpha KL + beta CE + gamma cosine + delta ortho`` (report section 8; plus
``novelty * Novelty``, not in the report), gradients flowing through the frozen classifier
into the generator only.  Under a ``torch.distributed`` process group each rank generates its
share of every step and the generator's gradients are summed over the ranks, so every rank
holds the same generator.  :meth:`Inverter.sample` and :meth:`Inverter.generate` draw images.
It is usable on its own, outside :class:`~niood_plugin.trainer.InversionTrainer`.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from . import distributed
from .conditioning import Conditioning, sample_conditioning
from .errors import InvalidArgumentError
from .losses import InversionLossWeights, inversion_loss, novelty_loss
from .training import progress

__all__ = ["Inverter"]


class Inverter:
    """Train ``generator`` by inversion of a classifier with ``num_outputs`` logits.

    :param generator: ``G(z, vector, matrix)`` with images in [-1, 1]
    :param num_outputs: K + 1, the classifier's outputs (garbage included)
    :param weights: the loss weights alpha, beta, gamma, delta
    :param conditioning: ``"vector"``, ``"matrix"`` or ``"vector-matrix"``
    :param latent_dim: size of ``z``
    :param lr: Adam learning rate (betas 0.5, 0.999)
    :param temperature: softmax temperature of conditioning vectors
    :param novelty: weight of the novelty term (needs ``class_means`` in :meth:`invert`)
    :param chunk: images per forward/backward within one step (bounds memory)
    :param rng: CPU generator for z and the conditioning (shared with the caller, so a run
        repeats exactly)
    """

    def __init__(self, generator: nn.Module, num_outputs: int, weights: InversionLossWeights, *,
                 conditioning: str = "vector", latent_dim: int = 100, lr: float = 1e-3, temperature: float = 1.0,
                 novelty: float = 0.0, chunk: int = 2048, device: torch.device | str = "cpu",
                 rng: Optional[torch.Generator] = None, progress_bar: bool = False):
        self.generator = generator
        self.num_outputs = num_outputs
        self.weights = weights
        self.conditioning = conditioning
        self.latent_dim = latent_dim
        self.temperature = temperature
        self.novelty = novelty
        self.chunk = chunk
        self.device = torch.device(device)
        self.rng = rng if rng is not None else torch.Generator()
        self.progress_bar = progress_bar
        self.optimizer = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))

    def invert(self, classifier: nn.Module, steps: int, n: int, keep_last: bool = True,
               class_means: Optional[Tensor] = None, desc: str = "inversion") -> tuple[Tensor, Tensor, dict[str, Any]]:
        """``steps`` generator updates on ``n`` samples each against the frozen ``classifier``.

        :return: the last step's images and labels (empty unless ``keep_last``) and the stats
            of the last step (loss, its parts, inversion accuracy)
        """
        clf, gen = classifier, self.generator
        clf.eval()
        gen.train()
        frozen = [p.requires_grad for p in clf.parameters()]
        for p in clf.parameters():
            p.requires_grad_(False)
        part = distributed.shard(n)  # this rank's share of every step (all of it in one process)
        images: list[Tensor] = []
        labels: list[Tensor] = []
        correct, total, parts = 0, 0.0, {}
        try:
            for step in progress(range(steps), self.progress_bar, desc):
                final = step == steps - 1
                # Every rank draws the whole step (the rng is shared) and keeps its part, so the
                # step is the same samples whatever the number of processes.
                cond = sample_conditioning(self.conditioning, n, self.num_outputs, None, self.temperature,
                                           self.rng)[part]
                z = torch.randn(n, self.latent_dim, generator=self.rng)[part]
                self.optimizer.zero_grad(set_to_none=True)
                total, parts = 0.0, {}
                for s in range(0, z.shape[0], self.chunk):
                    c = cond[s:s + self.chunk].to(self.device)
                    x = gen(z[s:s + self.chunk].to(self.device), c.vector, c.matrix)
                    f = clf.features(x)
                    logits = clf.head(f)
                    if logits.dim() != 2 or logits.shape[1] != self.num_outputs:
                        raise InvalidArgumentError(
                            f"the classifier returns {tuple(logits.shape[1:])} outputs but the inversion needs "
                            f"{self.num_outputs} (K ID classes + 1 garbage): pass the K+1-way classifier")
                    loss, p = inversion_loss(logits, f, c.labels, c.target, self.weights)
                    if self.novelty and class_means is not None:
                        term = novelty_loss(f, c.labels.to(f.device), class_means)
                        loss = loss + self.novelty * term
                        p["novelty"] = float(term.detach())
                    share = x.shape[0] / n  # of the whole step: the ranks' sums add up to its mean
                    (loss * share).backward()
                    total += float(loss.detach()) * share
                    for k, v in p.items():
                        parts[k] = parts.get(k, 0.0) + v * share
                    if final:
                        correct += int((logits.detach().argmax(1) == c.labels.to(logits.device)).sum())
                        if keep_last:
                            images.append(x.detach().cpu())
                            labels.append(c.labels.cpu())
                distributed.all_reduce_grads(gen.parameters())
                self.optimizer.step()
        finally:
            for p, req in zip(clf.parameters(), frozen):
                p.requires_grad_(req)
        distributed.average_buffers(gen)  # BatchNorm running statistics of the ranks' shares -> one generator
        total, correct, *sums = distributed.all_reduce_sum([total, correct, *parts.values()])
        parts = dict(zip(parts, sums))
        shape = tuple(images[0].shape[1:]) if images else (0,)
        out_x = distributed.all_gather_cat(torch.cat(images) if images else torch.empty((0, *shape)))
        out_y = distributed.all_gather_cat(torch.cat(labels) if labels else torch.empty(0, dtype=torch.long))
        stats = {"inversion_loss": total, **{f"inversion_{k}": v for k, v in parts.items()},
                 "inversion_accuracy": correct / n}
        return out_x, out_y, stats

    @torch.inference_mode()
    def generate(self, labels: Tensor, z: Optional[Tensor] = None, cond: Optional[Conditioning] = None) -> Tensor:
        """Images for conditioning ``labels`` (``z`` and ``cond`` drawn from ``rng`` if not given).

        The generator runs with batch statistics, as during inversion: its BatchNorm running
        averages are never used in training and lag behind, so eval mode would show images
        unlike the ones that go into the garbage pool.  Running averages are left as they were.
        """
        labels = labels.cpu()
        if cond is None:
            cond = sample_conditioning(self.conditioning, labels.shape[0], self.num_outputs, labels,
                                       self.temperature, self.rng)
        if z is None:
            z = torch.randn(labels.shape[0], self.latent_dim, generator=self.rng)
        gen = self.generator
        was = gen.training
        saved = {k: v.clone() for k, v in gen.state_dict().items() if "running" in k or "num_batches" in k}
        gen.train()
        c = cond.to(self.device)
        out = gen(z.to(self.device), c.vector, c.matrix)
        gen.load_state_dict(saved, strict=False)
        gen.train(was)
        return out

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` images (on the CPU) conditioned on all outputs uniformly, and their labels.

        Under a process group each rank generates its part of every chunk and all get all of them."""
        labels = torch.randint(self.num_outputs, (n,), generator=self.rng)
        out = []
        for s in range(0, n, self.chunk):
            lab = labels[s:s + self.chunk]
            cond = sample_conditioning(self.conditioning, lab.shape[0], self.num_outputs, lab, self.temperature,
                                       self.rng)
            z = torch.randn(lab.shape[0], self.latent_dim, generator=self.rng)
            part = distributed.shard(lab.shape[0])
            out.append(distributed.all_gather_cat(self.generate(lab[part], z[part], cond[part]).cpu()))
        return torch.cat(out), labels

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
