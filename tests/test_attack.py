"""Tests of niood_plugin.attack (package): the OOD attack (Algorithm 1), the adaptive attack and MAPE."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from niood_plugin.attack import (adaptive_attack, garbage_prob_score_fn, mape, ood_attack,
                                 pair_targets, project, run_attack, ue_score_fn,
                                 uncertainty_score)
from niood_plugin.models import build_classifier


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The models are tiny: one thread avoids contention with other work on the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _report28(seed: int = 0, head_scale: float = 1.0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_classifier("report28", num_outputs=11, in_channels=1, ncf=8)
    if head_scale != 1.0:  # spread the logits of the untrained model so scores are not ~uniform
        with torch.no_grad():
            model.classifier.weight.mul_(head_scale)
            model.classifier.bias.zero_()
    return model.eval()


class TinyEncoder(nn.Module):
    """A cheap conv encoder (no ``features`` method: used as a plain callable)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 7 * 7, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _images(n: int, seed: int, size: int = 28) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 1, size, size), generator=g) * 2 - 1


def _dist(x: torch.Tensor, y: torch.Tensor, norm: str) -> torch.Tensor:
    d = (x - y).flatten(1)
    return d.abs().amax(dim=1) if norm == "linf" else d.norm(dim=1)


# --------------------------------------------------------------------------------------
# feature matching
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm,eps", [("linf", 1.0), ("l2", 28.0)])
def test_attack_cuts_feature_distance_tenfold(norm: str, eps: float) -> None:
    model = _report28()
    x_in, x_start = _images(4, 1), _images(4, 2)
    x_out = ood_attack(model, x_in, x_start, eps, norm, steps=50, lr=0.02,
                       generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z_in = model.features(x_in)
        before = (model.features(x_start) - z_in).norm(dim=1)
        after = (model.features(x_out) - z_in).norm(dim=1)
    assert (after * 10 < before).all(), (before / after)
    assert not x_out.requires_grad
    assert (_dist(x_out, x_start, norm) <= eps + 1e-5).all()


def test_plain_callable_encoder_and_logits() -> None:
    """A callable without ``features`` is used as is (here: matching logits, as in the paper's ODIN run)."""
    model = _report28()
    x_in, x_start = _images(4, 3), _images(4, 4)
    x_out = ood_attack(model.forward, x_in, x_start, 0.5, "linf", steps=40, lr=0.01)
    with torch.no_grad():
        before = (model(x_start) - model(x_in)).norm(dim=1)
        after = (model(x_out) - model(x_in)).norm(dim=1)
    assert (after * 5 < before).all()


def test_perturbation_never_exceeds_eps() -> None:
    """Many random small budgets and aggressive learning rates: the ball holds."""
    encoder = TinyEncoder().eval()
    g = torch.Generator().manual_seed(123)
    reached = 0
    for case in range(40):
        norm = "linf" if case % 2 else "l2"
        eps = float(torch.rand((), generator=g)) * (0.2 if norm == "linf" else 2.0) + 1e-3
        lr = float(10 ** (torch.rand((), generator=g) * 2 - 2))  # 0.01 .. 1
        # many pixels exactly at +-1, so the box clamp is active too
        x_start = (torch.randn((3, 1, 14, 14), generator=g) * 1.5).clamp(-1, 1)
        x_in = torch.rand((3, 1, 14, 14), generator=g) * 2 - 1
        x_out = ood_attack(encoder, x_in, x_start, eps, norm, steps=4, lr=lr,
                           random_init=bool(case % 3), generator=g, keep_best=bool(case % 4),
                           normalize_grad=bool(case % 5))
        dist = _dist(x_out, x_start, norm)
        assert (dist <= eps + 1e-5).all(), (case, norm, eps, dist)
        reached += int((dist > 0.5 * eps).any())
    assert reached >= 10  # the bound was actually tested, not trivially met


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_project_lands_on_the_ball(norm: str) -> None:
    g = torch.Generator().manual_seed(0)
    x_start = torch.zeros(5, 3, 8, 8)
    delta = torch.randn((5, 3, 8, 8), generator=g) * 3
    out = project(delta, x_start, 0.05, norm)
    assert torch.allclose(_dist(out, torch.zeros_like(out), norm), torch.full((5,), 0.05), atol=1e-6)
    if norm == "l2":  # a scaled copy, not a clipped one
        assert torch.allclose(out, delta * (0.05 / delta.flatten(1).norm(dim=1)).view(-1, 1, 1, 1), atol=1e-7)
    small = delta * 1e-4
    assert torch.allclose(project(small, x_start, 0.05, norm), small)  # inside: untouched
    start = torch.ones(5, 3, 8, 8)
    assert (project(delta, start, 0.05, norm) + start).max() <= 1  # the box


def test_eps_zero_returns_start() -> None:
    model = _report28()
    x_in, x_start = _images(2, 5), _images(2, 6)
    assert torch.equal(ood_attack(model, x_in, x_start, 0.0, "l2", steps=3), x_start)


def test_seeded_generator_is_reproducible() -> None:
    model = _report28()
    x_in, x_start = _images(3, 7), _images(3, 8)
    run = lambda seed: ood_attack(model, x_in, x_start, 0.2, "linf", steps=5,  # noqa: E731
                                  generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_samples_do_not_interact() -> None:
    """Per-sample losses, h and eval-mode BN: a sample's result ignores its batch mates."""
    model = _report28()
    x_in, x_start = _images(4, 9), _images(4, 10)
    full = ood_attack(model, x_in, x_start, 3.0, "l2", steps=15, random_init=False)
    part = ood_attack(model, x_in[:2], x_start[:2], 3.0, "l2", steps=15, random_init=False)
    assert torch.allclose(full[:2], part, atol=1e-4)


def test_encoder_is_left_as_it_was() -> None:
    model = _report28()
    model.train()
    model.penultimate.eval()  # a mixed state must come back as it was
    bn = model.body[1]
    running = bn.running_mean.clone()
    x_out = ood_attack(model, _images(4, 11), _images(4, 12), 0.3, "linf", steps=5)
    assert model.training and not model.penultimate.training and model.body.training
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(bn.running_mean, running)  # ran in eval mode: no BN statistics update
    # eval-mode features were matched: with dropout active the result would be random
    assert x_out.shape == (4, 1, 28, 28)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda() -> None:
    model = _report28().cuda()
    x_in, x_start = _images(4, 13).cuda(), _images(4, 14).cuda()
    x_out = ood_attack(model, x_in, x_start, 1.0, "linf", steps=50, generator=torch.Generator().manual_seed(0))
    assert x_out.is_cuda
    with torch.no_grad():
        z_in = model.features(x_in)
        assert ((model.features(x_out) - z_in).norm(dim=1) * 10
                < (model.features(x_start) - z_in).norm(dim=1)).all()
    x_adv, values = run_attack(model, x_in.cpu(), x_start.cpu(), 1.0, "l2", steps=5, batch_size=3)
    assert x_adv.device.type == "cpu" and values.shape == (4,)


# --------------------------------------------------------------------------------------
# adaptive attack and scores
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("make_score", [
    lambda m: ue_score_fn(m, garbage_index=10),
    lambda m: ue_score_fn(m),
    lambda m: garbage_prob_score_fn(m, garbage_index=10),
], ids=["ue-garbage", "ue", "p-garbage"])
@pytest.mark.parametrize("norm,eps", [("linf", 0.3), ("l2", 3.0)])
def test_adaptive_attack_lowers_score(make_score, norm: str, eps: float) -> None:
    model = _report28(head_scale=50.0)
    score = make_score(model)
    x_start = _images(6, 15)
    x_out = adaptive_attack(score, x_start, eps, norm, steps=25, lr=0.01,
                            generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before, after = score(x_start), score(x_out)
    assert after.mean() < 0.8 * before.mean(), (before.mean(), after.mean())
    assert (_dist(x_out, x_start, norm) <= eps + 1e-5).all()
    assert all(p.grad is None for p in model.parameters())


def test_uncertainty_score_formula() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    # garbage = 2: p_g = 0.2, ID probs (0.625, 0.375), K = 2: UE_id = 2 (1 - 0.53125) = 0.9375
    assert torch.allclose(uncertainty_score(logits, 2), torch.tensor([1 - 0.8 * 0.0625]))
    # no garbage class: K = 3, UE = 1.5 (1 - 0.38) = 0.93
    assert torch.allclose(uncertainty_score(logits), torch.tensor([0.93]))
    uniform, peaked = torch.zeros(1, 4), torch.tensor([[30.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(uncertainty_score(uniform), torch.ones(1))
    assert uncertainty_score(peaked).item() < 1e-6
    assert torch.allclose(uncertainty_score(torch.tensor([[0.0, 0.0, 30.0]]), garbage_index=2), torch.ones(1))


# --------------------------------------------------------------------------------------
# MAPE
# --------------------------------------------------------------------------------------
def test_mape_hand_computed() -> None:
    z_in = torch.tensor([[1.0, -4.0, 2.0], [0.5, 0.5, -0.25]])
    z_out = torch.tensor([[2.0, -8.0, 0.0], [0.5, 0.5, -0.25]])
    # row 0: mean(|1|, |4|, |2|) = 7/3, max|z_in| = 4 -> 7/12; row 1: equal vectors -> 0
    assert torch.allclose(mape(z_out, z_in), torch.tensor([7 / 12, 0.0]))
    # not symmetric: normalised by max|z_in| only (here 8)
    assert torch.allclose(mape(z_in[:1], z_out[:1]), torch.tensor([7 / 24]))
    one = mape(torch.tensor([0.0, 3.0]), torch.tensor([1.0, -2.0]))  # (1 + 5) / 2 / 2
    assert one.shape == () and math.isclose(one.item(), 1.5)
    maps = mape(torch.ones(2, 2, 2), torch.full((2, 2, 2), 2.0))  # flattened per sample
    assert torch.allclose(maps, torch.full((2,), 0.5))


# --------------------------------------------------------------------------------------
# run_attack
# --------------------------------------------------------------------------------------
def test_run_attack_pairs_and_reports_mape() -> None:
    model = _report28()
    id_images, ood_images = _images(6, 16), _images(5, 17)
    x_adv, values = run_attack(model, id_images, ood_images, 1.0, "linf", steps=30, lr=0.02,
                               batch_size=2, seed=3)
    assert x_adv.shape == ood_images.shape and values.shape == (5,)
    targets = pair_targets(5, 6, seed=3)
    assert len(set(targets.tolist())) == 5  # distinct targets when there are enough
    with torch.no_grad():
        expected = mape(model.features(x_adv), model.features(id_images[targets]))
        start = mape(model.features(ood_images), model.features(id_images[targets]))
    assert torch.allclose(values, expected, rtol=1e-4, atol=1e-7)
    assert (values * 10 < start).all()
    again, _ = run_attack(model, id_images, ood_images, 1.0, "linf", steps=30, lr=0.02,
                          batch_size=2, seed=3)
    assert torch.equal(x_adv, again)


def test_run_attack_adaptive_and_replacement() -> None:
    model = _report28(head_scale=50.0)
    score = ue_score_fn(model, garbage_index=10)
    id_images, ood_images = _images(2, 18), _images(6, 19)
    x_adv, values = run_attack(model, id_images, ood_images, 2.0, "l2", steps=20, batch_size=4,
                               score_fn=score)
    assert x_adv.shape == ood_images.shape and values.shape == (6,) and torch.isfinite(values).all()
    with torch.no_grad():
        assert score(x_adv).mean() < score(ood_images).mean()
    assert set(pair_targets(6, 2, seed=0).tolist()) <= {0, 1}


# --------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------
_X = torch.zeros(2, 1, 28, 28)


@pytest.mark.parametrize("kwargs,match", [
    (dict(x_start=torch.zeros(3, 1, 28, 28)), "same shape"),
    (dict(eps=-0.1), "eps"),
    (dict(eps=float("nan")), "eps"),
    (dict(norm="l3"), "norm"),
    (dict(steps=0), "steps"),
    (dict(steps=2.5), "steps"),
    (dict(steps=True), "steps"),  # a bool is never a number
    (dict(eps=True), "eps"),
    (dict(lr=0.0), "lr"),
    (dict(x_start=torch.full((2, 1, 28, 28), 2.0)), r"\[-1, 1\]"),
    (dict(x_in=torch.zeros(28)), "batch"),
    (dict(x_in=torch.zeros(2, 1, 28, 28, dtype=torch.long)), "floating"),
])
def test_ood_attack_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    args = dict(x_in=_X, x_start=_X, eps=0.1, norm="l2", steps=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ood_attack(_report28(), **args)


def test_other_bad_arguments() -> None:
    model = _report28()
    with pytest.raises(ValueError, match="norm"):
        adaptive_attack(ue_score_fn(model), _X, 0.1, norm="L2")
    with pytest.raises(ValueError, match="one value per sample"):
        adaptive_attack(lambda x: model(x).sum(), _X, 0.1, steps=2)
    with pytest.raises(ValueError, match="differentiabl"):
        adaptive_attack(lambda x: model(x.detach())[:, 0], _X, 0.1, steps=2)
    with pytest.raises(ValueError, match="out of range"):
        garbage_prob_score_fn(model, 11)(_X)
    with pytest.raises(ValueError, match="garbage_index"):
        ue_score_fn(model, garbage_index=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same shape"):
        mape(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="batch_size"):
        run_attack(model, _X, _X, 0.1, batch_size=0)
    with pytest.raises(ValueError, match="differ in shape"):
        run_attack(model, _X, torch.zeros(2, 1, 14, 14), 0.1)
    with pytest.raises(TypeError, match="callable"):
        ood_attack(object(), _X, _X, 0.1)  # type: ignore[arg-type]
