import pytest
import torch

from niood_plugin.pool import GarbagePool, dequantize, quantize


def batch(values):
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1)


def test_quantization_roundtrip():
    x = torch.linspace(-1, 1, 1001).view(-1, 1, 1, 1)
    assert float((dequantize(quantize(x)) - x).abs().max()) <= 1 / 255 + 1e-6
    assert quantize(x).dtype == torch.uint8


def test_all_policy_keeps_everything_and_refuses_overflow():
    pool = GarbagePool((1, 1, 1), capacity=5, policy="all")
    pool.add(batch([-1, 0, 1]))
    assert len(pool) == 3
    with pytest.raises(RuntimeError, match="full"):
        pool.add(batch([0, 0, 0]))
    unbounded = GarbagePool((1, 1, 1), capacity=None, policy="all")
    for _ in range(10):
        unbounded.add(batch([0.0] * 100))
    assert len(unbounded) == 1000


def test_fifo_keeps_newest():
    pool = GarbagePool((1, 1, 1), capacity=3, policy="fifo")
    pool.add(batch([-1.0, -0.5]))
    pool.add(batch([0.0, 0.5, 1.0]))
    kept = sorted(round(v, 2) for v in pool.images().flatten().tolist())
    assert kept == [0.0, 0.5, 1.0]
    assert pool.seen == 5


def test_reservoir_is_uniform_and_bounded():
    counts = torch.zeros(100)
    for seed in range(200):
        pool = GarbagePool((1, 1, 1), capacity=10, policy="reservoir", seed=seed)
        for start in range(0, 100, 25):  # 4 batches of 25 items, item i has value i
            vals = torch.arange(start, start + 25, dtype=torch.float32) / 127.5 - 1
            pool.add(vals.view(-1, 1, 1, 1))
        assert len(pool) == 10
        ids = pool.raw().flatten().long()
        counts[ids] += 1
    # each item kept with probability 10/100 -> expected 20 of 200; early and late items alike
    assert abs(counts[:50].mean().item() - 20) < 3 and abs(counts[50:].mean().item() - 20) < 3


def test_state_roundtrip_and_bad_arguments():
    pool = GarbagePool((1, 2, 2), capacity=4, policy="fifo")
    pool.add(torch.rand(6, 1, 2, 2) * 2 - 1)
    other = GarbagePool((1, 2, 2), capacity=4, policy="fifo")
    other.load_state_dict(pool.state_dict())
    assert torch.equal(other.raw(), pool.raw()) and other.seen == 6
    with pytest.raises(ValueError):
        GarbagePool((1, 2, 2), capacity=8, policy="fifo").load_state_dict(pool.state_dict())
    with pytest.raises(ValueError, match="capacity"):
        GarbagePool((1,), capacity=None, policy="fifo")
    with pytest.raises(ValueError, match="policy"):
        GarbagePool((1,), policy="lru")
    with pytest.raises(ValueError, match="shape"):
        pool.add(torch.zeros(1, 1, 3, 3))



