"""Several processes (torchrun, gloo on CPU): the trainer and the harness under
``torch.distributed``.  Every test launches the real launcher, ``python -m torch.distributed.run``,
on 127.0.0.1; together they take about a minute on 2 cores."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from niood_plugin import distributed
from niood_plugin.data import BatchLoader, TensorData

HERE = Path(__file__).parent
SMOKE = ["run", "--preset", "smoke", "--quiet", "--test-limit", "100", "--epochs", "3", "--method", "inversion,standard,vos,fig",
         "--set", "inversion_steps=12", "--set", "samples_per_step=220"]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32",
                                reason="needs torch.distributed with gloo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, *args: str, marker: str = "", wait: bool = True, cwd=None):
    """``torchrun --nproc-per-node nproc args`` on this machine (one thread per process)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
           "127.0.0.1", "--master-port", str(_free_port()), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NIOOD_TEST_RUN": marker, "PYTHONPATH": str(HERE.parent)}
    if not wait:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_without_a_process_group_everything_is_one_process():
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    data = TensorData(torch.zeros(10, 1, 4, 4), torch.arange(10), "t")
    assert data.loader(batch_size=4, shuffle=True, distributed=True).sampler is None
    t = torch.arange(6.0)
    assert distributed.all_gather_cat(t) is t and distributed.all_reduce_sum([1, 2]) == [1.0, 2.0]
    assert [distributed.shard(10, r, 3) for r in range(3)] == [slice(0, 3), slice(3, 6), slice(6, 10)]
    assert distributed.rank_seed(7, 0) == 7 and distributed.rank_seed(7, 1) != 7


