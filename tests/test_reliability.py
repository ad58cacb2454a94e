"""Interrupted runs resume exactly; results are written atomically; runs reproduce."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from niood_plugin.cli import main
from niood_plugin.files import atomic_torch_save, atomic_write_text, load_checkpoint
from niood_plugin.checkpoint import FORMAT as CHECKPOINT_FORMAT

TRAIN_SCRIPT = r"""
import json, sys, torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from niood_plugin import Checkpoint, Measure, presets
from niood_plugin.data import TensorData
from niood_plugin.models import build_classifier
torch.set_num_threads(1)
ckpt, out, resume, stall = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
d = load_digits()
x = F.interpolate(torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0, size=(28, 28), mode="bilinear")
data = TensorData((x * 2 - 1).clamp(-1, 1)[:400], torch.tensor(d.target)[:400], "digits")
torch.manual_seed(0)
clf = build_classifier("report28", 11, 1, ncf=8)
trainer = presets.create("smoke", clf, 10, (1, 28, 28), epochs=3, inversion_steps=2, samples_per_step=66,
                         latent_dim=8, generator_width=8, progress=False, seed=0,
                         callbacks=[Measure(), Checkpoint(ckpt)])
if stall != "-":  # stall a few forward passes into epoch 2 and tell the parent, which then kills us
    import pathlib, time
    from niood_plugin import checkpoint
    saves, calls, save = [0], [0], checkpoint.save
    def counted_save(*a, **k):
        out = save(*a, **k)
        saves[0] += 1               # save 1: after the noise pre-training; save 2: after epoch 1
        return out
    def hook(*a):
        if saves[0] == 2:
            calls[0] += 1
            if calls[0] == 3:
                pathlib.Path(stall).write_text("mid-epoch-2")
                time.sleep(600)
    checkpoint.save = counted_save
    clf.register_forward_hook(hook)
