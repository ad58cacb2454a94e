"""BAL: boundary aware learning on the features of a frozen classifier (peer method).

Pei, Zhang, Fan and Meng, *Out-of-distribution Detection with Boundary Aware Learning*
(ECCV 2022, arXiv:2112.11648, code: https://github.com/ForeverPs/BAL).

A conditional GAN is trained on the penultimate features ``f = classifier.features(x)`` of a
frozen, pretrained K-way classifier.  The discriminator :math:`D(f; c)` estimates
:math:`P(f \\in \\mathcal M_f)`, the probability that the feature-label pair is
in-distribution; it learns from

* ID pairs :math:`\\langle f, c \\rangle` (positives),
* *shuffled* pairs :math:`\\langle f, T(c) \\rangle` with a wrong label (negatives, eq. 8),
* *trivial* OOD pairs :math:`\\langle \\hat f, \\hat c \\rangle`, :math:`\\hat f` uniform in the
  batch's per-dimension bounding box and :math:`\\hat c` random (negatives, eq. 4-5 and 9),
* *hard* OOD pairs :math:`G(\\tilde z; c)` where :math:`\\tilde z` is an FGSM step on the latent
  that lowers :math:`D` (negatives, eq. 6-7), and the generator's plain fakes :math:`G(z; c)`
  (the vanilla conditional-GAN term, eq. 10).

At test time (Algorithm 1) the ID confidence is :math:`p_1 p_2` with :math:`p_1` the maximum
softmax probability and :math:`p_2 = D(f; \\hat c)` for the predicted class :math:`\\hat c`;
:class:`BALDetector` returns :math:`-p_1 p_2` (higher = more OOD).

How we read the paper where it is loose (see also the comments in the code):

* Eq. 8 and 9 write the negative terms as :math:`+\\log D(\\text{neg})`, which is unbounded
  below; we use the usual binary cross-entropy :math:`-\\log(1 - D(\\text{neg}))`, which has the
  same optimum (:math:`D(\\text{neg}) \\to 0`), as eq. 10 does for the fakes.  Every positive
  term :math:`-\\log D(f; c)` is kept as written, so it enters :math:`L_d` three times.
* The hard OOD features are added to :math:`L_u` as negatives with weight 1 (the text says they
  "introduce no conflicts", so :math:`\\lambda_c` does not apply); :math:`L_t` uses the
  unperturbed fakes :math:`G(z; c)` as in a vanilla conditional GAN.
* The FGSM step size :math:`\\epsilon` is "a Gaussian random variable"; we draw it per sample
  as :math:`|\\mathcal N(0, \\sigma^2)|` so that every step lowers :math:`D` (eq. 6-7 subtract
  the gradient), with :math:`\\sigma` = ``fgsm_std`` (not given in the paper).
* :math:`T(c)` must differ from :math:`c`: we add a random offset in :math:`1..K-1` modulo K
  (a permutation of the batch labels could keep some labels).
* Eq. 12's :math:`\\min_{f_c \\in \\mathcal M_c}` is taken over the ID features of class
  :math:`c` in the current batch; generated samples whose class is absent from the batch get
  no L1 term.  The adversarial part is the saturating :math:`\\log(1 - D(G(z; c); c))` as
  written (``non_saturating=True`` switches to :math:`-\\log D(G(z; c); c)`).
* Not in the paper: the networks standardise features with the per-dimension mean and
  standard deviation of the training features (estimated before the first epoch), so the
  same MLP sizes work for any feature scale.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from pytorch_ood.api import (
    DetectorInfo,
    FeaturesDetector,
    ModelNotSetException,
    Paper,
    RequiresFittingException,
    Task,
)
from torch import Tensor, nn

from ._validate import check_device, check_int, check_number

log = logging.getLogger(__name__)

__all__ = [
    "uniform_ood_features",
    "shuffle_labels",
    "fgsm_latent",
    "FeatureGenerator",
    "FeatureDiscriminator",
    "bal_discriminator_loss",
    "bal_generator_loss",
    "BALTrainer",
    "BALDetector",
]


# --------------------------------------------------------------------------- sampling


def uniform_ood_features(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    generator: Optional[torch.Generator] = None,
) -> tuple[Tensor, Tensor]:
    """Trivial OOD pairs (eq. 4-5): features uniform in the batch's bounding box, random labels.

    The box is :math:`[a, b]` with :math:`a_j = \\min_i f_i^{(j)}` and
    :math:`b_j = \\max_i f_i^{(j)}` over the batch.

    :param features: ``[B, D]`` ID features of one batch
    :param labels: ``[B]`` their labels (only checked; the OOD labels are drawn uniformly)
    :param num_classes: K
    :param generator: random source (on CPU or on the features' device)
    :return: ``(f_hat [B, D], c_hat [B])``
    """
    if features.dim() != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be a non-empty [B, D] tensor, got shape {tuple(features.shape)}")
    if labels.shape[0] != features.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} entries for {features.shape[0]} features")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    lo = features.min(dim=0).values
    hi = features.max(dim=0).values
    rand_device = generator.device if generator is not None else features.device
    u = torch.rand(features.shape, generator=generator, device=rand_device, dtype=features.dtype)
    c = torch.randint(0, num_classes, (features.shape[0],), generator=generator, device=rand_device)
    f_hat = lo + (hi - lo) * u.to(features.device)
    return f_hat, c.to(labels.device)


def shuffle_labels(labels: Tensor, num_classes: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """:math:`T(c)`: a label that always differs from ``labels`` (uniform over the other K-1)."""
    rand_device = generator.device if generator is not None else labels.device
    offset = torch.randint(1, num_classes, labels.shape, generator=generator, device=rand_device)
    return (labels + offset.to(labels.device)) % num_classes


# --------------------------------------------------------------------------- networks


class _Standardise(nn.Module):
    """Per-dimension ``(f - mean) / std`` with buffers (identity until :meth:`set` is called)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def set(self, mean: Tensor, std: Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-6))

    def forward(self, f: Tensor) -> Tensor:
        return (f - self.mean) / self.std

    def inverse(self, g: Tensor) -> Tensor:
        return g * self.std + self.mean


