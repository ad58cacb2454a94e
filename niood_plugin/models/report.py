"""The report's architectures (sections 4 and 5): DCGAN-style classifier and generator.

``Report28Classifier`` / ``Report28Generator`` are for 28x28 inputs (MNIST,
Fashion-MNIST), ``Report32Classifier`` / ``Report32Generator`` for 32x32 (CIFAR-10, SVHN).
Widths ``ncf`` / ``ngf`` are not given in the report; 64 (the DCGAN default) is ours.

Generators take a latent ``z`` of size ``nz`` plus a conditioning over ``N = num_outputs``
outputs of the classifier (``K + 1`` for a garbage-class model, the garbage output included):

* ``vector`` (report default): a length-N probability vector, embedded by
  ``Linear(N -> nz)`` and concatenated with ``z`` at 1x1;
* ``matrix``: an N x N matrix (row and column of the label set to 1) joined to the
  *unconditioned* intermediate feature map: the map is resized to N x N, the matrix is
  concatenated as one extra channel, mixed by a 3x3 convolution and resized back;
* ``vector-matrix``: both of the above.

The resize-to-N x N step is our reading of "concatenated intermediately after
up-sampling it to N x N spatial dimensions" for layer sizes (8x8) that differ from N.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InvalidArgumentError
from ..validation import Interval, Options, validate_params

CONDITIONINGS = ("vector", "matrix", "vector-matrix")

_COUNT = Interval(int, 1, None)
#: Constraints of the architectures' arguments, checked before any layer is built.
ARCH_CONSTRAINTS: dict[str, list] = {
    "num_outputs": [Interval(int, 2, None)],
    "in_channels": [_COUNT],
    "out_channels": [_COUNT],
    "nz": [_COUNT],
    "ncf": [_COUNT],
    "ngf": [_COUNT],
    "dropout": [Interval(float, 0, 1)],
    "conditioning": [Options(*CONDITIONINGS)],
}


def _block(conv: nn.Module, channels: int, dropout: float = 0.0) -> list[nn.Module]:
    layers: list[nn.Module] = [conv, nn.BatchNorm2d(channels), nn.LeakyReLU(0.2, inplace=True)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return layers


class _FeatureHeadClassifier(nn.Module):
    """Shared ``features``/``head``/``forward`` plumbing for the report classifiers."""

    body: nn.Sequential
    penultimate: nn.Sequential
    classifier: nn.Linear

    def features(self, x: Tensor) -> Tensor:
        return self.penultimate(self.body(x))

    def head(self, f: Tensor) -> Tensor:
        return self.classifier(f)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class Report28Classifier(_FeatureHeadClassifier):
    """Section 4.1: three conv blocks, global average pool, Linear-LeakyReLU-Dropout, Linear."""

    def __init__(self, num_outputs: int, in_channels: int = 1, ncf: int = 64, dropout: float = 0.5):
        validate_params(dict(num_outputs=num_outputs, in_channels=in_channels, ncf=ncf, dropout=dropout),
                        ARCH_CONSTRAINTS, type(self).__name__)
        super().__init__()
        self.body = nn.Sequential(
            *_block(nn.Conv2d(in_channels, ncf, 4, 2, 1, bias=False), ncf),
            *_block(nn.Conv2d(ncf, 2 * ncf, 4, 2, 1, bias=False), 2 * ncf),
            *_block(nn.Conv2d(2 * ncf, 4 * ncf, 3, 1, 0, bias=False), 4 * ncf),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.penultimate = nn.Sequential(
            nn.Linear(4 * ncf, 2 * ncf), nn.LeakyReLU(0.2, inplace=True), nn.Dropout(dropout)
        )
        self.classifier = nn.Linear(2 * ncf, num_outputs)
        self.num_features = 2 * ncf


class Report32Classifier(_FeatureHeadClassifier):
    """Section 5.1: five conv blocks with growing dropout, pool, Linear-LeakyReLU-Dropout, Linear."""

    def __init__(self, num_outputs: int, in_channels: int = 3, ncf: int = 64, dropout: float = 0.5):
        validate_params(dict(num_outputs=num_outputs, in_channels=in_channels, ncf=ncf, dropout=dropout),
                        ARCH_CONSTRAINTS, type(self).__name__)
        super().__init__()
        self.body = nn.Sequential(
            *_block(nn.Conv2d(in_channels, ncf, 4, 2, 1, bias=False), ncf, 0.2),
            *_block(nn.Conv2d(ncf, ncf, 3, 1, 1, bias=False), ncf),
            *_block(nn.Conv2d(ncf, 2 * ncf, 4, 2, 1, bias=False), 2 * ncf, 0.3),
            *_block(nn.Conv2d(2 * ncf, 2 * ncf, 3, 1, 1, bias=False), 2 * ncf),
            *_block(nn.Conv2d(2 * ncf, 4 * ncf, 4, 2, 1, bias=False), 4 * ncf, 0.4),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.penultimate = nn.Sequential(
            nn.Linear(4 * ncf, 4 * ncf), nn.LeakyReLU(0.2, inplace=True), nn.Dropout(dropout)
        )
        self.classifier = nn.Linear(4 * ncf, num_outputs)
        self.num_features = 4 * ncf


class _ConditionalGenerator(nn.Module):
    """Stem (to an intermediate map), optional matrix injection, then the upsampling tail."""

    def __init__(self, num_outputs: int, nz: int, conditioning: str, stem: nn.Sequential,
                 mid_channels: int, tail: nn.Sequential, out_shape: tuple[int, int, int]):
        super().__init__()
        self.num_outputs, self.nz, self.conditioning = num_outputs, nz, conditioning
        self.out_shape = out_shape
        self.uses_vector = conditioning in ("vector", "vector-matrix")
        self.uses_matrix = conditioning in ("matrix", "vector-matrix")
        self.embed = nn.Linear(num_outputs, nz) if self.uses_vector else None
        self.stem, self.tail = stem, tail
        self.mix = (
            nn.Sequential(nn.Conv2d(mid_channels + 1, mid_channels, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True))
            if self.uses_matrix else None
        )

    def forward(self, z: Tensor, vector: Tensor | None = None, matrix: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            if vector is None:
                raise InvalidArgumentError(f"{self.conditioning!r} conditioning needs a conditioning vector")
            code = torch.cat([z, self.embed(vector)], dim=1)
        else:
            code = z
        h = self.stem(code[:, :, None, None])
        if self.mix is not None:
            if matrix is None:
                raise InvalidArgumentError(f"{self.conditioning!r} conditioning needs a conditioning matrix")
            size = h.shape[-2:]
            n = matrix.shape[-1]
            h = F.interpolate(h, size=(n, n), mode="bilinear", align_corners=False)
            h = self.mix(torch.cat([h, matrix], dim=1))
            h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
        return self.tail(h)


class Report28Generator(_ConditionalGenerator):
    """Section 4.2: 1x1 -> 4x4 -> 8x8 -> 14x14 -> 28x28 transposed convolutions, Tanh."""

    def __init__(self, num_outputs: int, nz: int = 100, out_channels: int = 1, ngf: int = 64,
                 conditioning: str = "vector"):
        """:param num_outputs: the conditioning's size: the classifier's outputs (K + 1 with the
            garbage output)"""
        validate_params(dict(num_outputs=num_outputs, nz=nz, out_channels=out_channels, ngf=ngf,
                             conditioning=conditioning), ARCH_CONSTRAINTS, type(self).__name__)
        in_ch = 2 * nz if conditioning in ("vector", "vector-matrix") else nz
        stem = nn.Sequential(
            *_block(nn.ConvTranspose2d(in_ch, 4 * ngf, 4, 1, 0, bias=False), 4 * ngf),
            *_block(nn.ConvTranspose2d(4 * ngf, 2 * ngf, 4, 2, 1, bias=False), 2 * ngf),
        )
        tail = nn.Sequential(
            *_block(nn.ConvTranspose2d(2 * ngf, ngf, 4, 2, 2, bias=False), ngf),
            nn.ConvTranspose2d(ngf, out_channels, 4, 2, 1, bias=False),
            nn.Tanh(),
        )
        super().__init__(num_outputs, nz, conditioning, stem, 2 * ngf, tail, (out_channels, 28, 28))


class Report32Generator(_ConditionalGenerator):
    """Section 5.2: 1x1 -> 4x4 -> 8x8 -> 16x16 -> 32x32 transposed convolutions, Tanh."""

    def __init__(self, num_outputs: int, nz: int = 100, out_channels: int = 3, ngf: int = 64,
                 conditioning: str = "vector"):
        """:param num_outputs: the conditioning's size: the classifier's outputs (K + 1 with the
            garbage output)"""
        validate_params(dict(num_outputs=num_outputs, nz=nz, out_channels=out_channels, ngf=ngf,
                             conditioning=conditioning), ARCH_CONSTRAINTS, type(self).__name__)
        in_ch = 2 * nz if conditioning in ("vector", "vector-matrix") else nz
        stem = nn.Sequential(
            *_block(nn.ConvTranspose2d(in_ch, 8 * ngf, 4, 1, 0, bias=False), 8 * ngf),
            *_block(nn.ConvTranspose2d(8 * ngf, 4 * ngf, 4, 2, 1, bias=False), 4 * ngf),
        )
        tail = nn.Sequential(
            *_block(nn.ConvTranspose2d(4 * ngf, 2 * ngf, 4, 2, 1, bias=False), 2 * ngf),
            nn.ConvTranspose2d(2 * ngf, out_channels, 4, 2, 1, bias=False),
            nn.Tanh(),
        )
        super().__init__(num_outputs, nz, conditioning, stem, 4 * ngf, tail, (out_channels, 32, 32))
