import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from niood_plugin import InversionTrainer, UEDetector
from niood_plugin.errors import CheckpointError
from niood_plugin.models import build_classifier
import niood_plugin.trainer as trainer_module
from niood_plugin.trainer import InversionConfig

SHAPE = (1, 28, 28)
TINY = dict(preset="smoke", progress=False, inversion_steps=2, samples_per_step=66, latent_dim=8,
            generator_width=8, epochs=2)


def loader(x, y, batch=64, seed=0):
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed))


def make(num_classes=10, ncf=8, **kw):
    torch.manual_seed(0)
    clf = build_classifier("report28", num_outputs=num_classes + 1, in_channels=1, ncf=ncf)
    return InversionTrainer(clf, num_classes, SHAPE, **{**TINY, **kw})


def test_fit_end_to_end_on_digits(digits28):
    x, y = digits28
    trainer = make(ncf=16, inversion_steps=6, samples_per_step=330, epochs=2, batch_size=32, classifier_lr=3e-3)
    hist = trainer.fit(loader(x[:1400], y[:1400], 32), val_loader=loader(x[1400:], y[1400:], 256))
    assert [h["epoch"] for h in hist] == [0, 1, 2]
    for h in hist[1:]:
        for key in ("confidence", "margin", "ue", "entropy", "inversion_accuracy", "val_acc", "pool_size"):
            assert key in h
        assert len(h["per_class"]["ue"]) == 11
        assert 0.0 <= h["ue"] <= 1.0
    assert hist[-1]["pool_size"] == 2 * 330
    assert hist[-1]["val_acc"] > 0.5  # learns the ID task
    # the garbage class absorbs noise: uniform noise scores as more OOD than ID test digits
    det = UEDetector(trainer.classifier.eval(), garbage_index=10)
    with torch.no_grad():
        id_score = det.predict(x[1400:]).mean()
        noise_score = det.predict(torch.rand(300, *SHAPE) * 2 - 1).mean()
    assert noise_score > id_score
    samples = trainer.generate(torch.arange(11))
    assert samples.shape == (11, *SHAPE)


def test_same_seed_same_history(digits28):
    x, y = digits28
    runs = []
    for _ in range(2):
        t = make()
        runs.append(t.fit(loader(x[:300], y[:300])))
    drop = lambda h: [{k: v for k, v in e.items() if not k.endswith("time_s")} for e in h]  # noqa: E731
    assert drop(runs[0]) == drop(runs[1])


def test_resume_equals_uninterrupted(digits28, tmp_path):
    x, y = digits28
    full = make(epochs=3).fit(loader(x[:300], y[:300]))
    ckpt = tmp_path / "run.pt"
    make(epochs=1).fit(loader(x[:300], y[:300]), checkpoint=ckpt)
    resumed_trainer = make(epochs=3)
    resumed = resumed_trainer.fit(loader(x[:300], y[:300]), checkpoint=ckpt, resume=ckpt)
    drop = lambda h: [{k: v for k, v in e.items() if not k.endswith("time_s")} for e in h]  # noqa: E731
    assert drop(resumed) == drop(full)
    # another configuration must not resume from this checkpoint
    with pytest.raises(CheckpointError, match="configuration"):
        make(epochs=3, beta=2.0).fit(loader(x[:300], y[:300]), resume=ckpt)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        make().fit(loader(x[:300], y[:300]), resume=tmp_path / "bad.pt")


