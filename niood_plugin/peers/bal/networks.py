"""BAL's conditional networks on feature vectors: the generator :math:`G(z; c)` and the
discriminator :math:`D(f; c)`, both working in standardised feature units."""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FeatureGenerator", "FeatureDiscriminator"]


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
