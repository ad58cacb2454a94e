"""The small task the peer tests (FIG, BAL) pretrain on: K image templates plus noise; the
classifier trained on it; a fixed linear classifier on identity features."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from niood_plugin.models import build_classifier

K = 4
SHAPE = (1, 28, 28)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is faster than two on a shared 2-core machine.  Function-scoped
    so that it runs after conftest's autouse thread setting (import it into a test module)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def template_data(n: int, seed: int = 0):
    """K class templates plus noise in [-1, 1]: an easy, learnable 28x28 task."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand((K, *SHAPE), generator=g) * 2 - 1
    y = torch.arange(n) % K
    x = (0.6 * templates[y] + 0.4 * (torch.rand((n, *SHAPE), generator=g) * 2 - 1)).clamp(-1, 1)
    return x, y


def train_template_model(n: int = 200) -> nn.Module:
    """A report28 classifier (ncf=8) trained 3 epochs on ``template_data(n)`` with Adam (lr 1e-2,
    batch 50, one thread, seed 0); in eval mode, gradients cleared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped fixtures call this before the function-scoped one_thread
    try:
        torch.manual_seed(0)
        x, y = template_data(n)
        model = build_classifier("report28", num_outputs=K, in_channels=1, ncf=8)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(3):
            for i in range(0, n, 50):
                loss = F.cross_entropy(model(x[i:i + 50]), y[i:i + 50])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    model.zero_grad(set_to_none=True)
    return model


class LinearOnIdentity(nn.Module):
    """``features()`` is the identity on D-d vectors; ``head()`` the fixed linear map ``weight``
    ``[C, D]``, ``bias`` ``[C]`` (a classifier in the shape the peers expect)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.lin = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.lin.weight.copy_(weight)
            self.lin.bias.copy_(bias)

    def features(self, x):
        return x

    def head(self, f):
        return self.lin(f)

    def forward(self, x):
        return self.head(self.features(x))
