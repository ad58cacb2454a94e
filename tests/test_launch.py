"""Launch settings of a distributed run (torchrun or by hand): every variable is checked before
a group is joined and named when wrong; the wait for the other processes is announced, bounded
and ended by Ctrl-C.  gloo on 127.0.0.1 with timeouts of seconds; most cases run in this
process (they fail before a group exists), three start subprocesses."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from niood_plugin import distributed
from niood_plugin.errors import ConfigError

HERE = Path(__file__).parent
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32",
                                reason="needs torch.distributed with gloo")
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
               "NIOOD_DIST_TIMEOUT_MIN", "NIOOD_DIST_JOIN_TIMEOUT_MIN", "NIOOD_DIST_BACKEND",
               "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def launch(monkeypatch):
    """Sets a hand launch's variables (a free port, a join timeout of 3 s); returns a setter."""
    for k in LAUNCH_VARS:
        monkeypatch.delenv(k, raising=False)

    def set_(**env):
        base = {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
                "NIOOD_DIST_JOIN_TIMEOUT_MIN": "0.05"}
        for k, v in {**base, **env}.items():
            if v is None:
                monkeypatch.delenv(k, raising=False)
            else:
                monkeypatch.setenv(k, v)
    yield set_
    assert not distributed.active()


@pytest.mark.parametrize("env, named", [
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc'"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0'"),
    ({"RANK": "-1"}, "RANK='-1'"),
    ({"RANK": "x"}, "RANK='x'"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 is not below WORLD_SIZE=2"),
    ({"MASTER_PORT": "http"}, "MASTER_PORT='http'"),
    ({"MASTER_PORT": "70000"}, "MASTER_PORT='70000'"),
    ({"MASTER_PORT": "0"}, "MASTER_PORT='0'"),
    ({"MASTER_ADDR": ""}, "MASTER_ADDR='' does not resolve"),
    ({"MASTER_ADDR": "no-such-host.invalid"}, "MASTER_ADDR='no-such-host.invalid' does not resolve"),
    ({"LOCAL_RANK": "abc"}, "LOCAL_RANK='abc'"),
    ({"LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "4"}, "LOCAL_RANK='2'"),
    ({"LOCAL_WORLD_SIZE": "3", "WORLD_SIZE": "2"}, "LOCAL_WORLD_SIZE='3'"),
    ({"NIOOD_DIST_TIMEOUT_MIN": "abc"}, "NIOOD_DIST_TIMEOUT_MIN='abc'"),
    ({"NIOOD_DIST_TIMEOUT_MIN": "-5"}, "NIOOD_DIST_TIMEOUT_MIN='-5'"),
    ({"NIOOD_DIST_TIMEOUT_MIN": "inf"}, "NIOOD_DIST_TIMEOUT_MIN='inf'"),
    ({"NIOOD_DIST_JOIN_TIMEOUT_MIN": "soon"}, "NIOOD_DIST_JOIN_TIMEOUT_MIN='soon'"),
    ({"NIOOD_DIST_BACKEND": "nccl"}, "NIOOD_DIST_BACKEND='nccl' needs device 'cuda'"),
    ({"NIOOD_DIST_BACKEND": "glooo"}, "NIOOD_DIST_BACKEND='glooo' is not a torch.distributed backend"),
    ({"MASTER_PORT": None}, "MASTER_PORT not"),  # an incomplete hand launch is not run as one process
])
def test_each_malformed_launch_variable_is_named_before_joining(launch, env, named):
    launch(**env)
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as err:
        distributed.setup("cpu")
    msg = str(err.value)
    assert named in msg and "\n" not in msg and ": " in msg  # the variable, its value, what to do
    assert time.monotonic() - t0 < 2.5, "checked before waiting at the rendezvous"


def test_a_backend_argument_is_checked_like_the_variable(launch):
    launch()
    with pytest.raises(ConfigError, match="backend='nccl' needs device 'cuda'"):
        distributed.setup("cpu", backend="nccl")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_cuda_without_a_gpu_is_refused_by_name(launch):
    launch(LOCAL_RANK="0")
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        distributed.setup("cuda")


def test_one_process_of_two_announces_its_wait_and_names_the_missing_rank(launch, capfd):
    """``RANK=0 WORLD_SIZE=2`` alone: before, it waited silently for the group timeout (180 min)."""
    launch(RANK="0", WORLD_SIZE="2")
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as err:
        distributed.setup("cpu")
    took = time.monotonic() - t0
    port = os.environ["MASTER_PORT"]
    assert 3 <= took < 10, took
    assert str(err.value).startswith(f"rank(s) 1 of WORLD_SIZE=2 did not arrive at 127.0.0.1:{port} within 0.05 min")
    assert "NIOOD_DIST_JOIN_TIMEOUT_MIN" in str(err.value)
    assert (f"niood: rank 0: waiting for 1 of 2 processes at 127.0.0.1:{port}; timeout 0.05 min"
            in capfd.readouterr().err)


def test_a_rank_without_rank_0_says_so_and_ends(launch, capfd):
    launch(RANK="1", WORLD_SIZE="2")
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"^no rendezvous at 127\.0\.0\.1:\d+ after 0\.05 min .*start the process "
                                          r"with RANK=0"):
        distributed.setup("cpu")
    assert 3 <= time.monotonic() - t0 < 10
    assert "waiting for rank 0 at 127.0.0.1:" in capfd.readouterr().err


def test_every_waiting_rank_names_the_one_missing():
    """WORLD_SIZE=3 with ranks 0 and 1 only (two ranks of one process, in two threads): both stop
    with the same line naming rank 2."""
    port, errors = _free_port(), {}

    def join(r):
        s = distributed._Launch(r, 3, None, f"127.0.0.1:{port}", "127.0.0.1", port, 1.0, 0.05)
        try:
            distributed._join(s)
        except ConfigError as exc:
            errors[r] = str(exc)

    host = threading.Thread(target=join, args=(0,))
    host.start()
    time.sleep(0.5)
    join(1)
    host.join(10)
    assert errors[0] == errors[1] and errors[0].startswith(f"rank(s) 2 of WORLD_SIZE=3 did not arrive at "
                                                           f"127.0.0.1:{port} within 0.05 min")


def test_a_rank_taken_twice_is_named(launch):
    """Two processes with ``RANK=1`` (here: rank 0's store, then this process as a second rank 1)."""
    launch(RANK="1", WORLD_SIZE="3")
    port = int(os.environ["MASTER_PORT"])
    host = torch.distributed.TCPStore("127.0.0.1", port, 3, True, wait_for_workers=False)
    torch.distributed.PrefixStore("niood_join/0", host).add("rank/1", 1)
    with pytest.raises(ConfigError, match=f"RANK=1 is taken by another process at 127.0.0.1:{port}"):
        distributed.setup("cpu")


def test_the_port_of_another_program_is_named(launch):
    launch(RANK="0", WORLD_SIZE="2")
    with socket.socket() as busy:
        busy.bind(("", int(os.environ["MASTER_PORT"])))
        busy.listen()
        with pytest.raises(ConfigError, match="MASTER_PORT=\\d+ is in use on this machine"):
            distributed.setup("cpu")


def test_ctrl_c_ends_the_wait_at_once(launch):
    """The library raises KeyboardInterrupt within a fraction of a second of SIGINT."""
    launch(RANK="0", WORLD_SIZE="2", NIOOD_DIST_JOIN_TIMEOUT_MIN="1")
    sent = []

    def interrupt():
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # even where SIGINT came in ignored
    timer = threading.Timer(1.0, interrupt)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            distributed.setup("cpu")
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert sent and time.monotonic() - sent[0] < 1.0


def _spawn(args, env, **kw):
    """A subprocess with SIGINT at its default (a shell may start background jobs with it ignored)."""
    full = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent), **env}
    return subprocess.Popen(args, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


def test_niood_bench_alone_of_two_announces_the_wait_and_ctrl_c_exits_130(launch, tmp_path):
    launch(RANK="0", WORLD_SIZE="2", NIOOD_DIST_JOIN_TIMEOUT_MIN="2")
    env = {k: os.environ[k] for k in LAUNCH_VARS if k in os.environ}
    proc = _spawn([sys.executable, "-m", "niood_plugin.cli", "run", "--preset", "smoke", "--out",
                   str(tmp_path / "run")], env, cwd=tmp_path)
    try:
        lines = []
        deadline = time.monotonic() + 120  # the import of the package takes a while on a loaded machine
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "waiting for 1 of 2 processes" in line or not line:
                break
        assert f"waiting for 1 of 2 processes at 127.0.0.1:{env['MASTER_PORT']}; timeout 2 min" in lines[-1], lines
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        rest = proc.communicate(timeout=30)[1]
        assert proc.returncode == 130, "".join(lines) + rest
        assert time.monotonic() - t0 < 5 and "interrupted" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_two_processes_started_by_hand_join_and_talk(launch):
    """Rank 1 starts first and waits for rank 0, which hosts the rendezvous; then a collective."""
    launch(WORLD_SIZE="2", NIOOD_DIST_JOIN_TIMEOUT_MIN="2")
    env = {k: os.environ[k] for k in LAUNCH_VARS if k in os.environ}
    code = ("import sys, time; from niood_plugin import distributed as d; time.sleep(float(sys.argv[1])); "
            "dev = d.setup('cpu'); print(d.rank(), d.world_size(), d.all_reduce_sum([d.rank() + 1])[0]); d.cleanup()")
    procs = [_spawn([sys.executable, "-c", code, str(delay)], {**env, "RANK": str(r)}) for r, delay in ((1, 0), (0, 3))]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=150))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o.split() for o, _ in outs] == [["1", "2", "3.0"], ["0", "2", "3.0"]], outs
