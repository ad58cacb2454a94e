"""Optimisation recipes by name (``niood_plugin.recipes``): the registry, airbench94's recipe
(schedule per step, units per 1,024 examples, bias scaler, label smoothing, Lookahead) in both
training loops, with exact resumes; ``"adam"`` stays today's Adam and per-epoch schedule."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from niood_plugin import Checkpoint, Measure, presets
from niood_plugin.data import BatchLoader, CropFlip, build_augmentation
from niood_plugin.errors import CheckpointError, ConfigError
from niood_plugin.models import build_classifier
from niood_plugin.models.airnet import PatchWhitening, ShiftBatchNorm
from niood_plugin.recipes import (RECIPES, AirbenchRecipe, Lookahead, build_optimisation, get_recipe, list_recipes,
                                  resolve_lr, triangular)
from niood_plugin.training import lr_scheduler, train_plain

from peer_task import K, one_thread, template_data  # noqa: F401  (one_thread: an autouse fixture)

SHAPE = (1, 28, 28)
G = 1 + 1 / (1 - 0.85)  # the paper's gain of a Nesterov step at momentum 0.85
TINY = dict(progress=False, inversion_steps=2, samples_per_step=66, latent_dim=8, generator_width=8)
# (the "smoke" preset names an Adam lr: lr=None takes the airbench recipe's own)


def _airnet(num_outputs=K):
    torch.manual_seed(0)
    return build_classifier("airnet", num_outputs, 1, width=4)


def _drop_times(history):
    return [{k: v for k, v in e.items() if not k.endswith("time_s")} for e in history]


# ---------------------------------------------------------------------------------------- registry

def test_registry_names_the_recipes_and_refuses_unknown_ones():
    assert {"adam", "airbench", "airbench-no-lookahead", "airbench-no-smoothing"} <= set(list_recipes())
    assert get_recipe("adam").default_lr == 3e-3 and get_recipe("airbench").default_lr == 11.5
    assert get_recipe("airbench-no-smoothing").label_smoothing == 0.0
    assert get_recipe("airbench-no-lookahead").lookahead is False
    assert resolve_lr("airbench", None) == 11.5 and resolve_lr("airbench", 2.0) == 2.0
    with pytest.raises(ConfigError, match="unknown recipe 'sgd'; choose one of"):
        get_recipe("sgd")
    clf = _airnet(K + 1)
    with pytest.raises(ConfigError, match="recipe must be one of 'adam', 'airbench'"):
        presets.create("smoke", clf, K, SHAPE, recipe="sgd")
    x, y = template_data(8)
    with pytest.raises(ConfigError, match="train_plain: recipe must be one of"):
        train_plain(_airnet(), DataLoader(TensorDataset(x, y), batch_size=4), 1, None, "cpu", recipe="sgd")
    with pytest.raises(ConfigError, match="batch_size must be"):
        build_optimisation("airbench", clf, steps_per_epoch=2, epochs=1, batch_size=0)


def test_adam_is_adam_with_the_per_epoch_schedule():
    """``"adam"``: torch's Adam over every parameter and ``lr_scheduler`` per epoch, no smoothing:
    the same weights, bit for bit, as building them by hand."""
    x, y = template_data(16)
    runs = []
    for by_hand in (False, True):
        model = _airnet()
        if by_hand:
            opt = torch.optim.Adam(model.parameters(), lr=1e-2)
            sched = lr_scheduler(opt, "cosine", 3)
            step, end = opt.step, sched.step
        else:
            o = build_optimisation("adam", model, steps_per_epoch=2, epochs=3, batch_size=8, lr=1e-2,
                                   lr_schedule="cosine")
            assert (o.per_step, o.label_smoothing, o.lookahead) == (False, 0.0, None)
            opt, step, end = o.optimizer, o.step, o.end_epoch
        for epoch in range(3):
            for b in range(2):
                opt.zero_grad()
                F.cross_entropy(model(x[8 * b:8 * b + 8]), y[8 * b:8 * b + 8]).backward()
                step()
            end()
        runs.append(model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(runs[0].values(), runs[1].values(), strict=True))


# ---------------------------------------------------------------------------------------- airbench

def test_airbench_schedule_warms_up_then_decays_per_step():
    o = build_optimisation("airbench-no-lookahead", _airnet(), steps_per_epoch=10, epochs=10, batch_size=1024)
    assert o.per_step
    peak = o.scheduler.base_lrs[0]
    lrs = []
    for t in range(100):
        lrs.append(o.lr / peak)
        o.step()  # no gradients: only the schedule moves
        if t % 10 == 9:
            o.end_epoch()  # a per-step recipe's schedule ignores epochs
    assert lrs[0] == pytest.approx(0.2) and lrs[23] == pytest.approx(1.0) and max(lrs) == lrs[23]
    assert all(a < b for a, b in zip(lrs[:23], lrs[1:24])) and all(a > b for a, b in zip(lrs[23:], lrs[24:]))
    assert o.lr / peak == pytest.approx(0.07)  # after the last step
    assert o.epochs_done == 10
    f = triangular(100)
    assert [f(0), f(23), f(100)] == pytest.approx([0.2, 1.0, 0.07])


@pytest.mark.parametrize("batch_size", [256, 1024])
def test_airbench_lr_and_weight_decay_are_per_1024_examples(batch_size):
    """SGD's lr is ``lr B / (1024 G)`` (mean loss); the decay per step, lr x weight_decay, is
    ``0.0153 B / (1024 G)`` for the weights and the shifts alike; the BatchNorm shifts learn 64x
    faster; the whitening bias has a group of its own; frozen BatchNorm scales are in none."""
    model = _airnet()
    o = build_optimisation("airbench", model, steps_per_epoch=5, epochs=2, batch_size=batch_size)
    weights, shifts, whiten = o.optimizer.param_groups
    peaks = o.scheduler.base_lrs
    assert peaks[0] == pytest.approx(11.5 * batch_size / (1024 * G))
    assert peaks == pytest.approx([peaks[0], 64 * peaks[0], peaks[0]])
    for group, peak in zip((weights, shifts, whiten), peaks):
        assert peak * group["weight_decay"] == pytest.approx(0.0153 * batch_size / (1024 * G))
        assert group["momentum"] == 0.85 and group["nesterov"]
    bns = [m for m in model.modules() if isinstance(m, ShiftBatchNorm)]
    assert {id(p) for p in shifts["params"]} == {id(m.bias) for m in bns}
    assert [id(p) for p in whiten["params"]] == [id(m.bias) for m in model.modules() if isinstance(m, PatchWhitening)]
    grouped = {id(p) for g in o.optimizer.param_groups for p in g["params"]}
    assert not any(id(m.weight) in grouped for m in bns)  # fixed scale: not trained
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}
    if batch_size == 1024:
        assert peaks[0] == pytest.approx(1.5)  # the paper's 11.5 per 1,024 at its own batch size


def test_airbench_freezes_the_whitening_bias_after_its_epochs():
    o = build_optimisation("airbench", _airnet(), steps_per_epoch=4, epochs=5, batch_size=64)
    for _ in range(11):
        o.step()
    assert o.optimizer.param_groups[2]["lr"] > 0
    o.step()  # step 12 = 3 epochs of 4 steps
    assert o.optimizer.param_groups[2]["lr"] == 0.0 and o.optimizer.param_groups[0]["lr"] > 0
    never = dataclasses.replace(get_recipe("airbench"), whiten_bias_epochs=None)
    o = never(_airnet(), steps_per_epoch=4, epochs=5, batch_size=64)
    for _ in range(19):
        o.step()
    assert o.optimizer.param_groups[2]["lr"] == pytest.approx(o.optimizer.param_groups[0]["lr"])


def test_lookahead_pulls_every_fifth_step_and_ends_on_the_slow_weights():
    p = torch.nn.Parameter(torch.full((1,), 7.0))
    ahead = Lookahead([p], total_steps=10, every=5, decay=0.5)
    with torch.no_grad():
        p.zero_()  # weights loaded (or broadcast by DDP) after the recipe was built
    ahead.start()  # before the first optimiser step: the slow weights start at 0
    for t in range(1, 11):
        with torch.no_grad():
            p += 1.0  # the optimiser's step
        ahead.step()
        if t == 5:  # d = 0.5 (5/10)^3 = 1/16: slow = 0 + 15/16 (5 - 0)
            assert p.item() == pytest.approx(5 * 15 / 16)
    # t = 10, the last step: d = 1, the model takes the slow weights of step 5
    assert p.item() == pytest.approx(5 * 15 / 16)
    assert ahead.steps == 10
    with pytest.raises(CheckpointError, match="Lookahead weights do not fit"):
        ahead.load_state_dict({"steps": 3, "slow": [torch.zeros(2)]})


def test_label_smoothing_reaches_the_plain_loss():
    """One batch, one epoch: the history's loss is the loss of the initial model, which is the
    smoothed cross-entropy with "airbench" and the plain one with "adam"."""
    x, y = template_data(16)
    losses = {}
    for recipe, smoothing in (("airbench", 0.2), ("adam", 0.0)):
        model = _airnet()
        with torch.no_grad():
            model.classifier.weight.mul_(100)  # confident logits: smoothing changes the loss
        before = copy.deepcopy(model).train()
        losses[recipe] = F.cross_entropy(before(x), y, label_smoothing=smoothing).item()
        history = train_plain(model, DataLoader(TensorDataset(x, y), batch_size=16), 1, None, "cpu", recipe=recipe)
        assert history[0]["train_loss"] == pytest.approx(losses[recipe], rel=1e-5)
    assert abs(losses["airbench"] - losses["adam"]) > 0.01  # far beyond the tolerance above


def test_label_smoothing_reaches_the_trainer_loss_with_its_class_weights(digits28, monkeypatch):
    calls = []
    cross_entropy = F.cross_entropy

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return cross_entropy(*args, **kwargs)

    x, y = digits28
    clf = build_classifier("airnet", 11, 1, width=4)
    trainer = presets.create("smoke", clf, 10, SHAPE, recipe="airbench", lr=None, callbacks=[], epochs=1, **TINY)
    monkeypatch.setattr(F, "cross_entropy", spy)
    trainer.fit(DataLoader(TensorDataset(x[:128], y[:128]), batch_size=64))
    ours = [c for c in calls if "label_smoothing" in c]  # the retraining loss (not the inversion's)
    assert ours and all(c["label_smoothing"] == 0.2 and c["weight"].shape == (11,) for c in ours)


# ---------------------------------------------------------------------------------------- both loops

def test_both_loops_train_a_tiny_airnet_with_airbench(digits28):
    x, y = digits28
    torch.manual_seed(0)
    clf = build_classifier("airnet", 11, 1, width=4)
    start = copy.deepcopy(clf.state_dict())
    trainer = presets.create("smoke", clf, 10, SHAPE, recipe="airbench", lr=None, epochs=2, **TINY)
    assert trainer.lr == 11.5 and trainer.get_params()["recipe"] == "airbench"
    history = trainer.fit(DataLoader(TensorDataset(x[:256], y[:256]), batch_size=64, shuffle=True,
                                     generator=torch.Generator().manual_seed(0)))
    o = trainer.optimisation
    assert o.scheduler.last_epoch == 3 * 4 and o.lookahead.steps == 12 and o.epochs_done == 3
    assert [h["lr"] for h in history][0] == pytest.approx(0.2 * 11.5 * 64 / (1024 * G))
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in history)
    assert any(not torch.equal(a, b) for a, b in zip(start.values(), clf.state_dict().values()))

    model = _airnet()
    xs, ys = template_data(128)
    loader = BatchLoader(xs, ys, batch_size=16, shuffle=True, seed=0)
    plain = train_plain(model, loader, 4, None, "cpu", recipe="airbench")
    assert len(plain) == 4 and plain[0]["lr"] == pytest.approx(0.2 * 11.5 * 16 / (1024 * G))
    losses = [h["train_loss"] for h in plain]
    assert losses == sorted(losses, reverse=True) and plain[-1]["train_id_acc"] > 0.5  # the template task is learnt


def test_trainer_resumed_with_airbench_equals_uninterrupted(digits28, tmp_path):
    x, y = digits28

    def make(**kw):
        torch.manual_seed(0)
        clf = build_classifier("airnet", 11, 1, width=4)
        return presets.create("smoke", clf, 10, SHAPE, recipe="airbench", lr=None, epochs=2, **TINY, **kw)

    def loader():
        return DataLoader(TensorDataset(x[:200], y[:200]), batch_size=64, shuffle=True,
                          generator=torch.Generator().manual_seed(0))

    full_trainer = make()
    full = full_trainer.fit(loader())
    ckpt = tmp_path / "run-{epoch}.pt"
    make(callbacks=[Measure(), Checkpoint(ckpt)]).fit(loader())
    assert "lookahead" in torch.load(tmp_path / "run-1.pt", weights_only=True)["state"]
    resumed_trainer = make()
    resumed = resumed_trainer.fit(loader(), resume=tmp_path / "run-1.pt")  # 4 steps per epoch: Lookahead mid-way
    assert _drop_times(resumed) == _drop_times(full)
    for (name, a), b in zip(full_trainer.classifier.state_dict().items(),
                            resumed_trainer.classifier.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


class Interrupted(Exception):
    pass


def test_train_plain_resumed_with_airbench_equals_uninterrupted(tmp_path):
    def run(**kw):
        model = _airnet()
        x, y = template_data(120)
        loader = BatchLoader(x, y, batch_size=30, shuffle=True, seed=0, augment=CropFlip(pad=2))
        torch.manual_seed(1)
        return model, train_plain(model, loader, 3, None, "cpu", recipe="airbench", **kw)

    def stop_at(epoch):
        def on_epoch_end(model, entry):
            if entry["epoch"] == epoch:
                raise Interrupted
        return on_epoch_end

    full_model, full = run()
    ckpt = tmp_path / "run.pt"
    with pytest.raises(Interrupted):  # the file holds epoch 1: 8 of 12 steps, Lookahead pulled at step 5
        run(checkpoint=ckpt, on_epoch_end=stop_at(2))
    state = torch.load(ckpt, weights_only=True)["state"]
    assert state["lookahead"]["steps"] == 8 and state["scheduler"]["last_epoch"] == 8
    model, resumed = run(checkpoint=ckpt, resume=ckpt)
    assert _drop_times(resumed) == _drop_times(full)
    for (name, a), b in zip(full_model.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


# ---------------------------------------------------------------------------------------- presets, harness, augmentation

def test_airbench_preset_and_the_adam_defaults():
    p = presets.get_preset("airbench")
    trainer = p.to_dict()["trainer"]
    assert (trainer["recipe"], trainer["lr"], p.batch_size, p.total_epochs) == ("airbench", 11.5, 1024, 10)
    for name in ("recommended", "fast", "cifar"):
        assert presets.get_preset(name).to_dict()["trainer"]["recipe"] == "adam"
        assert presets.get_preset(name).to_dict()["trainer"]["lr"] == 3e-3
    assert presets.get_preset("airbench").updated(lr=5.0).to_dict()["trainer"]["lr"] == 5.0
    default = presets.get_preset("cifar-airbench")
    assert (default.to_dict()["trainer"]["recipe"], default.batch_size, default.total_epochs) == (
        "airbench-no-smoothing", 1024, 1 + presets.CIFAR_EPOCHS)


def test_harness_whitens_airnet_from_the_id_images_and_passes_the_recipe(tmp_path, monkeypatch):
    from niood_plugin.bench import methods
    from niood_plugin.bench.config import BenchConfig
    from niood_plugin.bench.methods import MethodContext
    from niood_plugin.data import TensorData
    from niood_plugin.models import init_whitening

    x, y = template_data(40)
    cfg = BenchConfig(preset="smoke", classifier="airnet", width=4, hparams={"recipe": "airbench"})
    ctx = MethodContext(cfg=cfg, train=TensorData(x, y, "t"), val=None, num_classes=K, image_shape=SHAPE,
                        device=torch.device("cpu"), progress=False, checkpoint_dir=tmp_path,
                        sample_dir=tmp_path / "s", resume=False, get=lambda m: None)
    assert ctx.train.x.dtype == torch.float32
    model = ctx.new_classifier(K)
    whiten = next(m for m in model.modules() if isinstance(m, PatchWhitening))
    expected = next(m for m in init_whitening(_airnet(), x).modules() if isinstance(m, PatchWhitening))
    assert bool(whiten.fitted) and torch.allclose(whiten.weight, expected.weight)
    seen = {}
    monkeypatch.setattr(methods, "train_plain", lambda *a, **kw: seen.update(kw) or [])
    methods._train_standard(ctx)
    assert seen["recipe"] == "airbench"
    adam = dataclasses.replace(ctx, cfg=BenchConfig(preset="smoke", classifier="airnet", width=4))
    assert methods.cache_key("standard", adam) != methods.cache_key("standard", ctx)  # the recipe keys the model


def test_flip_translate2_is_a_flip_and_a_two_pixel_reflect_translation():
    aug = build_augmentation("flip-translate2")
    assert isinstance(aug, CropFlip) and (aug.pad, aug.flip) == (2, True)
    x = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8).repeat(50, 1, 1, 1)
    out = aug(x, torch.Generator().manual_seed(0))
    shifts = set()
    for a, b in zip(x, out):
        found = [(dy, dx, f) for dy in range(-2, 3) for dx in range(-2, 3) for f in (False, True)
                 if torch.equal(_shift(a, dy, dx, f), b)]
        assert found, "not a flip plus a translation of at most 2 pixels"
        shifts.add(found[0])
    assert len(shifts) > 10  # per-image draws


def _shift(img, dy, dx, flip):
    """``img`` translated by (dy, dx) with reflect padding, then flipped horizontally."""
    padded = F.pad(img[None], (2, 2, 2, 2), mode="reflect")[0]
    h, w = img.shape[1:]
    out = padded[:, 2 + dy:2 + dy + h, 2 + dx:2 + dx + w]
    return out.flip(2) if flip else out


# ---------------------------------------------------------------------------------------- mixed precision

@pytest.mark.bf16_cpu
def test_amp_is_bf16_autocast_where_the_device_computes_it_natively(monkeypatch):
    import contextlib
    import warnings

    from niood_plugin import recipes

    model = _airnet()
    on = build_optimisation("airbench", model, steps_per_epoch=2, epochs=1, batch_size=16)
    off = build_optimisation("airbench-fp32", model, steps_per_epoch=2, epochs=1, batch_size=16)
    assert on.amp and not off.amp and not get_recipe("adam").amp  # adam: fp32 everywhere, as before
    for native in (True, False):
        monkeypatch.setattr(recipes, "fast_bf16", lambda device: native)
        ctx = on.autocast("cpu")
        assert isinstance(ctx, torch.autocast if native else contextlib.nullcontext)
        assert not native or (ctx.fast_dtype == torch.bfloat16 and ctx.device == "cpu")
        assert isinstance(off.autocast("cpu"), contextlib.nullcontext)
    monkeypatch.setattr(recipes, "fast_bf16", lambda device: True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available": built, not entered
        ctx = on.autocast("cuda:0")
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16


@pytest.mark.bf16_cpu
def test_a_bf16_step_on_the_cpu_keeps_fp32_weights_and_statistics_and_learns(monkeypatch):
    from niood_plugin import recipes

    monkeypatch.setattr(recipes, "fast_bf16", lambda device: True)  # emulated where the CPU lacks it
    model = _airnet()
    xs, ys = template_data(128)
    history = train_plain(model, BatchLoader(xs, ys, batch_size=16, shuffle=True, seed=0), 4, None, "cpu",
                          recipe="airbench", channels_last=True)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    bn = [m for m in model.modules() if isinstance(m, ShiftBatchNorm)]
    assert bn and all(m.running_mean.dtype == torch.float32 and torch.isfinite(m.running_var).all() for m in bn)
    monkeypatch.setattr(recipes, "fast_bf16", lambda device: False)
    fp32 = _airnet()
    reference = train_plain(fp32, BatchLoader(xs, ys, batch_size=16, shuffle=True, seed=0), 4, None, "cpu",
                            recipe="airbench", channels_last=True)
    assert history[0]["train_loss"] != reference[0]["train_loss"]  # it did run in bf16
    assert history[-1]["train_id_acc"] > 0.5  # and the template task is learnt, as in fp32


def test_the_environment_records_whether_amp_recipes_train_in_bf16():
    from niood_plugin.bench.provenance import environment
    from niood_plugin.devices import fast_bf16

    assert environment(torch.device("cpu"))["fast_bf16"] == fast_bf16("cpu")


def test_both_loops_run_their_steps_inside_the_recipes_autocast(digits28, monkeypatch):
    """The forward pass and the loss run inside ``Optimisation.autocast``, the backward pass
    and the optimiser step outside it (a spy context counts the calls)."""
    from niood_plugin.recipes import Optimisation

    entered = []

    class Spy:
        def __enter__(self):
            entered.append(torch.is_grad_enabled())

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(Optimisation, "autocast", lambda self, device: Spy())
    xs, ys = template_data(32)
    train_plain(_airnet(), BatchLoader(xs, ys, batch_size=16, shuffle=True, seed=0), 2, None, "cpu", recipe="airbench")
    assert len(entered) == 2 * 2 and all(entered)
    x, y = digits28
    trainer = presets.create("smoke", build_classifier("airnet", 11, 1, width=4), 10, SHAPE, recipe="airbench", lr=None,
                             callbacks=[], epochs=1, **TINY)
    entered.clear()
    trainer.fit(DataLoader(TensorDataset(x[:128], y[:128]), batch_size=64))
    assert len(entered) == 2 * 2  # pre-training and one inversion epoch, two batches each


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_plain_with_amp_on_cuda_keeps_fp32_weights_and_statistics():
    model = _airnet().cuda()
    xs, ys = template_data(64)
    history = train_plain(model, BatchLoader(xs, ys, batch_size=32, shuffle=True, seed=0, device="cuda"), 2, None,
                          "cuda", recipe="airbench", channels_last=True)
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in history)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    bn = [m for m in model.modules() if isinstance(m, ShiftBatchNorm)]
    assert bn and all(m.running_mean.dtype == torch.float32 and torch.isfinite(m.running_var).all() for m in bn)


def test_the_environment_names_the_cpu_generation_not_only_its_brand():
    from niood_plugin.bench.provenance import cpu_identity, machine

    text = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n\n"
            "processor\t: 1\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: other\n")
    assert cpu_identity(text) == ("AMD EPYC", "family 25 model 17")
    assert cpu_identity("model name\t: Apple M2\n") == ("Apple M2", None)
    assert cpu_identity("") == (None, None)
    env = machine(torch.device("cpu"))
    assert env["cpu"] and ("cpu_id" in env)
