"""A CIFAR backbone in the shape of airbench94 (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on
a single GPU", 2024, arXiv:2404.00498), written from the paper's description.

``x -> PatchWhitening -> GELU -> 3 x [conv3x3, max-pool 2, BN, GELU, conv3x3, BN, GELU]
-> global max-pool -> features [B, widths[2]] -> Linear (no bias) -> logits``

* **Patch whitening**: a frozen 2x2 convolution (no padding) whose filters are the eigenvectors
  of the covariance of the training images' 2x2 patches, scaled by ``1/sqrt(eigenvalue + eps)``,
  followed by the same filters negated, so the GELU after it keeps the information of both
  signs.  :func:`init_whitening` computes them from a batch of training images; until then the
  layer passes each patch's pixels through (filter ``i`` is the unit vector ``e_i``, then its
  negation).  The weights are a buffer (in the state dict, never trained); the bias is a
  parameter (set to centre the outputs; a recipe may freeze it after a few epochs).
* **BatchNorm without a learned scale** (:class:`ShiftBatchNorm`): the weight is fixed at 1
  (``requires_grad=False``), only the bias is learned, and it is computed in fp32 under autocast.
* **Partial identity init** (``identity_init``): each 3x3 conv starts as the identity on its
  first ``min(in, out)`` channels, as the paper does; the other filters keep PyTorch's default.
* **Logits scaled down** by ``logit_scale`` (the paper's 1/9), applied to the pooled features:
  ``head(features(x))`` is the same product as scaling the logits, and ``head`` stays a plain
  ``nn.Linear`` whose ``(W, b)`` reproduce the logits, as ViM
  (:func:`~niood_plugin.models.last_linear`) and VOS (:func:`~niood_plugin.models.head_linear`) need.

Widths default to the paper's ``(64, 256, 256)``; ``width=w`` gives ``(w, 4w, 4w)``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InvalidArgumentError, InvalidTypeError
from ..validation import POSITIVE_FLOAT, POSITIVE_INT, Boolean, Interval, SequenceOf, validate_params
from .report import ARCH_CONSTRAINTS

__all__ = ["AirNet", "PatchWhitening", "ShiftBatchNorm", "airnet", "init_whitening", "LOGIT_SCALE", "WHITEN_EPS"]

#: The paper's factor on the logits.
LOGIT_SCALE = 1 / 9
#: Added to each eigenvalue before ``1/sqrt``: bounds the gain of near-constant patch directions.
WHITEN_EPS = 5e-4

_POSITIVE = Interval(int, 1, None)
AIRNET_CONSTRAINTS: dict[str, list] = {
    "num_outputs": ARCH_CONSTRAINTS["num_outputs"],
    "in_channels": ARCH_CONSTRAINTS["in_channels"],
    "width": [_POSITIVE, None],
    "widths": [SequenceOf(_POSITIVE, length=3, what="group widths"), None],
    "logit_scale": [Interval(float, 0, None, closed="neither")],
    "bn_momentum": [Interval(float, 0, 1, closed="right")],
    "identity_init": [Boolean()],
}
_INIT_CONSTRAINTS = {"eps": POSITIVE_FLOAT, "batch_size": POSITIVE_INT}


class ShiftBatchNorm(nn.BatchNorm2d):
    """``BatchNorm2d`` with its scale fixed at 1 (``weight.requires_grad`` is False) and a learned
    shift, computed in fp32: under autocast the input (fp16/bf16 from the convolution) is cast to
    fp32 with autocast disabled, normalised, and the result cast back to the input's dtype, so
    the statistics and running buffers stay fp32.  Use autocast, not ``model.half()``."""

    def __init__(self, channels: int, momentum: float = 0.4):
        super().__init__(channels, momentum=momentum)
        self.weight.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.float32:
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float()).to(x.dtype)


class PatchWhitening(nn.Module):
    """A 2x2 convolution (no padding) with frozen weights ``[8C, C, 2, 2]`` (a buffer) and a
    learned bias; see the module docstring and :func:`init_whitening`."""

    def __init__(self, in_channels: int):
        super().__init__()
        d = 4 * in_channels
        eye = torch.eye(d).reshape(d, in_channels, 2, 2)
        self.register_buffer("weight", torch.cat([eye, -eye]))
        self.bias = nn.Parameter(torch.zeros(2 * d))
        #: True once :func:`init_whitening` has set the weights (saved with them).
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias)


def _conv(cin: int, cout: int, identity: bool) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    if identity:
        with torch.no_grad():
            nn.init.dirac_(conv.weight[:min(cin, cout)])
    return conv


def _group(cin: int, cout: int, momentum: float, identity: bool) -> nn.Sequential:
    return nn.Sequential(_conv(cin, cout, identity), nn.MaxPool2d(2), ShiftBatchNorm(cout, momentum), nn.GELU(),
                         _conv(cout, cout, identity), ShiftBatchNorm(cout, momentum), nn.GELU())


class AirNet(nn.Module):
    """The airbench94-shaped classifier (module docstring) with ``num_outputs`` logits (K, or
    K + 1 with a garbage class): ``features(x) -> [B, widths[2]]``, ``head(f) -> logits``.

    ``width`` (``w`` -> widths ``(w, 4w, 4w)``) and ``widths`` are alternatives; neither: the
    paper's ``(64, 256, 256)``.  ``bn_momentum`` is PyTorch's running-statistics momentum:
    0.4, the paper's 0.6 in its convention (the weight of the old statistics), so that the
    running statistics of a 10-epoch run follow the weights.  Any input from 9x9 up works (three max-pools, then a global one);
    32x32 is what the widths were chosen for.
    """

    def __init__(self, num_outputs: int, in_channels: int = 3, width: Optional[int] = None,
                 widths: Optional[Sequence[int]] = None, logit_scale: float = LOGIT_SCALE,
                 bn_momentum: float = 0.4, identity_init: bool = True):
        validate_params(dict(num_outputs=num_outputs, in_channels=in_channels, width=width, widths=widths,
                             logit_scale=logit_scale, bn_momentum=bn_momentum, identity_init=identity_init),
                        AIRNET_CONSTRAINTS, type(self).__name__)
        if width is not None and widths is not None:
            raise InvalidArgumentError(f"AirNet: give width (w -> (w, 4w, 4w)) or widths, not both; got "
                                       f"width={width}, widths={tuple(widths)}")
        super().__init__()
        w = tuple(int(v) for v in widths) if widths is not None else (
            (64, 256, 256) if width is None else (width, 4 * width, 4 * width))
        self.widths, self.logit_scale = w, float(logit_scale)
        self.whiten = PatchWhitening(in_channels)
        cin = 8 * in_channels
        self.groups = nn.Sequential(*[_group(c_in, c_out, bn_momentum, identity_init)
                                      for c_in, c_out in zip((cin,) + w[:2], w)])
        self.classifier = nn.Linear(w[2], num_outputs, bias=False)

    def features(self, x: Tensor) -> Tensor:
        """Global max-pool of the last group, times ``logit_scale``: ``[B, widths[2]]``."""
        x = self.groups(F.gelu(self.whiten(x)))
        return torch.amax(x, dim=(2, 3)) * self.logit_scale

    def head(self, f: Tensor) -> Tensor:
        return self.classifier(f)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def airnet(num_outputs: int, in_channels: int = 3, width: Optional[int] = None, **kwargs) -> AirNet:
    """:class:`AirNet` under its registered name ``airnet`` (``width=w``: widths ``(w, 4w, 4w)``)."""
    return AirNet(num_outputs, in_channels, width=width, **kwargs)


def _whitening_layer(model: nn.Module) -> PatchWhitening:
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"init_whitening needs an nn.Module holding a PatchWhitening layer (an AirNet), "
                               f"got {type(model).__name__}")
    layers = [m for m in model.modules() if isinstance(m, PatchWhitening)]
    if len(layers) != 1:
        raise InvalidTypeError(f"init_whitening needs a model with exactly one PatchWhitening layer (an AirNet, "
                               f"build_classifier('airnet', ...)); {type(model).__name__} has {len(layers)}")
    return layers[0]


@torch.no_grad()
def init_whitening(model: nn.Module, images: Tensor, eps: float = WHITEN_EPS, batch_size: int = 500) -> nn.Module:
    """Set ``model``'s patch-whitening weights from ``images``; returns ``model``.

    ``images``: training images ``[N, C, H, W]``, uint8 (0..255) or float in [-1, 1] (the
    library's convention; uint8 is mapped to it), e.g. 5,000 of them.  The covariance of their
    2x2 patches (all positions, stride 1) is accumulated in float64, ``batch_size`` images at a
    time; filter ``i`` is its ``i``-th eigenvector (largest eigenvalue first) divided by
    ``sqrt(eigenvalue + eps)``, followed by the negated filters, and the bias centres the
    outputs, so on these images the first ``4C`` output channels have mean 0 and covariance
    ``diag(eigenvalue / (eigenvalue + eps))``: the identity where the variance is well above ``eps``.
    """
    validate_params(dict(eps=eps, batch_size=batch_size), _INIT_CONSTRAINTS, "init_whitening")
    layer = _whitening_layer(model)
    if not isinstance(images, Tensor) or not (images.dtype == torch.uint8 or images.is_floating_point()):
        raise InvalidTypeError(f"init_whitening: images must be a uint8 or float torch.Tensor [N, C, H, W], got "
                               f"{getattr(images, 'dtype', type(images).__name__)}")
    c = layer.weight.shape[1]
    if images.dim() != 4 or images.shape[1] != c or min(images.shape[2:]) < 2 or images.shape[0] < 1:
        raise InvalidArgumentError(f"init_whitening: images must be [N, {c}, H, W] with H, W >= 2 (channels first), "
                                   f"got shape {tuple(images.shape)}; permute HWC images with .permute(0, 3, 1, 2)")
    if images.is_floating_point():
        lo, hi = float(images.min()), float(images.max())
        if not (lo >= -1.001 and hi <= 1.001):
            raise InvalidArgumentError(f"init_whitening: float images must be in [-1, 1], got values in "
                                       f"[{lo:.3g}, {hi:.3g}]; map them with x * 2 - 1 (from [0, 1]) or pass uint8")
    d = 4 * c
    total, outer, count = torch.zeros(d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64), 0
    for chunk in images.split(int(batch_size)):
        x = chunk.to("cpu", torch.float64)
        if chunk.dtype == torch.uint8:
            x = x / 127.5 - 1
        p = F.unfold(x, 2).transpose(1, 2).reshape(-1, d)   # one row per patch, in the conv weight's order
        total += p.sum(0)
        outer += p.T @ p
        count += p.shape[0]
    mean = total / count
    cov = outer / count - torch.outer(mean, mean)             # E[pp^T] - mm^T
    evals, evecs = torch.linalg.eigh(cov)                     # ascending
    w = evecs.flip(1).T / torch.sqrt(evals.flip(0).clamp_min(0) + eps)[:, None]   # rows: scaled eigenvectors
    b = -(w @ mean)
    layer.weight.copy_(torch.cat([w, -w]).reshape(2 * d, c, 2, 2).to(layer.weight.dtype))
    layer.bias.copy_(torch.cat([b, -b]).to(layer.bias.dtype))
    layer.fitted.fill_(True)
    return model
