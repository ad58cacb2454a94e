import pytest
import torch
import torch.nn.functional as F


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture(autouse=True)
def _fp32_on_the_cpu(request, monkeypatch):
    """Recipes with ``amp`` train in bf16 on CPUs that compute it natively (AVX512-BF16, AMX) and
    in fp32 elsewhere; the tests pin fp32 on the CPU, so that they pass alike on both kinds of
    machine.  Tests marked ``bf16_cpu`` see the machine as it is (or set it themselves)."""
    if request.node.get_closest_marker("bf16_cpu") is None:
        from niood_plugin import recipes

        real = recipes.fast_bf16
        monkeypatch.setattr(recipes, "fast_bf16", lambda device: real(device) and torch.device(device).type != "cpu")
    yield


@pytest.fixture(scope="session")
def digits28():
    """scikit-learn's bundled digits, resized to 1x28x28 in [-1, 1] (no download needed)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False) * 2 - 1
    return x.clamp(-1, 1), torch.tensor(d.target, dtype=torch.long)
