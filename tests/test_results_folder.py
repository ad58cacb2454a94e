"""Results folders: a re-run removes only the files the previous run recorded that it wrote
(never by a name's pattern, never through a link, nothing outside the folder); one command
holds a folder at a time (a lock file; a stale one is taken over); the longest path a run
will write is checked before training; a failed write names the file.  One smoke training
of ``inversion`` is shared by the module; the re-runs use its cached model."""
import errno
import json
import logging
import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from niood_plugin.cli import main, user_message

ARGS = ["run", "--preset", "smoke", "--quiet", "--test-limit", "60", "--train-limit", "500", "--method", "inversion",
        "--epochs", "1"]


def _lock(folder, pid, host=None):
    """A lock file as a running command writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    info = {"pid": pid, "host": host or socket.gethostname(), "command": "niood-bench run",
            "started_at": "2024-01-01T00:00:00+00:00", "token": "0123456789abcdef"}
    (folder / ".niood.lock").write_text(json.dumps(info))
    return folder / ".niood.lock"


def _dead_pid():
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(p.stdout)


@pytest.fixture
def live_pid():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p.pid
    p.kill()
    p.wait()


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    out = root / "run"
    result = CliRunner().invoke(main, ARGS + ["--ood", "gaussian,uniform", "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return root, out, json.loads((out / "results.json").read_text())


def test_results_record_the_files_the_run_wrote(first):
    _, out, payload = first
    written = payload["files"]["written"]
    assert {"roc_gaussian.png", "roc_uniform.png"} <= set(written)
    assert any(name.startswith("samples/inversion/samples_epoch_") for name in written)
    for name, meta in written.items():
        assert (out / name).stat().st_size == meta["bytes"] and len(meta["sha256"]) == 64
    assert not (out / ".niood.lock").exists()   # released at the end


def test_a_rerun_removes_what_the_last_run_wrote_and_nothing_else(first, caplog):
    """Outside the folder: a link in place of samples/ leads to the user's photos; inside it: a
    figure of the user's named like our plots; a stale lock of a dead process.  The re-run
    (one OOD set fewer) removes only the previous run's own stale ROC plot."""
    root, out, payload = first
    ext = root / "elsewhere"
    (ext / "photos").mkdir(parents=True)
    (ext / "photos" / "a.txt").write_text("mine")
    (ext / "fig").mkdir()
    (ext / "fig" / "samples_epoch_001.png").write_bytes(b"mine too")
    (out / "samples").rename(root / "samples-moved")
    (out / "samples").symlink_to(ext, target_is_directory=True)
    (out / "roc_paper-figure.png").write_bytes(b"the user's figure")
    (out / "hist_mine.png").write_bytes(b"the user's histogram")
    _lock(out, _dead_pid())
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(main, ARGS + ["--ood", "gaussian", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (ext / "photos" / "a.txt").read_text() == "mine"                          # outside: untouched
    assert (ext / "fig" / "samples_epoch_001.png").read_bytes() == b"mine too"
    assert (out / "roc_paper-figure.png").is_file() and (out / "hist_mine.png").is_file()  # the user's: kept
    assert not (out / "roc_uniform.png").exists() and (out / "roc_gaussian.png").is_file()
    files = json.loads((out / "results.json").read_text())["files"]
    assert "roc_uniform.png" in files["removed"]
    assert set(files["removed"]) <= set(payload["files"]["written"]) - set(files["written"])
    assert "took over the lock" in caplog.text and not (out / ".niood.lock").exists()


def test_removal_checks_each_file_it_recorded(tmp_path, caplog):
    """A recorded file changed since, or reached through a link (samples/<method> linked out),
    is kept; an unchanged one goes, and so do the folders it leaves empty."""
    from niood_plugin.bench.outputs import collect_outputs, record_outputs

    out, ext = tmp_path / "run", tmp_path / "ext"
    for d in ("samples/old", "samples/linked"):
        (out / d).mkdir(parents=True)
    (out / "samples/old/samples_epoch_001.png").write_bytes(b"grid")
    (out / "samples/linked/samples_epoch_001.png").write_bytes(b"grid")
    (out / "roc_a.png").write_bytes(b"plot a")
    (out / "roc_b.png").write_bytes(b"plot b")
    record = record_outputs(out, [out / "roc_a.png", out / "roc_b.png"], ["old", "linked"])
    (out / "results.json").write_text(json.dumps({"files": {"written": record, "removed": []}}))
    (out / "roc_b.png").write_bytes(b"the user's own version")
    (out / "samples/linked").rename(ext)
    (out / "samples/linked").symlink_to(ext, target_is_directory=True)
    with caplog.at_level(logging.INFO):
        outputs = collect_outputs(out, "run", [], [])
        assert outputs.tidy() == ["roc_a.png", "samples/old/samples_epoch_001.png"]
    assert "removed 2 file(s)" in caplog.text and "samples/old/samples_epoch_001.png" in caplog.text
    assert not (out / "samples/old").exists()
    assert (out / "roc_b.png").read_bytes() == b"the user's own version"
    assert (ext / "samples_epoch_001.png").is_file()
    assert "kept 2 file(s)" in caplog.text and "through the link" in caplog.text


def test_a_folder_without_a_record_loses_nothing(tmp_path, caplog):
    """A results folder of a harness that recorded nothing: stale-looking plots are named in a
    warning and kept."""
    from niood_plugin.bench.outputs import collect_outputs

    (tmp_path / "samples" / "fig").mkdir(parents=True)
    (tmp_path / "roc_old.png").write_bytes(b"x")
    (tmp_path / "results.json").write_text(json.dumps({"kind": "run", "config": {}, "results": []}))
    with caplog.at_level(logging.WARNING):
        assert collect_outputs(tmp_path, "run", [], ["inversion"]).tidy() == []
    assert (tmp_path / "roc_old.png").exists() and (tmp_path / "samples" / "fig").exists()
    assert "roc_old.png" in caplog.text and "samples/fig" in caplog.text and "none were removed" in caplog.text


def test_remove_path_never_follows_a_link_or_leaves_the_folder(tmp_path):
    from niood_plugin.bench.outputs import remove_path

    out, ext = tmp_path / "run", tmp_path / "ext"
    (ext / "inversion").mkdir(parents=True)
    (ext / "inversion" / "a.txt").write_text("mine")
    out.mkdir()
    (out / "samples").symlink_to(ext, target_is_directory=True)
    assert not remove_path(out / "samples" / "inversion", root=out)       # through the link
    assert not remove_path(ext / "inversion", root=out)                    # outside the folder
    assert not remove_path(out / "samples" / "inversion")                  # no folder held
    assert (ext / "inversion" / "a.txt").read_text() == "mine"
    (out / "own").mkdir()
    (out / "own" / "link").symlink_to(ext, target_is_directory=True)
    assert remove_path(out / "own", root=out)                              # the link inside goes, not its target
    assert (ext / "inversion" / "a.txt").is_file()


def test_a_second_run_into_a_held_folder_is_refused(first, live_pid):
    _, out, _ = first
    before = (out / "results.json").read_bytes()
    lock = _lock(out, live_pid)
    try:
        result = CliRunner().invoke(main, ARGS + ["--out", str(out)])
        assert result.exit_code == 2, result.output
        line = result.output.strip()
        assert "\n" not in line and str(lock) in line and f"pid {live_pid}" in line
        assert (out / "results.json").read_bytes() == before and lock.is_file()   # nothing touched
        other_host = _lock(out, live_pid, host="elsewhere.example")
        result = CliRunner().invoke(main, ARGS + ["--out", str(out)])
        assert result.exit_code == 2 and "elsewhere.example" in result.output
        assert other_host.is_file()
    finally:
        lock.unlink(missing_ok=True)


def test_attack_holds_its_folder_too(first, tmp_path, live_pid):
    _, out, _ = first
    cfg = tmp_path / "smoke.toml"
    cfg.write_text(f'id = "synthetic"\npreset = "smoke"\nwidth = 8\nfit_limit = 1000\nout = "{out}"\n')
    target = tmp_path / "attack"
    lock = _lock(target, live_pid)
    result = CliRunner().invoke(main, ["attack", "--config", str(cfg), "--start", "uniform", "--eps", "0", "--steps",
                                       "1", "--n", "8", "--test-limit", "20", "--quiet", "--method", "inversion",
                                       "--out", str(target)])
    assert result.exit_code == 2 and str(lock) in result.output and f"pid {live_pid}" in result.output


def test_the_lock_is_released_on_errors_and_ctrl_c(tmp_path, monkeypatch, live_pid):
    import niood_plugin.bench.runner as runner

    def interrupted(*args, **kwargs):
        assert (tmp_path / "new" / "run" / ".niood.lock").is_file()   # held while the run runs
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_run", interrupted)
    result = CliRunner().invoke(main, ARGS + ["--out", str(tmp_path / "new" / "run")])
    assert result.exit_code == 130
    assert not (tmp_path / "new").exists()           # lock released, the folders it made removed
    monkeypatch.setattr(runner, "_run", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    (tmp_path / "kept").mkdir()
    result = CliRunner().invoke(main, ARGS + ["--out", str(tmp_path / "kept")])
    assert result.exit_code == 2 and not (tmp_path / "kept" / ".niood.lock").exists() and (tmp_path / "kept").is_dir()
    # under torchrun only rank 0 writes the folder, so only rank 0 takes the lock
    _lock(tmp_path / "ranks", live_pid)
    monkeypatch.setattr(runner.distributed, "is_main", lambda: False)
    monkeypatch.setattr(runner, "_run", lambda *a, **k: {})
    assert runner.run(runner.BenchConfig(id="synthetic", ood=["gaussian"], preset="smoke", methods=["inversion"],
                                         out=str(tmp_path / "ranks"))) == {}


def test_a_path_too_long_for_the_file_system_fails_before_training(tmp_path, monkeypatch):
    import niood_plugin.bench.runner as runner

    limit = os.pathconf(tmp_path, "PC_PATH_MAX")
    out = str(tmp_path)
    while len(os.fsencode(out)) < limit - 50:
        out = os.path.join(out, "d" * min(200, limit - 51 - len(os.fsencode(out))))
    assert len(os.fsencode(out)) == limit - 50   # the folder itself would fit ...
    monkeypatch.setattr(runner, "load_data", lambda cfg: pytest.fail("loaded data despite a path too long"))
    result = CliRunner().invoke(main, ARGS + ["--out", out])
    assert result.exit_code == 2, result.output
    assert "bytes below it" in result.output and "shorter" in result.output    # ... the files below it would not
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("writer", ["text", "bytes", "torch"])
def test_a_full_disk_names_the_file(tmp_path, monkeypatch, writer):
    import torch

    from niood_plugin import files

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full)
    path = tmp_path / "out" / "results.json"
    write = {"text": lambda: files.atomic_write_text(path, "{}"), "bytes": lambda: files.atomic_write_bytes(path, b"x"),
             "torch": lambda: files.atomic_torch_save({"w": torch.zeros(2)}, path)}[writer]
    with pytest.raises(OSError) as info:
        write()
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert user_message(info.value) == f"No space left on device: {path}"
    assert list(path.parent.iterdir()) == []    # no temporary file left behind


def test_a_full_disk_under_a_write_that_names_no_file_names_the_folder(tmp_path, monkeypatch):
    """A plot or grid written by a library with a plain open().write() names no file; the run
    names the folder it writes into."""
    import niood_plugin.bench.runner as runner

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runner, "_run", full)
    result = CliRunner().invoke(main, ARGS + ["--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.strip() == f"niood-bench: error: No space left on device: {tmp_path / 'run'}"


def test_a_full_disk_while_taking_the_lock_names_the_lock(tmp_path, monkeypatch):
    from niood_plugin.bench.lock import FolderLock

    real_open = open

    def full_open(file, mode="r", *args, **kwargs):
        if "x" in mode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_open)
    with pytest.raises(OSError) as info:
        FolderLock(tmp_path / "run").acquire()
    assert user_message(info.value) == f"No space left on device: {tmp_path / 'run' / '.niood.lock'}"
    assert not (tmp_path / "run").exists()


def test_sigterm_ends_a_run_like_ctrl_c_and_releases_the_lock(tmp_path):
    """torchrun and schedulers stop a process with SIGTERM: the run's folder must not stay locked."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "niood_plugin.cli", "run", "--preset", "smoke", "--out", str(out),
                             "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = out / ".niood.lock"
    deadline = time.time() + 120
    while not lock.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert lock.exists(), proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err, err
    assert not lock.exists()
