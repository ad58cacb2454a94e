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

import logging
import math
import time
from typing import Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._validate import check_device, check_int, check_number

log = logging.getLogger(__name__)

__all__ = ["modified_energy", "langevin_sample", "softmax_entropy", "fig_loss", "FIGTrainer"]


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def _check_decay(decay: float) -> None:
    check_number("decay", decay)
    if decay > 1:
        raise ValueError(f"decay (the step-size decay rate gamma) must be in (0, 1], got {decay}")


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in image_shape)
    except TypeError:
        raise ValueError(f"image_shape must be a sequence like (C, H, W), got {image_shape!r}") from None
    if len(shape) == 0 or any(s < 1 for s in shape):
        raise ValueError(f"image_shape must be non-empty with positive sizes, got {image_shape!r}")
    return shape


def modified_energy(logits: Tensor, c: float = 5.0) -> Tensor:
    """Per-sample modified energy of eq. 16, :math:`\\sum_y (f_y/c)(1 - \\exp(f_y/c))`.

    :param logits: ``[B, K]``
    :param c: scale that keeps :math:`\\exp` in range (the paper uses 5)
    :return: ``[B]``; lower energy = more confident, more probable under the implicit generator
    """
    g = logits / c
    return (g * (1.0 - g.exp())).sum(dim=1)


