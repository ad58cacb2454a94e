"""BALTrainer: BAL's conditional GAN trained on the features of a frozen classifier (Algorithm 1)."""
from __future__ import annotations

import logging
import time
from typing import Any, Optional, Union

import torch
from pytorch_ood.api import RequiresFittingException
from torch import Tensor, nn

from ...training import check_labels, progress, xy_pair
from ...validation import Boolean, InstanceOf, Interval, SequenceOf, check_param, validate_params
from ...devices import Device as TorchDevice
from .detector import BALDetector
from .losses import bal_discriminator_loss, bal_generator_loss
from .negatives import fgsm_latent, shuffle_labels, uniform_ood_features
from .networks import FeatureDiscriminator, FeatureGenerator
from ...errors import InvalidArgumentError

log = logging.getLogger(__name__)

__all__ = ["BALTrainer"]

_POSITIVE_INT = Interval(int, 1, None)
_POSITIVE = Interval(float, 0, None, closed="neither")
_NON_NEGATIVE = Interval(float, 0, None, closed="left")


def _batch_xy(batch: Any, num_classes: int) -> tuple[Tensor, Tensor]:
    """``(x, y)`` of one training batch, refused unless it is a pair of tensors with labels in [0, K)."""
    x, y = xy_pair(batch, "BALTrainer")
    check_labels(y, num_classes, x.shape[0], what="BALTrainer's num_classes")
    return x, y


