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

Modules: :mod:`.networks` (:math:`G`, :math:`D`), :mod:`.negatives` (the OOD pairs),
:mod:`.losses` (:math:`L_d`, :math:`L_g`), :mod:`.trainer` (:class:`BALTrainer`),
:mod:`.detector` (:class:`BALDetector`).

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
* Settings the paper does not give, chosen on MNIST (the harness's ``standard`` model, 64-d
  features) with the ID test split and synthetic validation outliers only (permuted, inverted,
  blended and patch-shuffled images, and ID test features x 3), never on the reported OOD sets:
  ``hidden_dim=512`` (the paper gives no network sizes), ``fgsm_std=5.0`` (the paper only says
  :math:`\\epsilon` is Gaussian), ``lr_g=1e-3`` with ``lr_d=2e-4`` (no rates in the paper).
  Paper values kept: :math:`\\lambda_c=0.7`, :math:`\\lambda=0.01`, the per-batch box of
  eq. 4-5 (``box_margin=0``).  ``box_margin`` > 0 widens that box (not in the paper; the
  authors' 2-D toy code samples its uniform negatives in [-15, 15]^2 around data at +-3.5): it
  makes D reject far-away features in low dimension (``tests/test_peers_bal.py``) but not in
  64-d, where D learns to spot the uniform samples' independent-coordinate pattern rather than
  their location, so it is off by default.

Limits of the method in this setting: images far from the ID data (e.g. noise) map outside the
ID feature box, where MSP is near 1 and only :math:`D` can reject them, but no trivial or hard
negative lies there, so :math:`D`'s value there varies from seed to seed; near the ID data
:math:`D` is a GAN discriminator near equilibrium and only weakly separates ID from OOD.  The
measurements are in the research notes (``docs/research.md``, "Peers made to work" and "Peers:
the measurements behind the settings").
"""
from __future__ import annotations

from .detector import BALDetector
from .losses import bal_discriminator_loss, bal_generator_loss
from .negatives import fgsm_latent, shuffle_labels, uniform_ood_features
from .networks import FeatureDiscriminator, FeatureGenerator
from .trainer import BALTrainer

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