def langevin_sample(
    classifier: nn.Module,
    n: int,
    image_shape: Sequence[int],
    *,
    c: float = 5.0,
    steps: Optional[int] = None,
    eps0: float = 0.1,
    decay: float = 0.9,
    decay_every: int = 100,
    noise_std: Optional[float] = None,
    min_steps: int = 10,
    max_steps: int = 100,
    tol: float = 0.01,
    window: int = 5,
    generator: Optional[torch.Generator] = None,
    device: Union[str, torch.device, None] = None,
    return_info: bool = False,
) -> Union[Tensor, tuple[Tensor, dict]]:
    """Draw ``n`` samples from the classifier's implicit generator (Algorithm 1 of FIG).

    Starts from :math:`\\mathcal U(-1, 1)` and takes sign-gradient Langevin steps that *descend*
    the modified energy :func:`modified_energy` (eq. 18), clipping to ``[-1, 1]`` after every
    step.  The whole batch is updated at once; the classifier is put in eval mode for sampling
    (and restored afterwards), and only the gradient with respect to the samples is computed,
    so no ``.grad`` of the classifier's parameters is touched.

    :param classifier: maps ``[n, *image_shape]`` to logits ``[n, K]``
    :param n: number of samples
    :param image_shape: ``(C, H, W)`` of one input
    :param c: energy scale of eq. 16
    :param steps: if given, take exactly this many steps (no early stop), e.g. for visualisation
    :param eps0: initial step size :math:`\\epsilon_0`
    :param decay: decay rate :math:`\\gamma`
    :param decay_every: decay period :math:`L` (in steps)
    :param noise_std: standard deviation of the injected Gaussian noise; ``None`` (default)
        uses the paper's :math:`\\sqrt{\\epsilon_t}`, ``0`` disables the noise
    :param min_steps: fewest steps before early stopping is allowed
    :param max_steps: most steps
    :param tol: stop once the batch-mean max-softmax confidence changed by less than this
        over the last ``window`` steps
    :param window: number of steps over which the change in confidence is measured
    :param generator: random source for the start points and the noise
    :param device: where to sample; default: the classifier's device
    :param return_info: also return ``{"steps", "confidence", "energy"}`` (plain Python numbers)
    :return: samples ``[n, *image_shape]`` in ``[-1, 1]`` (detached), optionally with the info dict
    """
    if not isinstance(classifier, nn.Module):
        raise TypeError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}")
    check_int("n", n, 1)
    shape = _check_image_shape(image_shape)
    check_number("c", c)
    check_number("eps0", eps0)
    _check_decay(decay)
    check_int("decay_every", decay_every, 1)
    check_number("tol", tol, strict=False)
    check_int("window", window, 1)
    if noise_std is not None:
        check_number("noise_std", noise_std, strict=False)
    if steps is not None:
        check_int("steps", steps, 0)
        min_steps = max_steps = steps
    check_int("min_steps", min_steps, 0)
    check_int("max_steps", max_steps, 0)
    if min_steps > max_steps:
        raise ValueError(f"min_steps ({min_steps}) must be <= max_steps ({max_steps})")

    device = torch.device(device) if device is not None else _device_of(classifier)
    rand_device = generator.device if generator is not None else device

    def _noise(size: tuple[int, ...]) -> Tensor:
        return torch.randn(size, generator=generator, device=rand_device).to(device)

    was_training = classifier.training
    classifier.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            x = (torch.rand((n, *shape), generator=generator, device=rand_device) * 2 - 1).to(device)
            confs: list[float] = []  # batch-mean confidence after 0, 1, ..., t steps
            t = 0
            while True:
                x.requires_grad_(True)
                logits = classifier(x)
                conf = logits.detach().softmax(dim=1).max(dim=1).values.mean().item()
                confs.append(conf)
                if t >= max_steps or (
                    t >= max(min_steps, window) and abs(conf - confs[t - window]) < tol
                ):
                    break
                energy = modified_energy(logits, c).sum()
                (grad,) = torch.autograd.grad(energy, x)
                eps_t = eps0 * decay ** (t // decay_every)
                std = math.sqrt(eps_t) if noise_std is None else noise_std
                step = x.detach() - 0.5 * eps_t * grad.sign()
                if std > 0:
                    step = step + std * _noise(step.shape)
                x = step.clamp_(-1.0, 1.0)
                t += 1
            energy_mean = modified_energy(logits.detach(), c).mean().item()
    finally:
        classifier.train(was_training)

    x = x.detach()
    if return_info:
        return x, {"steps": t, "confidence": conf, "energy": energy_mean}
    return x


def softmax_entropy(logits: Tensor) -> Tensor:
    """Shannon entropy (nats) of ``softmax(logits)`` per row: ``[B, K] -> [B]``."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def fig_loss(
    logits_id: Tensor,
    y_id: Tensor,
    logits_gen: Optional[Tensor],
    *,
    entropy_weight: float = 1.0,
) -> Tensor:
    """FIG objective (eq. 19-20, as a loss to minimise).

    .. math:: \\mathcal L = \\frac{1}{N}\\sum_i -\\log p(y_i|x_i)
              \\; - \\; w \\cdot \\frac{1}{M}\\sum_j H(p(\\cdot|\\tilde x_j))

    The paper's weight is :math:`w = 1`: the second term of eq. 20 averages
    :math:`\\sum_y p \\log p` over the :math:`N K` generated samples.

    :param logits_id: ``[N, K]`` logits of the in-distribution batch
    :param y_id: ``[N]`` labels
    :param logits_gen: ``[M, K]`` logits of the generated samples (``None`` or ``M = 0``: CE only)
    :param entropy_weight: :math:`w`
    :return: scalar loss
    """
    if logits_id.dim() != 2:
        raise ValueError(f"logits_id must be [N, K], got shape {tuple(logits_id.shape)}")
    ce = F.cross_entropy(logits_id, y_id)
    if logits_gen is None or logits_gen.shape[0] == 0:
        return ce
    if logits_gen.dim() != 2 or logits_gen.shape[1] != logits_id.shape[1]:
        raise ValueError(
            f"logits_gen must be [M, {logits_id.shape[1]}], got shape {tuple(logits_gen.shape)}"
        )
    return ce - entropy_weight * softmax_entropy(logits_gen).mean()


class FIGTrainer:
    """Fine-tune a *pretrained* K-way classifier with FIG (Algorithm 2).

    For every ID batch of size ``b`` the current classifier's implicit generator is sampled
    (:func:`langevin_sample`, ``max(1, int(b * gen_fraction))`` images), then one SGD step on
    :func:`fig_loss` is taken.  After :meth:`fit`, ``trainer.classifier`` is the fine-tuned model
    (the same object that was passed in, updated in place and left in eval mode); score it
    with max-softmax.

    >>> trainer = FIGTrainer(clf, num_classes=10, image_shape=(1, 28, 28))
    >>> history = trainer.fit(train_loader, epochs=1)
    """

    def __init__(
        self,
        classifier: nn.Module,
        num_classes: int,
        image_shape: Sequence[int],
        *,
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        gen_fraction: float = 0.1,
        entropy_weight: float = 1.0,
        c: float = 5.0,
        eps0: float = 0.1,
        decay: float = 0.9,
        decay_every: int = 100,
        noise_std: Optional[float] = None,
        min_steps: int = 10,
        max_steps: int = 100,
        tol: float = 0.01,
        window: int = 5,
        device: Union[str, torch.device] = "cpu",
        seed: int = 0,
        progress: bool = True,
    ):
        if not isinstance(classifier, nn.Module):
            raise ValueError(
                f"classifier must be a pretrained torch.nn.Module, got {type(classifier).__name__}"
            )
        check_int("num_classes", num_classes, 2)
        self.image_shape = _check_image_shape(image_shape)
        check_number("lr", lr)
        check_number("momentum", momentum, strict=False)
        check_number("weight_decay", weight_decay, strict=False)
        check_number("gen_fraction", gen_fraction, strict=False)
        if gen_fraction > 1:
            raise ValueError(f"gen_fraction (the paper's K) must be in [0, 1], got {gen_fraction}")
        check_number("entropy_weight", entropy_weight, strict=False)
        check_number("c", c)
        check_number("eps0", eps0)
        _check_decay(decay)
        check_int("decay_every", decay_every, 1)
        if noise_std is not None:
            check_number("noise_std", noise_std, strict=False)
        check_int("min_steps", min_steps, 0)
        check_int("max_steps", max_steps, 1)
        if min_steps > max_steps:
            raise ValueError(f"min_steps ({min_steps}) must be <= max_steps ({max_steps})")
        check_number("tol", tol, strict=False)
        check_int("window", window, 1)
        check_int("seed", seed, 0)
        check_device(device)

        self.classifier = classifier
        self.num_classes = num_classes
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.gen_fraction = gen_fraction
        self.entropy_weight = entropy_weight
        self.c = c
        self.eps0 = eps0
        self.decay = decay
        self.decay_every = decay_every
        self.noise_std = noise_std
        self.min_steps = min_steps
        self.max_steps = max_steps
        self.tol = tol
        self.window = window
        self.device = device
        self.seed = seed
        self.progress = progress
        self.history_: list[dict] = []
        self._optimizer: Optional[torch.optim.Optimizer] = None

    def _num_generated(self, batch_size: int) -> int:
        if self.gen_fraction == 0:
            return 0
        return max(1, int(batch_size * self.gen_fraction))

    def sample(self, n: int, generator: Optional[torch.Generator] = None, return_info: bool = False):
        """Draw ``n`` samples from the current classifier's implicit generator."""
        return langevin_sample(
            self.classifier, n, self.image_shape, c=self.c, eps0=self.eps0, decay=self.decay,
            decay_every=self.decay_every, noise_std=self.noise_std, min_steps=self.min_steps,
            max_steps=self.max_steps, tol=self.tol, window=self.window, generator=generator,
            device=torch.device(self.device), return_info=return_info,
        )

    def fit(self, train_loader: Any, epochs: int = 1) -> list[dict]:
        """Fine-tune for ``epochs`` passes over ``train_loader`` (batches ``(x, y)``).

        Calling ``fit`` again continues training (the optimizer state is kept).

        :return: one plain dict per epoch: ``epoch``, ``loss``, ``ce``, ``entropy`` (mean softmax
            entropy of the generated samples, the term subtracted in the loss), ``gen_confidence``
            (mean max-softmax of the generated samples before the update), ``id_train_acc``,
            ``sampler_steps`` (mean Langevin steps per batch), ``num_generated``, ``time_s``
        """
        check_int("epochs", epochs, 1)
        device = torch.device(self.device)
        clf = self.classifier.to(device)
        if self._optimizer is None:
            self._optimizer = torch.optim.SGD(
                clf.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        gen = torch.Generator(device="cpu").manual_seed(self.seed + len(self.history_))
        history: list[dict] = []
        for _ in range(epochs):
            epoch = len(self.history_) + 1
            t0 = time.perf_counter()
            sums = {"loss": 0.0, "ce": 0.0, "entropy": 0.0, "gen_confidence": 0.0, "steps": 0.0}
            n_batches = correct = seen = n_gen_total = 0
            batches = train_loader
            if self.progress:
                try:
                    from tqdm.auto import tqdm

                    batches = tqdm(train_loader, desc=f"FIG epoch {epoch}", leave=False)
                except ImportError:  # pragma: no cover - tqdm is optional
                    pass
            for batch in batches:
                x, y = batch[0].to(device), batch[1].to(device).long()
                n_gen = self._num_generated(x.shape[0])
                if n_gen:
                    x_gen, info = self.sample(n_gen, generator=gen, return_info=True)
                    sums["steps"] += info["steps"]
                    sums["gen_confidence"] += info["confidence"]
                else:
                    x_gen = x.new_empty((0, *x.shape[1:]))
                clf.train()
                logits = clf(torch.cat([x, x_gen], dim=0))
                logits_id, logits_gen = logits[: x.shape[0]], logits[x.shape[0]:]
                loss = fig_loss(logits_id, y, logits_gen, entropy_weight=self.entropy_weight)
                self._optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self._optimizer.step()

                with torch.no_grad():
                    sums["loss"] += loss.item()
                    sums["ce"] += F.cross_entropy(logits_id, y).item()
                    if n_gen:
                        sums["entropy"] += softmax_entropy(logits_gen).mean().item()
                    correct += (logits_id.argmax(dim=1) == y).sum().item()
                    seen += x.shape[0]
                n_gen_total += n_gen
                n_batches += 1
            if n_batches == 0:
                raise ValueError("train_loader yielded no batches")
            gen_batches = n_batches if self.gen_fraction > 0 else 1
            record = {
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
            log.info(
                "FIG epoch %d: loss %.4f ce %.4f entropy %.4f gen-conf %.3f acc %.3f steps %.1f (%.1fs)",
                epoch, record["loss"], record["ce"], record["entropy"], record["gen_confidence"],
                record["id_train_acc"], record["sampler_steps"], record["time_s"],
            )
            self.history_.append(record)
            history.append(record)
        clf.eval()
        return history
