"""FIG: fine-tuning a classifier with its own implicit generator (peer method).

Zhao, Cao and Lin, *Revealing the Distributional Vulnerability of Discriminators by
Implicit Generators* (arXiv:2108.09976, code: https://github.com/Lawliet-zzl/FIG).

A pretrained K-way classifier :math:`f_\\theta` defines an energy-based "implicit generator"
:math:`q_\\theta(x) \\propto \\exp(-\\hat E_\\theta(x))` whose low-energy samples are inputs the
classifier is (over-)confident about.  With :math:`g_y = f_\\theta(x, y) / c` (eq. 16)

.. math:: \\hat E_\\theta(x) = \\sum_{y} g_y \\, (1 - e^{g_y})

Every term is :math:`\\le 0` and decreases fastest (exponentially) for large positive logits,
so descending :math:`\\hat E` makes one logit dominate, i.e. raises the max-softmax confidence.
Samples are drawn with a sign-gradient Langevin sampler (eq. 17-18, Algorithm 1)

.. math:: \\tilde x_t = \\mathrm{clip}\\big(\\tilde x_{t-1} - \\tfrac{\\epsilon_t}{2}
          \\mathrm{sign}(\\nabla_x \\hat E_\\theta(\\tilde x_{t-1})) + z_t, -1, 1\\big),\\quad
          z_t \\sim \\mathcal N(0, \\epsilon_t I),\\quad \\tilde x_0 \\sim \\mathcal U(-1, 1)

with :math:`\\epsilon_{t} = \\epsilon_0 \\gamma^{\\lfloor t / L \\rfloor}`, and the classifier
is fine-tuned (eq. 19-20, Algorithm 2) on

.. math:: \\mathcal L = \\mathrm{CE}(f_\\theta(x_I), y_I) - \\frac{1}{|D_O|}\\sum_{x_O \\in D_O}
          H\\big(\\mathrm{softmax}(f_\\theta(x_O))\\big)

i.e. cross-entropy on the in-distribution batch minus the mean softmax entropy of the
generated batch (weight 1), so confident generated samples are flattened.  OOD scoring after
fine-tuning is plain max-softmax (:class:`pytorch_ood.detector.MaxSoftmax`).

Modules: :mod:`.objectives` (energy, entropy, loss), :mod:`.sampler` (:func:`langevin_sample`),
:mod:`.trainer` (:class:`FIGTrainer`).

Choices where the paper leaves room (each is a keyword argument; the measurements behind them
are in the research notes, ``docs/research.md``, "Peers: the measurements behind the settings"):

* entropy temperature (``entropy_temperature=10``): the penalised entropy is that of
  :math:`\\mathrm{softmax}(f/T)`.  Its maximiser is the same as eq. 19's (equal logits, the
  uniform prediction), so the fixed point FIG aims at is unchanged, but the gradient does not
  vanish on saturated predictions: a classifier that gives its generator's samples a logit gap
  of about 40 has an entropy gradient :math:`-p_k(\\log p_k + H) \\sim 40 e^{-40}`, so eq. 20 at
  T=1 would not move it (eq. 16 narrows the logits by :math:`c` for the same kind of numerical
  reason).  T=1 is the printed eq. 20.
* optimizer and learning rate (``optimizer="adam"``, ``lr=1e-4``, ``weight_decay=0``): the paper
  fine-tunes with "the final learning rate of the pretraining phase" (sec. 4.1), i.e. the
  pretraining optimizer at its last learning rate; the harness's plain models are trained with
  Adam (3e-3, cosine, last epochs 2.4e-4 to 6e-5), so Adam at 1e-4, no weight decay.
* stopping (``fit(loader)``, ``stop_confidence=0.5``, ``max_epochs=5``): Algorithm 2 repeats
  "until convergence" and sec. 3.3 "until the implicit generator barely generates the samples with
  high confidence predictions"; Fig. 3 shows the generated samples' confidence falling towards 1/K.
  After every epoch ``stop_samples=256`` fresh samples are drawn with a fixed seed and fine-tuning
  stops once their mean max-softmax is <= ``stop_confidence``.  A fresh sample, not the epoch's
  running mean, because the running mean lags (its early batches saw the model before the epoch's
  updates) and a fixed seed makes successive epochs comparable.  0.5 is the authors' code's notion
  of a high-confidence sample (its sampler stops once the mean confidence exceeds 0.5).
  ``fit(loader, epochs=N)`` trains exactly N epochs.
* noise: eq. 14 says :math:`z_t \\sim \\mathcal N(0, \\epsilon_t I)`, i.e. standard deviation
  :math:`\\sqrt{\\epsilon_t}`; that is the default (``noise_std=None``).  The authors' code uses
  standard deviation :math:`\\epsilon_t` instead; pass a float to fix the standard deviation.
  The start distribution :math:`\\mathcal U(-1, 1)` and the clip to [-1, 1] match our inputs'
  range (x = 2 pixel/255 - 1).
* convergence of the sampler ("until the confidence converges", T in [10, 100]): we stop once at least
  ``min_steps`` steps were taken and the batch-mean max-softmax confidence changed by less
  than ``tol`` over the last ``window`` steps, and after ``max_steps`` steps at the latest.
  A window, not a single step, because the injected noise makes single-step changes
  erratic.  (The authors' code instead stops as soon as the mean confidence exceeds 0.5.)
* per batch of ``b`` images, ``max(1, int(b * gen_fraction))`` samples are drawn (as in the
  authors' code, K=0.1 as in sec. 4.1) and ID and generated images go through the classifier in
  one forward pass, so batch-norm statistics see both.
"""
from __future__ import annotations

from .objectives import fig_loss, modified_energy, softmax_entropy
from .sampler import langevin_sample
from .trainer import FIGTrainer

__all__ = ["modified_energy", "langevin_sample", "softmax_entropy", "fig_loss", "FIGTrainer"]