class FeatureGenerator(nn.Module):
    """Conditional generator :math:`G(z; c)` of feature vectors: an MLP on ``[z, embed(c)]``.

    The MLP works in standardised feature units and maps back with the stored statistics.
    """

    def __init__(self, num_classes: int, feature_dim: int, latent_dim: int = 64, hidden_dim: int = 256):
        super().__init__()
        self.num_classes, self.feature_dim, self.latent_dim = num_classes, feature_dim, latent_dim
        self.embed = nn.Embedding(num_classes, latent_dim)
        self.net = nn.Sequential(
            nn.Linear(2 * latent_dim, hidden_dim), nn.LeakyReLU(0.2),
            nn.Linear(hidden_dim, hidden_dim), nn.LeakyReLU(0.2),
            nn.Linear(hidden_dim, feature_dim),
        )
        self.norm = _Standardise(feature_dim)

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        return self.norm.inverse(self.net(torch.cat([z, self.embed(c)], dim=1)))


class FeatureDiscriminator(nn.Module):
    """Conditional discriminator :math:`D(f; c)` with a projection head.

    ``forward`` returns the *logit* :math:`l = w^\\top h + b + e_c^\\top h` with
    :math:`h = \\mathrm{MLP}(\\text{standardised } f)`; :meth:`probability` returns
    :math:`\\sigma(l)`, the probability that :math:`(f, c)` is in-distribution.
    """

    def __init__(self, num_classes: int, feature_dim: int, hidden_dim: int = 256):
        super().__init__()
        self.num_classes, self.feature_dim = num_classes, feature_dim
        self.norm = _Standardise(feature_dim)
        self.net = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim), nn.LeakyReLU(0.2),
            nn.Linear(hidden_dim, hidden_dim), nn.LeakyReLU(0.2),
        )
        self.out = nn.Linear(hidden_dim, 1)
        self.embed = nn.Embedding(num_classes, hidden_dim)
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, f: Tensor, c: Tensor) -> Tensor:
        h = self.net(self.norm(f))
        return self.out(h).squeeze(1) + (self.embed(c) * h).sum(dim=1)

    def probability(self, f: Tensor, c: Tensor) -> Tensor:
        return torch.sigmoid(self.forward(f, c))