@pytest.mark.parametrize("kw, match", [
    (dict(alpha=-1.0), "alpha"),
    (dict(inversion_steps=0), "inversion_steps"),
    (dict(batch_size=-4), "batch_size"),
    (dict(epochs=0), "epochs"),
    (dict(conditioning="tensor"), "conditioning"),
    (dict(pool_policy="lru"), "pool_policy"),
    (dict(pool_policy="all", pool_capacity=10), "pool_capacity"),
    (dict(not_a_param=1), "unknown hyperparameter"),
    (dict(channels_last="yes"), "channels_last must be True or False"),
    (dict(garbage_classes="many"), "garbage_classes"),
    (dict(novelty=-1.0), "novelty"),
    (dict(jigsaw=-0.5), "jigsaw must be a finite number"),
    (dict(jigsaw=float("inf")), "jigsaw must be a finite number"),
    (dict(jigsaw=0.5, negatives="flip"), "negatives must be one of"),
    (dict(jigsaw=0.5, negatives_spare=0.0), "negatives_spare must be a probability"),
    (dict(jigsaw=0.5, negatives_spare=1.5), "negatives_spare must be a probability"),
    (dict(jigsaw=0.5, jigsaw_grid=1), "jigsaw_grid must be an int >= 2"),
    (dict(jigsaw=0.5, negatives="warp", warp_cells=1), "warp_cells must be an int >= 2"),
    (dict(jigsaw=0.5, negatives="warp", warp_strength=-0.1), "warp_strength must be a finite number >= 0"),
    (dict(jigsaw=0.5, jigsaw_grid=5), "does not divide the image size"),
    (dict(jigsaw=0.5, jigsaw_from=3), "after the last epoch"),
])
def test_bad_hyperparameters(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make(**kw)


def test_bad_data_and_models(digits28):
    x, y = digits28
    with pytest.raises(ValueError, match="needs 11 .*num_outputs=11"):
        InversionTrainer(build_classifier("report28", 10, 1, ncf=8), 10, SHAPE, **TINY).fit(loader(x[:64], y[:64]))
    with pytest.raises(ValueError, match="image_shape"):
        make().fit(loader(torch.zeros(8, 1, 32, 32), torch.zeros(8, dtype=torch.long)))
    with pytest.raises(ValueError, match="labels must lie"):
        make().fit(loader(x[:8], torch.full((8,), 10)))
    with pytest.raises(ValueError, match="empty"):
        make().fit([])
    with pytest.raises(TypeError, match="features"):
        InversionTrainer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 11)), 10, SHAPE, **TINY)
    with pytest.raises(ValueError, match="28x28 or 32x32"):
        InversionTrainer(build_classifier("report28", 11, 1, ncf=8), 10, (1, 20, 20), **TINY)


def test_out_of_range_images_warn_once(digits28, caplog):
    x, y = digits28
    with caplog.at_level("WARNING"):
        make(epochs=1).fit(loader((x[:128] + 1) * 127.5, y[:128]))
    assert sum("not [-1, 1]" in r.message for r in caplog.records) == 1


def test_presets():
    assert InversionConfig.from_preset("report", "mnist").samples_per_step == 11_000
    cfg = InversionConfig.from_preset("report", "cifar10")
    assert (cfg.gamma, cfg.epochs) == (100.0, 41)
    assert InversionConfig.from_preset("fast", batch_size=7).batch_size == 7
    with pytest.raises(ValueError, match="dataset"):
        InversionConfig.from_preset("report")
    with pytest.raises(ValueError, match="unknown preset"):
        InversionConfig.from_preset("turbo")


def test_per_class_garbage_labels_each_sample_by_its_condition(digits28):
    """garbage_classes='per-class': 2K outputs; an image generated for class c trains garbage class K + c."""
    x, y = digits28
    torch.manual_seed(0)
    clf = build_classifier("report28", num_outputs=20, in_channels=1, ncf=8)
    trainer = InversionTrainer(clf, 10, SHAPE, **{**TINY, "garbage_classes": "per-class", "garbage_per_epoch": 200})
    assert trainer.num_outputs == 20 and trainer.num_garbage == 10
    hist = trainer.fit(loader(x[:600], y[:600]), val_loader=loader(x[600:900], y[600:900], 256))
    assert len(hist[-1]["per_class"]["ue"]) == 20
    weights = hist[-1]["class_weights"]
    assert len(weights) == 20
    # the garbage outputs share one per-sample weight: together they weigh as one balanced class
    n_garbage = hist[-1]["garbage_size"]
    n_total = 600 + n_garbage
    assert weights[10:] == pytest.approx([n_total / (11 * n_garbage)] * 10)
    slots = trainer.pool.slots()
    assert slots.min() >= 0 and slots.max() <= 9 and len(slots.unique()) > 5
    # the slots are the generator's condition modulo K: regenerate with known labels and compare
    labels = torch.tensor([3, 13, 0, 19])
    assert trainer._slots_of(labels).tolist() == [3, 3, 0, 9]
    assert 0 <= hist[-1]["val_to_garbage"] <= 1


