import pytest
import torch
import torch.nn.functional as F


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def digits28():
    """scikit-learn's bundled digits, resized to 1x28x28 in [-1, 1] (no download needed)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False) * 2 - 1
    return x.clamp(-1, 1), torch.tensor(d.target, dtype=torch.long)