class BALTrainer:
    """Train BAL's conditional GAN on the features of a frozen, pretrained K-way classifier.

    The classifier is put in eval mode and never updated (features are computed under
    ``torch.no_grad``).  Per batch, Algorithm 1: one Adam step on the discriminator with
    :func:`~niood_plugin.peers.bal.bal_discriminator_loss`, then one on the generator with
    :func:`~niood_plugin.peers.bal.bal_generator_loss`.

    After :meth:`fit`: ``trainer.generator`` (:class:`~niood_plugin.peers.FeatureGenerator`),
    ``trainer.discriminator`` (:class:`~niood_plugin.peers.FeatureDiscriminator`) and
    ``trainer.detector()`` (:class:`~niood_plugin.peers.BALDetector`).

    >>> trainer = BALTrainer(clf, num_classes=10)
    >>> history = trainer.fit(train_loader, epochs=10)
    >>> scores = trainer.detector().predict(x_test)   # higher = more OOD
    """

    _parameter_constraints: dict = {
        "classifier": [InstanceOf(nn.Module, "a pretrained torch.nn.Module")],
        "num_classes": [Interval(int, 2, None)],
        "feature_dim": [_POSITIVE_INT, None],
        "latent_dim": [_POSITIVE_INT],
        "hidden_dim": [_POSITIVE_INT],
        "lr_g": [_POSITIVE],
        "lr_d": [_POSITIVE],
        "betas": [SequenceOf(Interval(float, 0, 1, closed="left"), length=2, what="numbers")],
        "lambda_c": [_NON_NEGATIVE],
        "lambda_g": [_NON_NEGATIVE],
        "fgsm_std": [_NON_NEGATIVE],
        "box_margin": [_NON_NEGATIVE],
        "non_saturating": [Boolean()],
        "stats_batches": [_POSITIVE_INT],
        "device": [TorchDevice()],
        "seed": [Interval(int, 0, None)],
        "progress": [Boolean()],
    }

    def __init__(
        self,
        classifier: nn.Module,
        num_classes: int,
        feature_dim: Optional[int] = None,
        *,
        latent_dim: int = 64,
        hidden_dim: int = 512,
        lr_g: float = 1e-3,
        lr_d: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        lambda_c: float = 0.7,
        lambda_g: float = 0.01,
        fgsm_std: float = 5.0,
        box_margin: float = 0.0,
        non_saturating: bool = False,
        stats_batches: int = 20,
        device: Union[str, torch.device] = "cpu",
        seed: int = 0,
        progress: bool = True,
    ):
        self.classifier = classifier
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.latent_dim = latent_dim
        self.hidden_dim = hidden_dim
        self.lr_g = lr_g
        self.lr_d = lr_d
        self.betas = betas
        self.lambda_c = lambda_c
        self.lambda_g = lambda_g
        self.fgsm_std = fgsm_std
        self.box_margin = box_margin
        self.non_saturating = non_saturating
        self.stats_batches = stats_batches
        self.device = device
        self.seed = seed
        self.progress = progress
        validate_params({name: getattr(self, name) for name in self._parameter_constraints},
                        self._parameter_constraints, type(self).__name__)
        if not callable(getattr(classifier, "features", None)) or not callable(getattr(classifier, "head", None)):
            raise InvalidArgumentError(
                f"{type(classifier).__name__} lacks features()/head(): BAL needs features(x) -> [B, D] "
                "and head(f) -> logits (see niood_plugin.models.protocol)"
            )
        self.betas = tuple(betas)
        self.generator: Optional[FeatureGenerator] = None
        self.discriminator: Optional[FeatureDiscriminator] = None
        self.history_: list[dict] = []
        self._opt_g: Optional[torch.optim.Optimizer] = None
        self._opt_d: Optional[torch.optim.Optimizer] = None
        self._rng: Optional[torch.Generator] = None

    # -- helpers -------------------------------------------------------------------

    @torch.no_grad()
    def _features(self, x: Tensor) -> Tensor:
        return self.classifier.features(x).flatten(1)

    def _build(self, train_loader: Any) -> None:
        device = torch.device(self.device)
        feats = []
        for i, batch in enumerate(train_loader):
            if i >= self.stats_batches:
                break
            feats.append(self._features(_batch_xy(batch, self.num_classes)[0].to(device)))
        if not feats:
            raise InvalidArgumentError("train_loader yielded no batches")
        f = torch.cat(feats)
        dim = f.shape[1]
        if self.feature_dim is not None and self.feature_dim != dim:
            raise InvalidArgumentError(f"feature_dim={self.feature_dim} but classifier.features() returns {dim} dimensions")
        self.feature_dim_ = dim
        with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG untouched
            torch.manual_seed(self.seed)
            self.generator = FeatureGenerator(self.num_classes, dim, self.latent_dim, self.hidden_dim).to(device)
            self.discriminator = FeatureDiscriminator(self.num_classes, dim, self.hidden_dim).to(device)
        std = f.std(dim=0) if f.shape[0] > 1 else torch.ones_like(f[0])
        for net in (self.generator, self.discriminator):
            net.norm.set(f.mean(dim=0), std)
        self._opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.lr_g, betas=self.betas)
        self._opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr_d, betas=self.betas)
        self._rng = torch.Generator(device="cpu").manual_seed(self.seed)

    def _randn(self, *shape: int) -> Tensor:
        return torch.randn(shape, generator=self._rng).to(torch.device(self.device))

    def _randint(self, n: int) -> Tensor:
        return torch.randint(0, self.num_classes, (n,), generator=self._rng).to(torch.device(self.device))

    def _step(self, f: Tensor, c: Tensor) -> dict[str, float]:
        G, D, K = self.generator, self.discriminator, self.num_classes
        b = f.shape[0]
        G.train()
        D.train()
        # ---- discriminator (Algorithm 1, lines 3-9)
        f_uni, c_uni = uniform_ood_features(f, c, K, generator=self._rng, margin=self.box_margin)
        c_shuf = shuffle_labels(c, K, generator=self._rng)
        z, c_z = self._randn(b, self.latent_dim), self._randint(b)
        eps = self._randn(b).abs() * self.fgsm_std
        z_hard = fgsm_latent(G, D, z, c_z, eps)
        with torch.no_grad():
            f_fake = G(z, c_z)
            f_hard = G(z_hard, c_z)
        d_id = D(f, c)
        parts = bal_discriminator_loss(
            d_id, D(f, c_shuf), D(f_uni, c_uni), D(f_fake, c_z), D(f_hard, c_z), lambda_c=self.lambda_c
        )
        self._opt_d.zero_grad(set_to_none=True)
        parts["loss"].backward()
        self._opt_d.step()
        # ---- generator (lines 11-14), labels drawn at random
        z, c_g = self._randn(b, self.latent_dim), self._randint(b)
        f_gen = G(z, c_g)
        g_parts = bal_generator_loss(
            D(f_gen, c_g), f_gen, c_g, f, c, lambda_g=self.lambda_g, non_saturating=self.non_saturating
        )
        self._opt_g.zero_grad(set_to_none=True)
        g_parts["loss"].backward()
        self._opt_g.step()
        D.zero_grad(set_to_none=True)  # the generator step also filled D's grads; drop them
        with torch.no_grad():
            return {
                "d_loss": parts["loss"].item(), "l_t": parts["l_t"].item(), "l_s": parts["l_s"].item(),
                "l_u": parts["l_u"].item(), "g_loss": g_parts["loss"].item(), "g_l1": g_parts["l1"].item(),
                "p_id": torch.sigmoid(d_id).mean().item(),
                "p_uniform": D.probability(f_uni, c_uni).mean().item(),
                "p_hard": D.probability(f_hard, c_z).mean().item(),
            }

    # -- public --------------------------------------------------------------------

    def fit(self, train_loader: Any, epochs: int = 10) -> list[dict]:
        """Train for ``epochs`` passes over ``train_loader`` (batches ``(x, y)``, ID only).

        The first call builds the networks (inferring the feature dimension and the feature
        statistics from up to ``stats_batches`` batches); later calls continue training.

        :return: one plain dict per epoch: ``epoch``, ``d_loss``, ``l_t``, ``l_s``, ``l_u``,
            ``g_loss``, ``g_l1``, ``p_id`` / ``p_uniform`` / ``p_hard`` (mean discriminator ID
            probability of ID, uniform and hard OOD features), ``time_s``
        """
        check_param("epochs", epochs, [_POSITIVE_INT], type(self).__name__)
        device = torch.device(self.device)
        self.classifier.to(device).eval()  # frozen: eval mode, features under no_grad
        if self.generator is None:
            self._build(train_loader)
        history: list[dict] = []
        for _ in range(epochs):
            epoch = len(self.history_) + 1
            t0 = time.perf_counter()
            sums: dict[str, float] = {}
            n = 0
            batches = progress(train_loader, self.progress, f"BAL epoch {epoch}")
            for batch in batches:
                x, y = _batch_xy(batch, self.num_classes)
                x, y = x.to(device), y.to(device).long()
                if x.shape[0] < 2:
                    continue  # a one-sample batch has an empty bounding box
                stats = self._step(self._features(x), y)
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
            if n == 0:
                raise InvalidArgumentError("train_loader yielded no batches with at least 2 samples")
            record = {"epoch": epoch, **{k: v / n for k, v in sums.items()}, "time_s": time.perf_counter() - t0}
            log.info(
                "BAL epoch %d: d %.4f (t %.3f s %.3f u %.3f) g %.4f | D(id) %.3f D(uniform) %.3f D(hard) %.3f (%.1fs)",
                epoch, record["d_loss"], record["l_t"], record["l_s"], record["l_u"], record["g_loss"],
                record["p_id"], record["p_uniform"], record["p_hard"], record["time_s"],
            )
            self.history_.append(record)
            history.append(record)
        self.generator.eval()
        self.discriminator.eval()
        return history

    def detector(self) -> BALDetector:
        """A :class:`~niood_plugin.peers.BALDetector` with the frozen classifier and the trained discriminator."""
        if self.discriminator is None:
            raise RequiresFittingException("call BALTrainer.fit() before detector()")
        self.discriminator.eval()
        return BALDetector(self.classifier, self.discriminator)
