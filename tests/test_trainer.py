import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from niood_plugin import Checkpoint, GarbageSampler, InversionTrainer, Measure, Negatives, SampleGrid, UEDetector
from niood_plugin import presets
from niood_plugin.errors import CheckpointError, NioodError
from niood_plugin.models import build_classifier

SHAPE = (1, 28, 28)
TINY = dict(progress=False, inversion_steps=2, samples_per_step=66, latent_dim=8, generator_width=8, epochs=2)


def loader(x, y, batch=64, seed=0):
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed))


def make(num_classes=10, ncf=8, **kw):
    torch.manual_seed(0)
    clf = build_classifier("report28", num_outputs=num_classes + 1, in_channels=1, ncf=ncf)
    return presets.create("smoke", clf, num_classes, SHAPE, **{**TINY, **kw})


def drop_times(history):
    return [{k: v for k, v in e.items() if not k.endswith("time_s")} for e in history]


def test_fit_end_to_end_on_digits(digits28):
    x, y = digits28
    trainer = make(ncf=16, inversion_steps=6, samples_per_step=330, epochs=2, lr=3e-3)
    hist = trainer.fit(loader(x[:1400], y[:1400], 32), val_loader=loader(x[1400:], y[1400:], 256))
    assert [h["epoch"] for h in hist] == [0, 1, 2]
    assert [h["phase"] for h in hist] == ["pretrain", "inversion", "inversion"]
    assert all(len(h["per_class"]["ue"]) == 11 for h in hist[1:])
    assert hist[-1]["pool_size"] == 2 * 330
    assert hist[-1]["val_acc"] > 0.5  # learns the ID task
    # the garbage class absorbs noise: uniform noise scores as more OOD than ID test digits
    det = UEDetector(trainer.classifier.eval(), garbage_index=10)
    with torch.no_grad():
        id_score = det.predict(x[1400:]).mean()
        noise_score = det.predict(torch.rand(300, *SHAPE) * 2 - 1).mean()
    assert noise_score > id_score
    assert trainer.garbage.inverter.generate(torch.arange(11)).shape == (11, *SHAPE)


def test_garbage_model_beats_plain_msp_on_held_back_outliers(digits28):
    """The library's claim on a small synthetic problem: held-back outliers (ID test digits with
    their pixels permuted, never seen in training) are separated better by our model's UE
    than by the plain model's MSP."""
    from sklearn.metrics import roc_auc_score

    from niood_plugin.training import train_plain

    x, y = digits28
    train, test = loader(x[:1400], y[:1400], 32), x[1400:]
    g = torch.Generator().manual_seed(1)
    outliers = test.flatten(1)[:, torch.randperm(28 * 28, generator=g)].reshape(test.shape)
    trainer = make(inversion_steps=4, samples_per_step=220, epochs=2, lr=3e-3)
    trainer.fit(train)
    torch.manual_seed(0)
    plain = build_classifier("report28", num_outputs=10, in_channels=1, ncf=8)
    train_plain(plain, train, epochs=3, lr=3e-3, device="cpu")
    labels = [0] * len(test) + [1] * len(outliers)
    with torch.no_grad():
        ours = UEDetector(trainer.classifier.eval(), garbage_index=10).predict(torch.cat([test, outliers]))
        msp = 1 - torch.softmax(plain.eval()(torch.cat([test, outliers])), 1).max(1).values
    auc_ours, auc_plain = roc_auc_score(labels, ours.numpy()), roc_auc_score(labels, msp.numpy())
    print(f"AUROC ours {auc_ours:.4f} plain MSP {auc_plain:.4f}")
    assert auc_ours > auc_plain + 0.05, (auc_ours, auc_plain)


def test_same_seed_same_history(digits28):
    x, y = digits28
    runs = [make().fit(loader(x[:300], y[:300])) for _ in range(2)]
    assert drop_times(runs[0]) == drop_times(runs[1])