def test_per_class_garbage_needs_2k_outputs():
    torch.manual_seed(0)
    clf = build_classifier("report28", num_outputs=11, in_channels=1, ncf=8)
    trainer = InversionTrainer(clf, 10, SHAPE, **{**TINY, "garbage_classes": "per-class"})
    x = torch.rand(64, *SHAPE) * 2 - 1
    with pytest.raises(ValueError, match="needs 20"):
        trainer.fit(loader(x, torch.arange(64) % 10))
    with pytest.raises(ValueError, match="garbage_classes"):
        InversionConfig(garbage_classes="several").validate()


def test_channels_last_layout_is_used_and_optional(digits28):
    x, y = digits28
    on, off = make(), make(channels_last=False)
    for trainer in (on, off):
        trainer.fit(loader(x[:200], y[:200]), epochs=1)
    def second_conv(model):  # the first has one input channel, where both layouts coincide
        return [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][1].weight

    assert second_conv(on.classifier).is_contiguous(memory_format=torch.channels_last)
    assert not second_conv(on.classifier).is_contiguous()
    assert second_conv(off.classifier).is_contiguous()


def test_novelty_term_is_used_resumes_and_keeps_old_keys(digits28, tmp_path):
    x, y = digits28
    # off (default): no novelty entry, and the identity has no novelty key, so checkpoints and
    # harness caches written before the option existed keep their signatures
    hist = make(epochs=1).fit(loader(x[:300], y[:300]))
    assert "inversion_novelty" not in hist[-1]
    assert "novelty" not in InversionConfig.from_preset("fast").identity()
    assert InversionConfig.from_preset("fast", novelty=1.0).identity()["novelty"] == 1.0
    # on: the term is computed against the class means of the previous retraining epoch
    t = make(epochs=3, novelty=1.0)
    full = t.fit(loader(x[:300], y[:300]))
    assert all(0.0 <= e["inversion_novelty"] <= 1.0 for e in full[1:])
    assert t._class_means.shape[0] == 10
    assert torch.allclose(t._class_means.norm(dim=1), torch.ones(10), atol=1e-5)
    ckpt = tmp_path / "nov.pt"
    make(epochs=1, novelty=1.0).fit(loader(x[:300], y[:300]), checkpoint=ckpt)
    resumed = make(epochs=3, novelty=1.0).fit(loader(x[:300], y[:300]), checkpoint=ckpt, resume=ckpt)
    drop = lambda h: [{k: v for k, v in e.items() if not k.endswith("time_s")} for e in h]  # noqa: E731
    assert drop(resumed) == drop(full)
    # the term changes what the generator learns
    assert drop(full)[1]["inversion_loss"] != drop(make(epochs=3).fit(loader(x[:300], y[:300])))[1]["inversion_loss"]