def fgsm_latent(
    generator: nn.Module,
    discriminator: nn.Module,
    z: Tensor,
    c: Tensor,
    eps: Union[float, Tensor],
) -> Tensor:
    """Hard OOD latents (eq. 6-7): :math:`\\tilde z = z - \\epsilon\\,\\mathrm{sign}(\\partial D(G(z;c);c)/\\partial z)`.

    Only the gradient with respect to ``z`` is computed (network ``.grad`` are not touched).
    The sign of the logit gradient equals that of the probability gradient and does not vanish
    when the sigmoid saturates.

    :param eps: scalar or per-sample ``[B]`` step sizes (non-negative steps lower D)
    :return: ``z_tilde`` (detached)
    """
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(discriminator(generator(z, c), c).sum(), z)
    eps = torch.as_tensor(eps, dtype=z.dtype, device=z.device)
    if eps.dim() == 1:
        eps = eps[:, None]
    return (z - eps * grad.sign()).detach()


# --------------------------------------------------------------------------- losses


def _pos(logit: Tensor) -> Tensor:  # -log D
    return F.softplus(-logit).mean()


def _neg(logit: Tensor) -> Tensor:  # -log(1 - D)
    return F.softplus(logit).mean()


def bal_discriminator_loss(
    d_id: Tensor,
    d_shuffled: Tensor,
    d_uniform: Tensor,
    d_fake: Tensor,
    d_hard: Optional[Tensor] = None,
    *,
    lambda_c: float = 0.7,
) -> dict[str, Tensor]:
    """:math:`L_d = L_t + L_s + L_u` (eq. 8-11) from discriminator *logits*.

    .. math::
        L_t &= -\\log D(f;c) - \\log(1 - D(G(z;c);c)) \\\\
        L_s &= -\\log(1 - D(f;T(c))) - \\log D(f;c) \\\\
        L_u &= -\\lambda_c \\log(1 - D(\\hat f;\\hat c)) - \\log(1 - D(G(\\tilde z;c);c)) - \\log D(f;c)

    (each a batch mean).  The paper writes the negatives of :math:`L_s, L_u` as
    :math:`+\\log D`; the bounded BCE form used here has the same optimum.

    :return: dict with ``loss``, ``l_t``, ``l_s``, ``l_u``
    """
    pos = _pos(d_id)
    l_t = pos + _neg(d_fake)
    l_s = _neg(d_shuffled) + pos
    l_u = lambda_c * _neg(d_uniform) + pos
    if d_hard is not None and d_hard.numel():
        l_u = l_u + _neg(d_hard)
    return {"loss": l_t + l_s + l_u, "l_t": l_t, "l_s": l_s, "l_u": l_u}


def bal_generator_loss(
    d_gen: Tensor,
    f_gen: Tensor,
    c_gen: Tensor,
    f_id: Tensor,
    c_id: Tensor,
    *,
    lambda_g: float = 0.01,
    non_saturating: bool = False,
) -> dict[str, Tensor]:
    """:math:`L_g` of eq. 12 from discriminator logits ``d_gen`` on the generated ``f_gen``.

    .. math:: L_g = \\log(1 - D(G(z;c);c)) + \\lambda \\min_{f_c \\in \\mathcal M_c} \\|f_c - G(z;c)\\|_1

    :math:`\\mathcal M_c` is the set of ID features of class :math:`c` in ``f_id``; rows whose
    class is absent get no L1 term.

    :return: dict with ``loss``, ``adv``, ``l1`` (mean min-L1 distance, unweighted)
    """
    adv = _pos(d_gen) if non_saturating else -F.softplus(d_gen).mean()  # log(1 - sigmoid(l)) = -softplus(l)
    dist = torch.cdist(f_gen, f_id, p=1)  # [M, B]
    same = c_gen[:, None] == c_id[None, :]
    dist = dist.masked_fill(~same, float("inf"))
    nearest = dist.min(dim=1).values
    valid = torch.isfinite(nearest)
    l1 = nearest[valid].mean() if valid.any() else f_gen.new_zeros(())
    return {"loss": adv + lambda_g * l1, "adv": adv, "l1": l1}