@pytest.mark.parametrize("extra", [{}, dict(novelty=1.0, negatives=Negatives("warp+jigsaw", 0.5, last_epochs=2))])
def test_resume_equals_uninterrupted(digits28, tmp_path, extra):
    x, y = digits28
    full_trainer = make(epochs=3, **extra)
    full = full_trainer.fit(loader(x[:300], y[:300]))
    ckpt = tmp_path / "run-{epoch}.pt"
    make(epochs=3, callbacks=[Measure(), Checkpoint(ckpt)], **extra).fit(loader(x[:300], y[:300]))
    resumed_trainer = make(epochs=3, **extra)
    resumed = resumed_trainer.fit(loader(x[:300], y[:300]), resume=tmp_path / "run-1.pt")
    assert drop_times(resumed) == drop_times(full)
    for a, b in zip(full_trainer.classifier.state_dict().values(), resumed_trainer.classifier.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_refuses_other_settings_and_corrupt_files(digits28, tmp_path):
    x, y = digits28
    ckpt = tmp_path / "run.pt"
    make(epochs=1, callbacks=[Checkpoint(ckpt)]).fit(loader(x[:300], y[:300]))
    with pytest.raises(CheckpointError, match="other settings"):
        make(epochs=3, beta=2.0).fit(loader(x[:300], y[:300]), resume=ckpt)
    with pytest.raises(CheckpointError, match="other settings"):
        make(epochs=1, negatives=None).fit(loader(x[:300], y[:300]), resume=ckpt)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        make().fit(loader(x[:300], y[:300]), resume=tmp_path / "bad.pt")


@pytest.mark.parametrize("kw, match", [
    (dict(alpha=-1.0), "alpha"),
    (dict(gamma=True), "gamma must be a finite number"),          # a bool is not a number
    (dict(lr=True), "lr"),
    (dict(lr=float("nan")), "lr"),
    (dict(inversion_steps=0), "inversion_steps"),
    (dict(inversion_steps=2.0), "inversion_steps must be an int"),  # a float is not an int
    (dict(batch_size=-4), "batch_size"),
    (dict(epochs=0), "epochs"),
    (dict(conditioning="tensor"), "conditioning"),
    (dict(pool_policy="lru"), "pool_policy"),
    (dict(pool_policy="fifo", pool_capacity=None), "pool_capacity"),
    (dict(weighted_ce=1), "weighted_ce must be True or False"),
    (dict(not_a_param=1), "unknown hyperparameter"),
    (dict(channels_last="yes"), "channels_last must be True or False"),
    (dict(seed=-1), "seed"),
    (dict(seed=True), "seed"),
    (dict(device="nonsense"), "not a torch device"),
    (dict(device="CPU"), "not a torch device"),
    (dict(negatives="warp"), "negatives must be an instance of Negatives"),
    (dict(negatives=Negatives("jigsaw", grid=5)), "does not divide the image size"),
])
def test_bad_parameters(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make(**kw)


@pytest.mark.parametrize("kw, match", [
    (dict(kinds="flip"), "kinds must be one of"),
    (dict(per_image=0), "per_image"),
    (dict(per_image=True), "per_image"),
    (dict(last_epochs=0), "last_epochs"),
    (dict(grid=1), "grid"),
    (dict(warp_cells=1), "warp_cells"),
    (dict(warp_strength=-0.1), "warp_strength"),
])
def test_bad_negatives(kw, match):
    with pytest.raises(ValueError, match=match):
        Negatives(**kw)


def test_bad_data_and_models(digits28, tmp_path):
    x, y = digits28
    with pytest.raises(ValueError, match="needs 11 .*num_outputs=11"):
        presets.create("smoke", build_classifier("report28", 10, 1, ncf=8), 10, SHAPE, **TINY).fit(loader(x[:64], y[:64]))
    with pytest.raises(ValueError, match="image_shape"):
        make().fit(loader(torch.zeros(8, 1, 32, 32), torch.zeros(8, dtype=torch.long)))
    with pytest.raises(ValueError, match="labels must lie"):
        make().fit(loader(x[:200], torch.cat([y[:199], torch.tensor([10])])))  # found in the label pass, not late
    with pytest.raises(TypeError, match="integer class indices"):
        make().fit(loader(x[:8], y[:8].float() + 0.5))
    with pytest.raises(TypeError, match="float32"):
        make().fit(loader(x[:8].double(), y[:8]))
    with pytest.raises(TypeError, match="tensor pairs"):
        make().fit(DataLoader([{"image": x[0], "label": y[0]}] * 4, batch_size=2))
    with pytest.raises(ValueError, match="empty"):
        make().fit([])
    trainer = make()
    for p in trainer.classifier.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="frozen"):
        trainer.fit(loader(x[:64], y[:64]))
    with pytest.raises(TypeError, match="features"):
        presets.create("smoke", torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 11)), 10, SHAPE, **TINY)
    with pytest.raises(ValueError, match="28x28 or 32x32"):
        presets.create("smoke", build_classifier("report28", 11, 1, ncf=8), 10, (1, 20, 20), **TINY)
    with pytest.raises(CheckpointError, match="directory"):
        make(callbacks=[Checkpoint(tmp_path)]).fit(loader(x[:64], y[:64]))


