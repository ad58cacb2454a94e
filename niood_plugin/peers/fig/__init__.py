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

Choices where the paper leaves room (each is a keyword argument):

* noise: eq. 14 says :math:`z_t \\sim \\mathcal N(0, \\epsilon_t I)`, i.e. standard deviation
  :math:`\\sqrt{\\epsilon_t}`; that is the default (``noise_std=None``).  The authors' code uses
  standard deviation :math:`\\epsilon_t` instead; pass a float to fix the standard deviation.
* convergence ("until the confidence converges", T in [10, 100]): we stop once at least
  ``min_steps`` steps were taken and the batch-mean max-softmax confidence changed by less
  than ``tol`` over the last ``window`` steps, and after ``max_steps`` steps at the latest.
  A window, not a single step, because the injected noise makes single-step changes
  erratic.  (The authors' code instead stops as soon as the mean confidence exceeds 0.5.)
* per batch of ``b`` images, ``max(1, int(b * gen_fraction))`` samples are drawn (as in the
  authors' code) and ID and generated images go through the classifier in one forward pass,
  so batch-norm statistics see both.
* optimizer: SGD with momentum 0.9 and weight decay 5e-4 (the pretraining optimizer of the
  authors' code) at the paper's fine-tuning learning rate 1e-3.
"""
from __future__ import annotations

from .objectives import fig_loss, modified_energy, softmax_entropy
from .sampler import langevin_sample
from .trainer import FIGTrainer

__all__ = ["modified_energy", "langevin_sample", "softmax_entropy", "fig_loss", "FIGTrainer"]
