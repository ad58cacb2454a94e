"""Inputs that used to fail deep inside torch fail at our checks, with one line that names the
argument (or work, where they obviously should)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from niood_plugin.errors import InvalidArgumentError, InvalidTypeError, NioodError
from niood_plugin.models import (Report28Classifier, Report28Generator, Report32Generator, build_classifier,
                                 build_generator)
from niood_plugin.negatives import Negatives, check_negatives
from niood_plugin.training import check_image_shape


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and isinstance(exc, NioodError), text
    return text


# -- models ---------------------------------------------------------------------------------
@pytest.mark.parametrize("build", [
    lambda: build_classifier("report28", num_outputs=11.0, in_channels=1),
    lambda: build_classifier("resnet10-cifar", num_outputs=11.5, in_channels=3),
    lambda: build_classifier("report28", num_outputs=11, in_channels=1.0),
    lambda: build_classifier("report28", num_outputs=True, in_channels=1),
    lambda: build_generator("report28", num_outputs=11.0),
    lambda: build_generator("report28", 11, nz=100.0),
    lambda: Report28Classifier(11.0),
    lambda: Report28Generator(11.0),
    lambda: Report32Generator(11, conditioning="scalar"),
])
def test_non_integer_sizes_are_refused_by_name(build):
    with pytest.raises(ValueError) as info:
        build()
    text = _one_line(info.value)
    assert any(name in text for name in ("num_outputs", "in_channels", "nz", "conditioning")), text


def test_a_model_name_must_be_a_string():
    with pytest.raises(ValueError, match="name must be"):
        build_classifier(None, 11, 1)  # type: ignore[arg-type]


def test_numpy_integer_sizes_work():
    clf = build_classifier("report28", num_outputs=np.int64(11), in_channels=np.int64(1), ncf=4)
    assert clf(torch.zeros(2, 1, 28, 28)).shape == (2, 11)
    gen = build_generator("report28", np.int64(11), nz=np.int64(8), ngf=4)
    assert gen.num_outputs == 11


# -- image_shape ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [np.array([1, 28, 28]), np.array([1, 28, 28], dtype=np.int32),
                                   (np.int64(1), np.int64(28), np.int64(28)), torch.Size([1, 28, 28]), [1, 28, 28]])
def test_image_shape_of_integers_is_accepted_as_plain_ints(shape):
    out = check_image_shape(shape)
    assert out == (1, 28, 28) and all(type(s) is int for s in out)


@pytest.mark.parametrize("shape", [np.array([1.0, 28.0, 28.0]), np.array([[1, 28, 28]]), np.array([1, 28]),
                                   np.array([0, 28, 28]), (1, 28, 28.0), "1x28x28", (True, 28, 28)])
def test_other_image_shapes_are_refused(shape):
    with pytest.raises(InvalidArgumentError, match="image_shape must be"):
        check_image_shape(shape)


# -- negatives ------------------------------------------------------------------------------------
def test_negatives_advice_names_the_current_api():
    with pytest.raises(InvalidArgumentError) as info:
        Negatives("rotate").check((1, 28, 32))
    text = _one_line(info.value)
    assert 'Negatives("warp")' in text and "negatives='" not in text
    with pytest.raises(InvalidArgumentError, match="pass grid="):
        check_negatives(("jigsaw",), 5, (1, 28, 28))
    with pytest.raises(InvalidArgumentError) as info:
        check_negatives(("jigsaw",), 1, (1, 28, 28))
    assert "jigsaw_grid" not in str(info.value)  # the parameter is Negatives(grid=...)


# -- the attack's encoder and score ---------------------------------------------------------------
def _x(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _tuple_encoder(x: torch.Tensor):
    return x.flatten(1) * 2, x  # e.g. a model returning (logits, features)


def test_an_encoder_that_returns_a_tuple_is_refused():
    from niood_plugin.attack import ood_attack, run_attack

    with pytest.raises(InvalidTypeError) as info:
        ood_attack(_tuple_encoder, _x(), _x(), 0.1, steps=2)
    assert "encoder returned a tuple" in _one_line(info.value)
    with pytest.raises(InvalidTypeError, match="encoder returned a tuple"):
        run_attack(_tuple_encoder, _x(), _x(), 0.1, steps=2)
    with pytest.raises(InvalidArgumentError, match="one row per image"):
        ood_attack(lambda x: x.sum(), _x(), _x(), 0.1, steps=2)  # one number for the whole batch


def test_an_encoder_of_one_value_per_image_works():
    from niood_plugin.attack import ood_attack

    out = ood_attack(lambda x: x.flatten(1).mean(1), _x(), _x(), 0.1, steps=2)
    assert out.shape == (2, 1, 8, 8)


def test_a_score_that_returns_a_tuple_is_refused():
    from niood_plugin.attack import adaptive_attack, garbage_prob_score_fn

    with pytest.raises(InvalidTypeError, match="one value per sample"):
        adaptive_attack(lambda x: (x.flatten(1).sum(1), x), _x(), 0.1, steps=2)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with pytest.raises(InvalidTypeError, match="returned a tuple"):
        garbage_prob_score_fn(lambda x: (model(x), x), 2)(_x())
    with pytest.raises(ValueError, match="garbage_index"):
        garbage_prob_score_fn(model, -1)  # a negative index would name a class of a K-way model


# -- BAL's loader ---------------------------------------------------------------------------------
def _bal():
    from niood_plugin.peers.bal import BALTrainer

    torch.manual_seed(0)
    clf = build_classifier("report28", num_outputs=3, in_channels=1, ncf=4)
    return BALTrainer(clf, num_classes=3, latent_dim=4, hidden_dim=8, progress=False)


def test_bal_refuses_a_loader_of_dicts():
    x, y = torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 1, 2, 0])
    with pytest.raises(InvalidTypeError) as info:
        _bal().fit([{"data": x, "label": y}], epochs=1)
    text = _one_line(info.value)
    assert "(x, y)" in text and "'data'" in text and "'label'" in text


def test_bal_refuses_labels_it_cannot_embed():
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    with pytest.raises(InvalidArgumentError, match=r"labels must lie in \[0, 3\) \(BALTrainer's num_classes\)"):
        _bal().fit([(x, torch.tensor([0, 1, 2, 3]))], epochs=1)
    with pytest.raises(InvalidTypeError, match="integer class indices"):
        _bal().fit([(x, torch.zeros(4))], epochs=1)
    with pytest.raises(InvalidArgumentError, match="one label per image"):
        _bal().fit([(x, torch.zeros(4, 3, dtype=torch.long))], epochs=1)


def test_bal_trains_on_tuple_batches():
    x, y = torch.rand(8, 1, 28, 28) * 2 - 1, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    history = _bal().fit([(x, y), [x, y, "extra"]], epochs=1)
    assert len(history) == 1


def test_fig_refuses_a_loader_of_dicts():
    from niood_plugin.peers.fig import FIGTrainer

    clf = build_classifier("report28", num_outputs=3, in_channels=1, ncf=4)
    x, y = torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 1, 2, 0])
    with pytest.raises(InvalidTypeError) as info:
        FIGTrainer(clf, 3, (1, 28, 28), progress=False).fit([{"data": x, "label": y}], epochs=1)
    assert "'data'" in _one_line(info.value)