@pytest.mark.parametrize("garbage_classes,share", [("single", 0.5), ("per-class", 0.5), ("per-class", 2.5)])
def test_jigsaw_negatives_join_each_batch_as_garbage(digits28, monkeypatch, garbage_classes, share):
    x, y = digits28
    n_out = 20 if garbage_classes == "per-class" else 11
    torch.manual_seed(0)
    clf = build_classifier("report28", num_outputs=n_out, in_channels=1, ncf=8)
    trainer = InversionTrainer(clf, 10, SHAPE, **{**TINY, "epochs": 1, "jigsaw": share,
                                                  "garbage_classes": garbage_classes})
    real_make = trainer_module.make_negatives
    sources = []
    monkeypatch.setattr(trainer_module, "make_negatives", lambda src, *a, **k: sources.append(src) or real_make(src, *a, **k))
    seen = []
    real_ce = torch.nn.functional.cross_entropy

    def spy(logits, target, *args, **kwargs):
        if kwargs.get("weight") is not None:  # retraining (inversion's CE has no class weights)
            seen.append(target.clone())
        return real_ce(logits, target, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy)
    hist = trainer.fit(loader(x[:256], y[:256]))  # 4 batches of 64 per epoch
    # every batch: 64 ID labels, its garbage share, then round(64 * share) negatives of its
    # images in order, cycled when share > 1 (each copy with its own tile order)
    n_neg = round(64 * share)
    src = torch.arange(n_neg) % 64
    assert len(seen) == 8 and len(sources) == 8
    for target, neg_src in zip(seen, sources):
        ids, neg = target[:64], target[-n_neg:]
        assert (ids < 10).all() and (target[64:] >= 10).all()
        expected = 10 + ids[src] if garbage_classes == "per-class" else torch.full((n_neg,), 10)
        assert torch.equal(neg, expected)
        assert neg_src.shape[0] == n_neg
        if share > 1:  # the copies of one image are the same image before shuffling
            assert torch.equal(neg_src[64:128], neg_src[:64])
    # class-balanced weights count the negatives as garbage
    n_garbage = hist[-1]["garbage_size"] + round(256 * share)
    assert hist[-1]["class_weights"][10] == pytest.approx((256 + n_garbage) / (11 * n_garbage), rel=1e-5)
    # off: no negatives, and the identity (cache keys, signatures) has no jigsaw keys
    ident = InversionConfig.from_preset("fast").identity()
    assert "jigsaw" not in ident and "jigsaw_grid" not in ident
    assert InversionConfig.from_preset("fast", jigsaw=0.5).identity()["jigsaw_grid"] == 4
    # the default kind keeps the keys of runs made before `negatives` existed; another kind is keyed
    assert "negatives" not in InversionConfig.from_preset("fast", jigsaw=0.5).identity()
    assert InversionConfig.from_preset("fast", jigsaw=0.5, negatives="rotate").identity()["negatives"] == "rotate"
    # warp settings: keyed only when they differ from the defaults the committed runs used
    warp = InversionConfig.from_preset("fast", jigsaw=0.5, negatives="warp")
    assert "warp_strength" not in warp.identity() and "warp_cells" not in warp.identity()
    strong = InversionConfig.from_preset("fast", jigsaw=0.5, negatives="warp", warp_strength=0.8, warp_cells=6)
    assert (strong.identity()["warp_strength"], strong.identity()["warp_cells"]) == (0.8, 6)
    assert "warp_strength" not in InversionConfig.from_preset("fast", jigsaw=0.5, warp_strength=0.8).identity()


@pytest.mark.parametrize("garbage_classes", ["single", "per-class"])
def test_negatives_the_classifier_takes_for_their_source_class_are_left_out(digits28, monkeypatch, garbage_classes):
    x, y = digits28
    torch.manual_seed(0)
    n_out = 20 if garbage_classes == "per-class" else 11
    clf = build_classifier("report28", num_outputs=n_out, in_channels=1, ncf=8)
    spare = 1 / n_out  # a barely trained classifier spares some negatives and keeps others
    trainer = InversionTrainer(clf, 10, SHAPE, **{**TINY, "epochs": 1, "jigsaw": 1.0, "negatives": "jigsaw+rotate",
                                                  "negatives_spare": spare, "garbage_classes": garbage_classes})
    seen = []
    real_ce = torch.nn.functional.cross_entropy

    def spy(logits, target, *args, **kwargs):
        if kwargs.get("weight") is not None:  # retraining (inversion's CE has no class weights)
            seen.append((logits.detach().float().softmax(1), target.clone(), kwargs.get("ignore_index", -100)))
        return real_ce(logits, target, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy)
    hist = trainer.fit(loader(x[:256], y[:256]))
    left_out = kept = 0
    for probs, target, ignore in seen:
        ids, neg = target[:64], target[-64:]
        p_src = probs[-64:].gather(1, ids[:, None])[:, 0]  # negative i is made from ID image i
        assert torch.equal(neg == ignore, p_src > spare)
        assert (target[64:-64] >= 10).all() and (neg[neg != ignore] >= 10).all()  # the others stay garbage
        left_out += int((neg == ignore).sum())
        kept += int((neg != ignore).sum())
    assert left_out and kept
    assert trainer.config.pretrain_epochs == 1  # else the pre-training entry counts only its last epoch
    assert sum(h["negatives_spared"] for h in hist) == left_out
    # the default keeps every negative and keys runs as before the option existed
    assert "negatives_spare" not in InversionConfig.from_preset("fast", jigsaw=0.5).identity()
    cfg = InversionConfig.from_preset("fast", epochs=10, jigsaw=0.5, jigsaw_from=9, negatives_spare=0.5)
    assert "negatives_spare" not in cfg.identity(8) and cfg.identity(9)["negatives_spare"] == 0.5