hist = trainer.fit(data.loader(batch_size=64, shuffle=True, seed=0), resume=ckpt if resume else None)
json.dump([{k: v for k, v in h.items() if not k.endswith("time_s")} for h in hist], open(out, "w"))
"""


def _run(args, **kw):
    return subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, *map(str, args)], **kw)


def _checkpoint_epoch(path: Path) -> int:
    try:
        return int(load_checkpoint(path, CHECKPOINT_FORMAT)["epoch"])
    except Exception:
        return -1


@pytest.mark.timeout(300)
def test_sigkill_during_epoch_2_then_resume_matches_uninterrupted(tmp_path):
    full = _run([tmp_path / "a.pt", tmp_path / "full.json", 0, "-"])
    assert full.wait(timeout=240) == 0
    ckpt, stalled = tmp_path / "b.pt", tmp_path / "stalled"
    victim = _run([ckpt, tmp_path / "never.json", 0, stalled])
    deadline = time.time() + 200
    while not stalled.exists():                 # the child is stalled inside epoch 2
        assert victim.poll() is None, "training ended before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "never.json").exists()
    assert _checkpoint_epoch(ckpt) == 1          # the half-done epoch 2 left no trace
    resumed = _run([ckpt, tmp_path / "resumed.json", 1, "-"])
    assert resumed.wait(timeout=240) == 0
    assert json.loads((tmp_path / "resumed.json").read_text()) == json.loads((tmp_path / "full.json").read_text())


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    atomic_write_text(target, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp file left behind


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path, umask, mode):
    """Not the 0o600 of the temporary file: 0o666 minus the umask, as open() would give."""
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "results.json", "{}")
        atomic_torch_save({"w": torch.zeros(1)}, tmp_path / "model.pt")
    finally:
        os.umask(old)
    assert {(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {mode}


def test_same_seed_same_results_json(tmp_path):
    rows = []
    for name in ("a", "b"):
        args = ["run", "--preset", "smoke", "--quiet", "--method", "inversion", "--detectors", "ue,msp,mahalanobis",
                "--test-limit", "60", "--out", str(tmp_path / name)]
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        rows.append(json.loads((tmp_path / name / "results.json").read_text())["results"])
    assert rows[0] == rows[1]


class Evil:
    """An arbitrary object: a weights-only load must refuse to rebuild it."""


def test_checkpoints_load_weights_only(tmp_path):
    """A checkpoint holding an arbitrary Python object is refused, not unpickled."""
    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "payload": Evil()}, path)
    from niood_plugin.errors import CheckpointError

    with pytest.raises(CheckpointError):
        load_checkpoint(path, CHECKPOINT_FORMAT)


def test_corrupt_data_file_exits_2(tmp_path):
    root = tmp_path / "data" / "mnist"
    root.mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (root / stem).write_bytes(b"\x00\x00\x08\x03garbage")
    result = CliRunner().invoke(main, ["run", "--id", "mnist", "--ood", "gaussian", "--data-root",
                                       str(tmp_path / "data"), "--out", str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


# ---------------------------------------------------------------- loaders: one line, not torch's
def _images(n=8, dtype=torch.float32):
    return (torch.rand(n, 1, 28, 28) * 2 - 1).to(dtype), torch.arange(n) % 4


def _plain_model():
    from niood_plugin.models import build_classifier

    torch.manual_seed(0)
    return build_classifier("report28", num_outputs=4, in_channels=1, ncf=8)


def test_an_empty_first_batch_is_named_in_one_line():
    from niood_plugin.errors import InvalidArgumentError
    from niood_plugin.training import check_loader, train_plain

    x, y = _images()
    loader = [(x[:0], y[:0]), (x, y)]  # e.g. a sampler that gives the first batch nothing
    for call in (lambda: check_loader(loader, (1, 28, 28), 4), lambda: train_plain(_plain_model(), loader, 1, 1e-3, "cpu")):
        with pytest.raises(InvalidArgumentError, match=r"^the first batch of train_loader is empty \(inputs of shape "
                                                        r"\(0, 1, 28, 28\)\)") as err:
            call()
        assert "\n" not in str(err.value)


def test_float64_images_are_refused_in_one_line_by_fit_and_train_plain():
    from niood_plugin.errors import InvalidTypeError
    from niood_plugin.training import check_loader, train_plain

    loader = [_images(dtype=torch.float64)]
    for call in (lambda: check_loader(loader, (1, 28, 28), 4), lambda: train_plain(_plain_model(), loader, 1, 1e-3, "cpu")):
        with pytest.raises(InvalidTypeError, match=r"images must be float32 .*got torch.float64: convert them with "
                                                   r"x.float\(\)$"):
            call()


def test_train_plain_checks_its_loader_like_fit():
    """Before: a dataset, labels past the model's outputs and NaN inputs reached torch (a
    ValueError from unpacking, "Target 4 is out of bounds", a NaN loss)."""
    from niood_plugin.errors import InvalidArgumentError, InvalidTypeError
    from niood_plugin.training import train_plain

    x, y = _images()
    with pytest.raises(InvalidTypeError, match="must yield \\(x, y\\) tensor pairs"):
        train_plain(_plain_model(), x, 1, 1e-3, "cpu")
    with pytest.raises(InvalidArgumentError, match=r"labels must lie in \[0, 4\) \(one per output of the model, which "
                                                   r"has 4\), got range \[4, 7\]"):
        train_plain(_plain_model(), [(x, y + 4)], 1, 1e-3, "cpu")
    with pytest.raises(InvalidArgumentError, match="contain NaN or Inf"):
        train_plain(_plain_model(), [(x * float("nan"), y)], 1, 1e-3, "cpu")


def test_train_plain_loader_check_moves_no_random_state():
    """The check reads one batch; the loader's generator and torch's state are put back, so a
    checked training sees the batches (and dropout masks) an unchecked one would."""
    from niood_plugin.data import BatchLoader, CropFlip
    from niood_plugin.training import _check_plain_loader

    x, y = _images(40)
    loader = BatchLoader(x, y, batch_size=10, shuffle=True, seed=3, augment=CropFlip())
    model = _plain_model().train()
    gen, rng = loader.generator.get_state(), torch.get_rng_state()
    _check_plain_loader(loader, model, torch.device("cpu"), channels_last=True)
    assert torch.equal(loader.generator.get_state(), gen) and torch.equal(torch.get_rng_state(), rng)
    assert model.training