def test_only_a_launcher_environment_joins_a_group(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("RANK", "0")  # e.g. set by a scheduler: not a torchrun launch
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.launched() and distributed.setup("cpu") == torch.device("cpu")
    assert not distributed.active()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert distributed.launched()


def test_batch_loader_follows_a_distributed_sampler():
    data = TensorData(torch.arange(10.0).view(10, 1, 1, 1) / 10, torch.arange(10), "t")
    parts = []
    for r in range(2):
        s = torch.utils.data.DistributedSampler(range(10), num_replicas=2, rank=r, shuffle=True, seed=3)
        s.set_epoch(1)
        loader = BatchLoader(data.x, data.y, batch_size=2, sampler=s)
        assert len(loader) == 3
        parts.append(torch.cat([y for _, y in loader]))
    # the two ranks' shards are disjoint and together all of the data, in the sampler's order
    assert sorted(torch.cat(parts).tolist()) == list(range(10))
    s = torch.utils.data.DistributedSampler(range(10), num_replicas=2, rank=0, shuffle=True, seed=3)
    s.set_epoch(1)
    assert parts[0].tolist() == list(s)
    with pytest.raises(ValueError, match="exclude each other"):
        BatchLoader(data.x, data.y, shuffle=True, sampler=s)


def _load(path):
    return torch.load(path, weights_only=False)


@pytest.fixture(scope="module")
def two_process_fits(tmp_path_factory):
    """One 2-process launch of both runs of tests/dist_fit.py."""
    out = tmp_path_factory.mktemp("fit") / "two"
    torchrun(2, str(HERE / "dist_fit.py"), str(out), "exact", "default")
    return out


def test_two_process_fit_equals_one_process_up_to_rounding(two_process_fits, tmp_path):
    """Without anything that depends on how a batch is split (BatchNorm, dropout, class-weighted
    CE), 2 processes at the same global batch are 1 process: same sampler order, garbage shares,
    synchronised gradients, gathered pool, all-reduced novelty means and figures."""
    torchrun(1, str(HERE / "dist_fit.py"), str(tmp_path / "one"), "exact")
    two, one = _load(f"{two_process_fits}.exact.0.pt"), _load(tmp_path / "one.exact.0.pt")
    assert (two["world_size"], one["world_size"]) == (2, 1)
    assert torch.equal(two["pool"], one["pool"]) or (two["pool"].float() - one["pool"].float()).abs().max() <= 1
    for a, b in zip(two["history"], one["history"], strict=True):
        for k, v in a.items():  # measured: within 3e-5 relative, 4e-6 absolute
            if isinstance(v, float):
                assert v == pytest.approx(b[k], rel=1e-4, abs=1e-5), (a["epoch"], k)
            elif k != "per_class":
                assert v == b[k], (a["epoch"], k)
    # Adam's steps on near-zero gradients amplify rounding; measured at most 0.04% (classifier) and
    # 0.6% (generator) of a tensor's norm, where unsynchronised gradients give tens of percent
    for key, rel in (("classifier", 0.01), ("generator", 0.05)):
        for name, v in two[key].items():
            ref = one[key][name].float()
            assert (v.float() - ref).norm() <= rel * ref.norm() + 1e-6, (key, name)
    # train_plain in DDP (standard, LogitNorm, VOS): the same
    for a, b in zip(two["plain_history"], one["plain_history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["train_id_acc"] == pytest.approx(b["train_id_acc"], abs=1e-6)
    for name, v in two["plain"].items():
        ref = one["plain"][name].float()
        assert (v.float() - ref).norm() <= 0.01 * ref.norm() + 1e-6, ("plain", name)


def test_two_process_fit_keeps_the_ranks_identical(two_process_fits):
    """The user's setting (BatchNorm with per-rank statistics, dropout, weighted CE, negatives):
    both ranks end every epoch with the same weights, running statistics, history and pool."""
    r0, r1 = _load(f"{two_process_fits}.default.0.pt"), _load(f"{two_process_fits}.default.1.pt")
    for key in ("classifier", "generator"):
        for name, v in r0[key].items():
            assert torch.equal(v, r1[key][name]), (key, name)
    assert r0["history"] == r1["history"] and torch.equal(r0["pool"], r1["pool"])
    hist = r0["history"]
    assert [e["epoch"] for e in hist] == [0, 1, 2] and hist[-1]["pool_size"] == 2 * 110  # all of the garbage
    assert hist[0]["noise_samples"] == 64  # class counts summed over the ranks: 640 images / 10 classes
    assert hist[-1]["negatives"] and hist[-1]["val_acc"] > 0.4  # learns (chance: 0.1)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    torchrun(2, "-m", "niood_plugin.cli", *SMOKE, "--out", str(out))
    return out


def test_two_process_bench_run_writes_one_results_folder(two_process_run):
    payload = json.loads((two_process_run / "results.json").read_text())
    assert payload["environment"]["world_size"] == 2 and payload["environment"]["backend"] == "gloo"
    assert {r["method"] for r in payload["results"]} == {"inversion", "standard", "vos", "fig"}
    assert (two_process_run / "results.csv").is_file() and (two_process_run / "results.md").is_file()
    assert not (two_process_run / "checkpoints").exists()  # finished: its checkpoints are removed
    assert len(list((two_process_run / "models").glob("*.pt"))) == 4  # written once, by rank 0
    assert [e["epoch"] for e in payload["methods"]["inversion"]["history"]] == [0, 1, 2, 3]


def _rank_pids(marker: str, rank: int) -> list[int]:
    """Processes started by the launcher for ``marker`` with RANK=rank (found by their environment)."""
    found = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            items = env.read_bytes().split(b"\0")
        except OSError:
            continue
        if f"NIOOD_TEST_RUN={marker}".encode() in items and f"RANK={rank}".encode() in items:
            found.append(int(env.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks through /proc")
def test_sigkill_of_one_rank_then_resume_equals_an_uninterrupted_run(two_process_run, tmp_path):
    out, marker = tmp_path / "run", uuid.uuid4().hex
    proc = torchrun(2, "-m", "niood_plugin.cli", *SMOKE, "--out", str(out), marker=marker, wait=False)
    deadline = time.time() + 240
    while not list((out / "checkpoints").glob("inversion-*.pt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # into the next epoch
    victims = _rank_pids(marker, 1)
    assert proc.poll() is None and victims, "the run ended before a rank could be killed: make it longer"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, log[-2000:]
    assert not (out / "results.json").exists()
    ckpt = torch.load(next((out / "checkpoints").glob("inversion-*.pt")), weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["state"]["ranks"]) == 2 and ckpt["epoch"] < 3

    torchrun(2, "-m", "niood_plugin.cli", *SMOKE, "--out", str(out), "--resume")
    resumed = json.loads((out / "results.json").read_text())
    whole = json.loads((two_process_run / "results.json").read_text())
    assert resumed["methods"]["inversion"]["start"].startswith("resumed from checkpoint")
    key = lambda r: (r["method"], r["detector"], r["ood"])  # noqa: E731
    a, b = sorted(resumed["results"], key=key), sorted(whole["results"], key=key)
    assert [key(r) for r in a] == [key(r) for r in b]
    for ra, rb in zip(a, b):
        assert (ra["auroc"], ra["fpr95"], ra["id_accuracy"]) == (rb["auroc"], rb["fpr95"], rb["id_accuracy"]), key(ra)
