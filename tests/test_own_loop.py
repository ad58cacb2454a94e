"""The method as parts: ``examples/own_loop.py`` (a plain PyTorch loop with GarbageSampler and
pytorch-ood's BackgroundClassLoss) trains what InversionTrainer trains."""
import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from niood_plugin import GarbageSampler, InversionTrainer
from niood_plugin.models import build_classifier

EXAMPLE = Path(__file__).parent.parent / "examples" / "own_loop.py"
TINY = dict(preset="smoke", inversion_steps=3, samples_per_step=66, latent_dim=8, generator_width=8, epochs=2,
            classifier_lr=3e-3)


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
    ours = _example().train(_classifier(), _loader(x, y), seed=0, **TINY)
    trainer = InversionTrainer(_classifier(), 10, (1, 28, 28), negatives=None, weighted_ce=False, channels_last=False,
                               progress=False, seed=0, **TINY)
    trainer.fit(_loader(x, y))
    for name, v in trainer.classifier.state_dict().items():
        assert torch.equal(v, ours.state_dict()[name]), name
    with torch.no_grad():
        assert not torch.equal(ours(x[:8]), _classifier().eval()(x[:8]))  # it trained


def test_sampler_serves_noise_then_pool_in_equal_shares(digits28):
    garbage = GarbageSampler(10, (1, 28, 28), seed=0, **TINY)
    assert garbage.start(torch.full((10,), 50)) == 50 and len(garbage) == 50
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


def test_sampler_takes_a_config_or_hyperparameters_not_both():
    with pytest.raises(ValueError, match="not both"):
        GarbageSampler(10, (1, 28, 28), config=GarbageSampler(10, (1, 28, 28), **TINY).config, epochs=3)


def test_sampler_serves_negatives_in_their_epochs_only(digits28):
    from niood_plugin import Negatives

    garbage = GarbageSampler(10, (1, 28, 28), negatives=Negatives("warp", per_image=1, last_epochs=1), **TINY)
    x = digits28[0][:16]
    assert garbage.make_negatives(x, 1) is None and not garbage.negatives_active(0)  # epochs = 2: only the last
    neg = garbage.make_negatives(x, 2)
    assert neg.shape == x.shape and not torch.equal(neg, x)
    with pytest.raises(ValueError):
        GarbageSampler(10, (3, 8, 8), negatives=Negatives("jigsaw", grid=16), **TINY)
