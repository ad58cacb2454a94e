"""The small task the peer tests (FIG, BAL) pretrain on: K image templates plus noise."""
from __future__ import annotations

import pytest
import torch

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
