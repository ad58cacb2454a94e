"""``train_plain`` (the harness's standard, LogitNorm and VOS) checkpoints every epoch and resumes
exactly; a checkpoint of other settings or of another number of processes is refused, never
silently replaced by a fresh start."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from niood_plugin import checkpoint, distributed
from niood_plugin.data import BatchLoader, CropFlip
from niood_plugin.errors import CheckpointError
from niood_plugin.models import build_classifier
from niood_plugin.peers import LogitNormObjective, VOSObjective
from niood_plugin.training import train_plain

from peer_task import K, one_thread, template_data  # noqa: F401  (one_thread: an autouse fixture)

EPOCHS = 3


class Interrupted(Exception):
    """Raised from ``on_epoch_end``: the run stops as a crash would."""


def _setup(method: str):
    """A fresh model (seed 0), loader (shuffled, augmented: its generator matters) and the
    objective arguments of ``method``, the same every call."""
    torch.manual_seed(0)
    model = build_classifier("report28", num_outputs=K, in_channels=1, ncf=8)  # BatchNorm and dropout
    x, y = template_data(120)
    loader = BatchLoader(x, y, batch_size=30, shuffle=True, seed=0, augment=CropFlip())
    extra = {}
    if method == "logitnorm":
        extra = {"objective": LogitNormObjective()}
    elif method == "vos":  # the regulariser from epoch 1, its queues full after the first epoch
        objective = VOSObjective(model, EPOCHS, sample_number=10, sample_from=200, start_fraction=0.34)
        extra = {"objective": objective, "extra_params": objective.trainable()}
    torch.manual_seed(1)
    return model, loader, extra


def _train(method: str, **kwargs):
    model, loader, extra = _setup(method)
    history = train_plain(model, loader, EPOCHS, 3e-3, "cpu", lr_schedule="cosine", **extra, **kwargs)
    return model, extra, history


def _untimed(history):
    return [{k: v for k, v in e.items() if k != "time_s"} for e in history]


def _interrupt_at(epoch: int):
    def on_epoch_end(model, entry):
        entry["probe"] = 0.5  # a callback's figures are kept in the checkpointed history
        if entry["epoch"] == epoch:
            raise Interrupted
    return on_epoch_end


@pytest.mark.parametrize("method", ["standard", "logitnorm", "vos"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, method):
    full_model, full_extra, full = _train(method, on_epoch_end=_interrupt_at(-1))
    ckpt = tmp_path / "run.pt"
    with pytest.raises(Interrupted):  # dies during epoch 2's end: the file holds epoch 1
        _train(method, checkpoint=ckpt, on_epoch_end=_interrupt_at(2))
    payload = torch.load(ckpt, weights_only=True)
    assert payload["format"] == checkpoint.PLAIN_FORMAT and payload["epoch"] == 1
    model, extra, resumed = _train(method, checkpoint=ckpt, resume=ckpt, on_epoch_end=_interrupt_at(-1))
    assert _untimed(resumed) == _untimed(full) and len(resumed) == EPOCHS
    for (name, a), b in zip(full_model.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    if method == "vos":
        a, b = full_extra["objective"], extra["objective"]
        assert all(torch.equal(p, q) for p, q in zip(a.trainable(), b.trainable(), strict=True))
        assert torch.equal(a.criterion.data_dict, b.criterion.data_dict)
        assert a.criterion.number_dict == b.criterion.number_dict
    assert torch.load(ckpt, weights_only=True)["epoch"] == EPOCHS - 1


def test_resuming_a_finished_checkpoint_trains_nothing_more(tmp_path):
    ckpt = tmp_path / "run-{epoch}.pt"
    full_model, _, full = _train("standard", checkpoint=ckpt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-0.pt", "run-1.pt", "run-2.pt"]
    model, _, resumed = _train("standard", resume=tmp_path / "run-2.pt")
    assert resumed == full
    assert all(torch.equal(a, b) for a, b in zip(full_model.state_dict().values(), model.state_dict().values()))


def test_resume_refuses_other_settings_formats_and_corrupt_files(tmp_path):
    ckpt = tmp_path / "run.pt"
    _train("standard", checkpoint=ckpt)
    model, loader, _ = _setup("standard")
    with pytest.raises(CheckpointError, match="other settings"):
        train_plain(model, loader, EPOCHS + 1, 3e-3, "cpu", lr_schedule="cosine", resume=ckpt)
    with pytest.raises(CheckpointError, match="other settings"):
        train_plain(model, loader, EPOCHS, 3e-3, "cpu", lr_schedule="cosine", resume=ckpt,
                    objective=LogitNormObjective())
    inversion = tmp_path / "inversion.pt"
    checkpoint.save(inversion, 0, "x", {}, loader)  # a trainer checkpoint is not a train_plain one
    with pytest.raises(CheckpointError, match="not a niood-plain/1 checkpoint"):
        train_plain(model, loader, EPOCHS, 3e-3, "cpu", lr_schedule="cosine", resume=inversion)
    (tmp_path / "bad.pt").write_bytes(b"half a file")
    with pytest.raises(CheckpointError, match="corrupt"):
        train_plain(model, loader, EPOCHS, 3e-3, "cpu", lr_schedule="cosine", resume=tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="is a directory"):
        train_plain(model, loader, EPOCHS, 3e-3, "cpu", checkpoint=tmp_path)


def test_resume_with_another_number_of_processes_is_refused(tmp_path, monkeypatch):
    """A checkpoint records the number of processes that wrote it; a resume with another number
    is refused with a line that says how to go on, not started afresh."""
    ckpt = tmp_path / "run.pt"
    with monkeypatch.context() as mp:  # as rank 0 of two processes writes it: every rank's states
        mp.setattr(distributed, "gather_objects", lambda obj: [obj, obj])
        _train("standard", checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["world_size"] == 2
    with pytest.raises(CheckpointError, match=r"2 process\(es\), this one has 1: resume with the same number "
                                              r"\(torchrun --nproc-per-node 2\), or start over without resuming"):
        _train("standard", resume=ckpt)
    one = tmp_path / "one.pt"
    _train("standard", checkpoint=one)
    with pytest.raises(CheckpointError, match=r"1 process\(es\), this one has 2"):
        checkpoint.load(one, "any", [], world_size=2, format=checkpoint.PLAIN_FORMAT)


def _bench_ctx(tmp_path):
    from niood_plugin.bench.config import BenchConfig
    from niood_plugin.bench.methods import MethodContext
    from niood_plugin.data import TensorData

    x, y = template_data(40)
    return MethodContext(cfg=BenchConfig(preset="smoke"), train=TensorData(x, y, "t"), val=None, num_classes=K,
                         image_shape=(1, 28, 28), device=torch.device("cpu"), progress=False,
                         checkpoint_dir=tmp_path, sample_dir=tmp_path / "s", resume=True, get=lambda m: None)


def test_harness_names_checkpoints_alike_for_any_number_of_processes(tmp_path, monkeypatch):
    """The model cache keys the number of processes (models differ), the checkpoint name does
    not: a --resume with another number finds the file and is refused by it."""
    from niood_plugin.bench import methods

    ctx = _bench_ctx(tmp_path)
    one_key, one_path = methods.cache_key("standard", ctx), ctx.checkpoint_path("standard")
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert methods.cache_key("standard", ctx) != one_key
    assert ctx.checkpoint_path("standard") == one_path == tmp_path / f"standard-{one_key}.pt"


ARGS = ["run", "--preset", "smoke", "--quiet", "--test-limit", "60", "--method", "standard", "--detectors", "msp"]


def test_harness_resumes_standard_after_an_interruption(tmp_path, monkeypatch):
    """`niood-bench run --method standard` interrupted after epoch 1, then `--resume`: resumed
    from its checkpoint, with the results of an uninterrupted run; the checkpoint is gone after."""
    from niood_plugin.cli import main

    whole = CliRunner().invoke(main, ARGS + ["--out", str(tmp_path / "whole")], catch_exceptions=False)
    assert whole.exit_code == 0, whole.output
    out = tmp_path / "cut"
    save = checkpoint.PlainRun.save

    def save_then_die(self, path, epoch, *args, **kwargs):
        save(self, path, epoch, *args, **kwargs)
        if epoch == 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(checkpoint.PlainRun, "save", save_then_die)
        cut = CliRunner().invoke(main, ARGS + ["--out", str(out)])
    assert cut.exit_code == 130, cut.output
    [ckpt] = (out / "checkpoints").glob("standard-*.pt")
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    resumed = CliRunner().invoke(main, ARGS + ["--out", str(out), "--resume"], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    a = json.loads((out / "results.json").read_text())
    b = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert a["methods"]["standard"]["start"] == f"resumed from checkpoint {ckpt.name}"
    assert _untimed(a["methods"]["standard"]["history"]) == _untimed(b["methods"]["standard"]["history"])
    assert [r["auroc"] for r in a["results"]] == [r["auroc"] for r in b["results"]]
    assert not (out / "checkpoints").exists()