# --------------------------------------------------------------------------- trainer


class BALTrainer:
    """Train BAL's conditional GAN on the features of a frozen, pretrained K-way classifier.

    The classifier is put in eval mode and never updated (features are computed under
    ``torch.no_grad``).  Per batch, Algorithm 1: one Adam step on the discriminator with
    :func:`bal_discriminator_loss`, then one on the generator with :func:`bal_generator_loss`.

    After :meth:`fit`: ``trainer.generator`` (:class:`FeatureGenerator`),
    ``trainer.discriminator`` (:class:`FeatureDiscriminator`) and ``trainer.detector()``
    (:class:`BALDetector`).

    >>> trainer = BALTrainer(clf, num_classes=10)
    >>> history = trainer.fit(train_loader, epochs=10)
    >>> scores = trainer.detector().predict(x_test)   # higher = more OOD
    """

    def __init__(
        self,
        classifier: nn.Module,
        num_classes: int,
        feature_dim: Optional[int] = None,
        *,
        latent_dim: int = 64,
        hidden_dim: int = 256,
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        lambda_c: float = 0.7,
        lambda_g: float = 0.01,
        fgsm_std: float = 0.5,
        non_saturating: bool = False,
        stats_batches: int = 20,
        device: Union[str, torch.device] = "cpu",
        seed: int = 0,
        progress: bool = True,
    ):
        if not isinstance(classifier, nn.Module):
            raise ValueError(f"classifier must be a pretrained torch.nn.Module, got {type(classifier).__name__}")
        if not callable(getattr(classifier, "features", None)) or not callable(getattr(classifier, "head", None)):
            raise ValueError(
                f"{type(classifier).__name__} lacks features()/head(): BAL needs features(x) -> [B, D] "
                "and head(f) -> logits (see niood_plugin.models.protocol)"
            )
        check_int("num_classes", num_classes, 2)
        if feature_dim is not None:
            check_int("feature_dim", feature_dim, 1)
        check_int("latent_dim", latent_dim, 1)
        check_int("hidden_dim", hidden_dim, 1)
        check_number("lr_g", lr_g)
        check_number("lr_d", lr_d)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        check_number("lambda_c", lambda_c, strict=False)
        check_number("lambda_g", lambda_g, strict=False)
        check_number("fgsm_std", fgsm_std, strict=False)
        check_int("stats_batches", stats_batches, 1)
        check_int("seed", seed, 0)
        check_device(device)

        self.classifier = classifier
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.latent_dim = latent_dim
        self.hidden_dim = hidden_dim
        self.lr_g = lr_g
        self.lr_d = lr_d
        self.betas = tuple(betas)
        self.lambda_c = lambda_c
        self.lambda_g = lambda_g
        self.fgsm_std = fgsm_std
        self.non_saturating = non_saturating
        self.stats_batches = stats_batches
        self.device = device
        self.seed = seed
        self.progress = progress
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
            feats.append(self._features(batch[0].to(device)))
        if not feats:
            raise ValueError("train_loader yielded no batches")
        f = torch.cat(feats)
        dim = f.shape[1]
        if self.feature_dim is not None and self.feature_dim != dim:
            raise ValueError(f"feature_dim={self.feature_dim} but classifier.features() returns {dim} dimensions")
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
        f_uni, c_uni = uniform_ood_features(f, c, K, generator=self._rng)
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
        check_int("epochs", epochs, 1)
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
            batches = train_loader
            if self.progress:
                try:
                    from tqdm.auto import tqdm

                    batches = tqdm(train_loader, desc=f"BAL epoch {epoch}", leave=False)
                except ImportError:  # pragma: no cover - tqdm is optional
                    pass
            for batch in batches:
                x, y = batch[0].to(device), batch[1].to(device).long()
                if x.shape[0] < 2:
                    continue  # a one-sample batch has an empty bounding box
                stats = self._step(self._features(x), y)
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
            if n == 0:
                raise ValueError("train_loader yielded no batches with at least 2 samples")
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

    def detector(self) -> "BALDetector":
        """A :class:`BALDetector` with the frozen classifier and the trained discriminator."""
        if self.discriminator is None:
            raise RequiresFittingException("call BALTrainer.fit() before detector()")
        self.discriminator.eval()
        return BALDetector(self.classifier, self.discriminator)


