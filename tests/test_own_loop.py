"""The method as parts: ``examples/own_loop.py`` (a plain PyTorch loop with GarbageSampler and
pytorch-ood's BackgroundClassLoss) trains what InversionTrainer trains."""
import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from niood_plugin import GarbageSampler, InversionTrainer, Negatives
from niood_plugin.errors import CallOrderError, CheckpointError, InvalidArgumentError
from niood_plugin.models import build_classifier
from niood_plugin.presets import get_preset

EXAMPLE = Path(__file__).parent.parent / "examples" / "own_loop.py"
TINY = dict(get_preset("smoke").garbage, inversion_steps=3, samples_per_step=66, latent_dim=8, generator_width=8,
            progress=False)


def _example():
    spec = importlib.util.spec_from_file_location("own_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _loader(x, y):
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(3))


def _classifier():
    torch.manual_seed(0)
    return build_classifier("report28", num_outputs=11, in_channels=1, ncf=8)


def test_own_loop_trains_what_the_trainer_trains(digits28):
    x, y = digits28[0][:480], digits28[1][:480]
    ours = _example().train(_classifier(), _loader(x, y), seed=0, epochs=2, lr=3e-3, negatives=None, **TINY)
    garbage = GarbageSampler(10, (1, 28, 28), negatives=None, channels_last=False, seed=0, **TINY)
    trainer = InversionTrainer(_classifier(), garbage, epochs=2, lr=3e-3, lr_schedule="constant", weighted_ce=False,
                               channels_last=False, progress=False, seed=0)
    trainer.fit(_loader(x, y))
    for name, v in trainer.classifier.state_dict().items():
        assert torch.equal(v, ours.state_dict()[name]), name
    with torch.no_grad():
        assert not torch.equal(ours(x[:8]), _classifier().eval()(x[:8]))  # it trained


def test_sampler_serves_noise_then_pool_in_equal_shares(digits28):
    garbage = GarbageSampler(10, (1, 28, 28), seed=0, **TINY)
    assert garbage.start(torch.full((10,), 50), epochs=2) == 50 and len(garbage) == 50
    shares = list(garbage.epoch(7))
    assert [g.shape[0] for g in shares] == [8] * 6 + [2] and all(g.abs().max() <= 1 for g in shares)
    torch.manual_seed(0)
    clf = build_classifier("report28", num_outputs=11, in_channels=1, ncf=8)
    stats = garbage.refresh(clf)
    assert len(garbage.pool) == 66 and len(garbage) == 116 and "inversion_loss" in stats
    assert sum(g.shape[0] for g in garbage.epoch(5)) == 116
    restored = GarbageSampler(10, (1, 28, 28), seed=0, **TINY)
    restored.load_state_dict(garbage.state_dict())
    assert torch.equal(restored.raw(), garbage.raw())
    assert torch.equal(next(restored.epoch(3)), next(garbage.epoch(3)))  # the same random stream


def test_sampler_serves_negatives_in_their_epochs_only(digits28):
    garbage = GarbageSampler(10, (1, 28, 28), negatives=Negatives("warp", per_image=1, last_epochs=1), **TINY)
    garbage.start(torch.full((10,), 5), epochs=2)
    x = digits28[0][:16]
    assert garbage.make_negatives(x, 1) is None and not garbage.negatives_active(0)  # epochs = 2: only the last
    neg = garbage.make_negatives(x, 2)
    assert neg.shape == x.shape and not torch.equal(neg, x)
    with pytest.raises(ValueError):
        GarbageSampler(10, (3, 8, 8), negatives=Negatives("jigsaw", grid=16), **TINY)


def test_sampler_used_out_of_order_says_what_to_call_first():
    garbage = GarbageSampler(10, (1, 28, 28), seed=0, **TINY)
    for call in (lambda: garbage.epoch(3), lambda: garbage.refresh(_classifier()),
                 lambda: garbage.make_negatives(torch.zeros(2, 1, 28, 28), 1), garbage.state_dict):
        with pytest.raises(CallOrderError, match=r"start\(class_counts, epochs\) first"):
            call()
    garbage.start(torch.full((10,), 5), epochs=2)
    for bad in (-1, 0, 2.5):
        with pytest.raises(ValueError, match="num_batches"):
            garbage.epoch(bad)


@pytest.mark.parametrize("counts", [torch.full((9,), 5), torch.zeros(10), torch.full((10,), 2.5), [-1] + [5] * 9,
                                    torch.zeros(10, dtype=torch.long)])
def test_sampler_start_checks_the_class_counts(counts):
    with pytest.raises(InvalidArgumentError, match="class_counts"):
        GarbageSampler(10, (1, 28, 28), **TINY).start(counts, epochs=2)


def test_sampler_refuses_a_state_that_is_not_its_own():
    garbage = GarbageSampler(10, (1, 28, 28), seed=0, **TINY)
    garbage.start(torch.full((10,), 5), epochs=2)
    state = garbage.state_dict()
    other = GarbageSampler(10, (3, 32, 32), seed=0, **TINY)
    with pytest.raises(CheckpointError, match="another data set or image size"):
        other.load_state_dict(state)
    with pytest.raises(CheckpointError, match="not a GarbageSampler state"):
        GarbageSampler(10, (1, 28, 28), **TINY).load_state_dict({"classifier": 1})
    restored = GarbageSampler(10, (1, 28, 28), seed=0, **TINY)
    restored.load_state_dict(state)  # a fitting state continues the run: epoch() works without start()
    assert sum(g.shape[0] for g in restored.epoch(2)) == len(garbage)


def test_sampler_refresh_refuses_a_classifier_without_the_garbage_output():
    garbage = GarbageSampler(10, (1, 28, 28), seed=0, **TINY)
    garbage.start(torch.full((10,), 5), epochs=2)
    torch.manual_seed(0)
    k_way = build_classifier("report28", num_outputs=10, in_channels=1, ncf=8)
    with pytest.raises(InvalidArgumentError, match="needs 11"):
        garbage.refresh(k_way)