def test_jigsaw_run_resumes_exactly(digits28, tmp_path):
    x, y = digits28
    full = make(epochs=3, jigsaw=0.5).fit(loader(x[:300], y[:300]))
    ckpt = tmp_path / "jig.pt"
    make(epochs=1, jigsaw=0.5).fit(loader(x[:300], y[:300]), checkpoint=ckpt)
    resumed = make(epochs=3, jigsaw=0.5).fit(loader(x[:300], y[:300]), checkpoint=ckpt, resume=ckpt)
    drop = lambda h: [{k: v for k, v in e.items() if not k.endswith("time_s")} for e in h]  # noqa: E731
    assert drop(resumed) == drop(full)
    assert drop(full) != drop(make(epochs=3).fit(loader(x[:300], y[:300])))


def test_run_branches_from_a_prefix_checkpoint_exactly(digits28, tmp_path):
    """Up to epoch 2 a run with jigsaw_from=3 is the plain run, so it resumes from the plain run's
    epoch-2 checkpoint and ends exactly where an uninterrupted run ends; later checkpoints and
    runs whose negatives started earlier are refused."""
    x, y = digits28
    drop = lambda h: [{k: v for k, v in e.items() if not k.endswith("time_s")} for e in h]  # noqa: E731
    plain = make(epochs=3)
    plain.fit(loader(x[:300], y[:300]), checkpoint=tmp_path / "plain-{epoch}.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"plain-{e}.pt" for e in range(4)]
    late = make(epochs=3, jigsaw=0.5, jigsaw_from=3)
    assert late.run_signature(2) == plain.run_signature(2) != late.run_signature(3)
    full = make(epochs=3, jigsaw=0.5, jigsaw_from=3)
    full.fit(loader(x[:300], y[:300]))
    late.fit(loader(x[:300], y[:300]), resume=tmp_path / "plain-2.pt")
    assert drop(late.history) == drop(full.history) != drop(plain.history)
    for (name, a), b in zip(late.classifier.state_dict().items(), full.classifier.state_dict().values()):
        assert torch.equal(a, b), name
    for ckpt, cfg in (("plain-3.pt", dict(jigsaw_from=3)), ("plain-2.pt", dict(jigsaw_from=2))):
        with pytest.raises(CheckpointError, match="another configuration"):
            make(epochs=3, jigsaw=0.5, **cfg).fit(loader(x[:300], y[:300]), resume=tmp_path / ckpt)


def test_jigsaw_from_and_head_only(digits28, monkeypatch):
    x, y = digits28
    # jigsaw_from=2: pre-training and epoch 1 without negatives, epoch 2 with them
    hist = make(epochs=2, jigsaw=0.5, jigsaw_from=2).fit(loader(x[:256], y[:256]))
    for h in hist:
        n_garbage = h["garbage_size"] + (128 if h["epoch"] >= 2 else 0)
        assert h["class_weights"][10] == pytest.approx((256 + n_garbage) / (11 * n_garbage), rel=1e-5)
    # jigsaw_from=0: every pre-training epoch has them too (4 batches x (2 pre-training + 1) epochs)
    calls = []
    real_make = trainer_module.make_negatives
    monkeypatch.setattr(trainer_module, "make_negatives", lambda *a, **k: calls.append(1) or real_make(*a, **k))
    make(epochs=1, jigsaw=0.5, pretrain_epochs=2).fit(loader(x[:256], y[:256]))
    assert len(calls) == 12
    monkeypatch.undo()
    # head only: no gradient from the negatives (the last 32 rows of each batch) into the features
    for head_only in (False, True):
        t = make(epochs=1, jigsaw=0.5, jigsaw_head_only=head_only)
        grads = []

        def keep(module, inp, out):
            if module.training:
                out.register_hook(lambda g: grads.append(g.detach().clone()))

        t.classifier.penultimate.register_forward_hook(keep)
        t.fit(loader(x[:256], y[:256]))
        assert len(grads) == 8
        neg_grad = max(float(g[-32:].abs().max()) for g in grads)
        assert (neg_grad == 0.0) == head_only
        assert all(float(g[:64].abs().max()) > 0 for g in grads)