def test_a_dataset_instead_of_its_loader_is_refused():
    from niood_plugin.data import make_synthetic

    data = make_synthetic(2, seed=0)
    with pytest.raises(TypeError, match="loader"):
        make().fit(data)


def test_a_pool_that_cannot_hold_the_run_is_refused_before_training(digits28):
    x, y = digits28
    with pytest.raises(ValueError, match="pool_capacity"):
        make(pool_policy="all", pool_capacity=10).fit(loader(x[:64], y[:64]))


def test_out_of_range_images_warn_once(digits28, caplog):
    x, y = digits28
    with caplog.at_level("WARNING"):
        make(epochs=1).fit(loader((x[:128] + 1) * 127.5, y[:128]))
    assert sum("not [-1, 1]" in r.message for r in caplog.records) == 1


def test_negatives_join_the_last_epochs_as_garbage(digits28, monkeypatch):
    """Negatives.make is called in the active epochs only, on each batch's ID images, and its
    output is trained as the garbage class."""
    x, y = digits28
    calls = []
    real = Negatives.make

    def spy(self, xb, generator=None):
        out = real(self, xb, generator)
        calls.append((len(calls), xb.shape[0], out.shape[0]))
        return out

    monkeypatch.setattr(Negatives, "make", spy)
    trainer = make(epochs=3, negatives=Negatives("warp", per_image=0.5, last_epochs=1))
    hist = trainer.fit(loader(x[:256], y[:256], batch=64))
    assert [h["negatives"] for h in hist] == [False, False, False, True]
    assert len(calls) == 4 and all(n_out == round(0.5 * n_in) for _, n_in, n_out in calls)


def test_negatives_default_to_the_recommendation_and_last_epochs_is_at_most_the_run(digits28):
    assert make().garbage.negatives == Negatives("warp", per_image=1, last_epochs=2)
    x, y = digits28
    hist = make(epochs=1, negatives=Negatives(last_epochs=3)).fit(loader(x[:128], y[:128]))
    assert [h["negatives"] for h in hist] == [False, True]  # every inversion epoch, not pre-training


def test_sample_grid_callback_writes_one_png_per_epoch(digits28, tmp_path):
    x, y = digits28
    make(callbacks=[SampleGrid(tmp_path / "grid")]).fit(loader(x[:128], y[:128]))
    assert sorted(p.name for p in (tmp_path / "grid").iterdir()) == ["samples_epoch_001.png", "samples_epoch_002.png"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NioodError, match="cannot create"):
        make(callbacks=[SampleGrid(blocker / "grid")]).fit(loader(x[:128], y[:128]))


def test_presets_are_named_pairs_of_sampler_and_trainer_keywords():
    report = presets.get_preset("report-cifar10")
    assert (report.garbage["gamma"], report.trainer["epochs"], report.batch_size) == (100.0, 41, 32)
    assert presets.get_preset("report-mnist").garbage["samples_per_step"] == 11_000
    assert presets.get_preset("fast").updated(batch_size=7, gamma=2.0, lr=1e-2) == presets.Preset(
        {"gamma": 2.0}, {"epochs": 4, "lr": 1e-2}, batch_size=7)
    trainer = presets.create("fast", build_classifier("report28", 11, 1, ncf=8), 10, SHAPE, seed=3, gamma=2.0)
    assert (trainer.epochs, trainer.seed, trainer.garbage.seed, trainer.garbage.gamma) == (4, 3, 3, 2.0)
    with pytest.raises(ValueError, match="unknown preset"):
        presets.get_preset("turbo")
    with pytest.raises(ValueError, match="wrong class"):
        presets.Preset(garbage={"epochs": 3})


def test_each_parameter_is_declared_once_with_one_default():
    """The sampler and the trainer share no parameter but the run's plumbing (seed, progress,
    channels_last), whose constraint is one object and whose default is the same."""
    import inspect

    g, t = GarbageSampler._parameter_constraints, InversionTrainer._parameter_constraints
    shared = set(g) & set(t)
    assert shared == {"seed", "progress", "channels_last"}
    for name in shared:
        assert g[name] is t[name], name
        defaults = [inspect.signature(c.__init__).parameters[name].default for c in (GarbageSampler, InversionTrainer)]
        assert defaults[0] == defaults[1], name