# --------------------------------------------------------------------------- detector


class BALDetector(FeaturesDetector):
    """
    Boundary aware learning (BAL) detector.  With :math:`f = h(x)` the penultimate features,
    :math:`p = \\mathrm{softmax}(\\mathrm{head}(f))`, :math:`\\hat c = \\arg\\max_y p_y` and
    :math:`D` the conditional discriminator trained by :class:`BALTrainer`, the outlier score is

    .. math:: -\\max_y p_y \\cdot D(f; \\hat c)

    i.e. the negated ID confidence :math:`p_1 p_2` of Algorithm 1 (the approximate posterior
    of eq. 2), so that larger values indicate outliers.  Models are called as they are; the
    trainer leaves the classifier and the discriminator in eval mode.
    """

    info = DetectorInfo(
        paper=Paper(
            title="Out-of-distribution Detection with Boundary Aware Learning",
            venue="ECCV",
            year=2022,
            url="https://arxiv.org/abs/2112.11648",
            code="https://github.com/ForeverPs/BAL",
        ),
        tasks={Task.CLASSIFICATION},
        ai_coded=True,
    )

    def __init__(self, classifier: Optional[nn.Module], discriminator: Optional[nn.Module]):
        """
        :param classifier: frozen K-way classifier with ``features(x) -> [B, D]`` and
            ``head(f) -> [B, K]``. Can be ``None`` only if nothing is predicted.
        :param discriminator: conditional discriminator returning ID *logits* for ``(f, c)``
            (e.g. :class:`FeatureDiscriminator`)
        """
        super().__init__()
        self.classifier = classifier
        self.discriminator = discriminator

    def _require(self, *, features_only: bool) -> None:
        if self.classifier is None:
            raise ModelNotSetException("BALDetector needs a classifier (got None)")
        if self.discriminator is None:
            raise ModelNotSetException("BALDetector needs a trained discriminator (got None)")
        needed = ("head",) if features_only else ("features", "head")
        missing = [m for m in needed if not callable(getattr(self.classifier, m, None))]
        if missing:
            raise ModelNotSetException(
                f"classifier {type(self.classifier).__name__} lacks {', '.join(missing)}()"
            )

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """
        :param x: inputs, passed through ``classifier.features``
        :return: outlier scores of shape :math:`B`
        :raises ModelNotSetException: if the classifier or the discriminator is missing
        """
        self._require(features_only=False)
        device = self.device
        if device is not None:
            x = x.to(device)
        return self.predict_features(self.classifier.features(x))

    @torch.no_grad()
    def predict_features(self, x: Tensor) -> Tensor:
        """
        :param x: penultimate features of shape :math:`B \\times D`
        :return: outlier scores of shape :math:`B`
        :raises ModelNotSetException: if the classifier or the discriminator is missing
        """
        self._require(features_only=True)
        f = x.flatten(1)
        logits = self.classifier.head(f)
        id_prob = torch.sigmoid(self.discriminator(f, logits.argmax(dim=1)))
        return BALDetector.score(logits, id_prob)

    @staticmethod
    def score(logits: Tensor, id_prob: Tensor) -> Tensor:
        """
        Negated BAL confidence.

        :param logits: classifier logits of shape :math:`B \\times K`
        :param id_prob: discriminator ID probabilities :math:`D(f; \\hat c)` of shape :math:`B`
        :return: :math:`-\\max_y \\mathrm{softmax}(\\text{logits})_y \\cdot` ``id_prob``, shape :math:`B`
        """
        return -logits.softmax(dim=1).max(dim=1).values * id_prob
