"""Small ResNets for 32x32 inputs, built from timm's ``ResNet``.

ImageNet ResNets shrink a 32x32 image to 8x8 before the first residual stage (a 7x7 stride-2
stem and a max-pool).  The usual CIFAR adaptation (He et al. 2016, section 4.2; the CIFAR
ResNet-18 of most OOD papers) keeps the full resolution: a 3x3 stride-1 stem convolution and
no max-pool.  Stage widths are ``(w, 2w, 4w, 8w)``; ``w=64`` is the usual CIFAR ResNet-18,
``w=16`` (our CPU default) costs about 1/16 of it.
"""
from __future__ import annotations

from torch import nn

from .timm_adapter import TimmClassifier, _timm
from ..errors import InvalidArgumentError

__all__ = ["cifar_resnet", "resnet10_cifar", "resnet18_cifar"]


def cifar_resnet(num_outputs: int, in_channels: int = 3, width: int = 16,
                 layers: tuple[int, ...] = (2, 2, 2, 2), **kwargs) -> TimmClassifier:
    """timm's ``ResNet`` with BasicBlocks ``layers``, widths ``(w, 2w, 4w, 8w)``, a 3x3
    stride-1 stem and no max-pool; ``kwargs`` go to timm's ``ResNet`` (e.g. ``drop_rate``)."""
    if width < 2 or width % 2:
        raise InvalidArgumentError(f"width must be an even int >= 2, got {width!r}")
    resnet = _timm().models.resnet
    # A 'deep' stem of width w/2 makes the stem output w channels; it is then replaced by one conv.
    model = resnet.ResNet(resnet.BasicBlock, tuple(layers), num_classes=num_outputs, in_chans=in_channels,
                          channels=tuple(width * m for m in (1, 2, 4, 8)), stem_type="deep",
                          stem_width=width // 2, **kwargs)
    model.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return TimmClassifier(model)


def resnet10_cifar(num_outputs: int, in_channels: int = 3, width: int = 16, **kwargs) -> TimmClassifier:
    """ResNet-10 (one BasicBlock per stage) for 32x32 inputs."""
    return cifar_resnet(num_outputs, in_channels, width, (1, 1, 1, 1), **kwargs)


def resnet18_cifar(num_outputs: int, in_channels: int = 3, width: int = 16, **kwargs) -> TimmClassifier:
    """ResNet-18 (two BasicBlocks per stage) for 32x32 inputs; ``width=64`` is the usual CIFAR ResNet-18."""
    return cifar_resnet(num_outputs, in_channels, width, (2, 2, 2, 2), **kwargs)
