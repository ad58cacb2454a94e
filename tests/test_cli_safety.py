"""Nothing lost: an output folder belongs to one command, a run removes only its own
checkpoints and the stale plots the previous run recorded, files get the user's umask, and
results.json says where it came from.  One smoke training of ``inversion`` is shared by the
module; the rest reuses its cache."""
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import niood_plugin
from niood_plugin.cli import main

ARGS = ["run", "--preset", "smoke", "--quiet", "--test-limit", "60", "--method", "inversion", "--detectors", "msp"]
FOREIGN = "inversion-0123456789abcdef.pt"   # an interrupted run of other settings in the same --out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A smoke run with --resume into a folder that already holds another configuration's
    checkpoint and a previous run's plots; every checkpoint it saved is recorded, the one after
    epoch 1 copied aside (an interruption there)."""
    from niood_plugin import checkpoint

    root = tmp_path_factory.mktemp("safety")
    out = root / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / FOREIGN).write_bytes(b"another configuration's progress")
    (out / "roc_fig_mnist.png").write_bytes(b"old plot")
    (out / "hist_standard_msp.png").write_bytes(b"old plot")
    (out / "samples" / "fig").mkdir(parents=True)
    (out / "samples" / "fig" / "samples_epoch_001.png").write_bytes(b"old grid")
    saved, save = [], checkpoint.save

    def recording_save(path, epoch, *args, **kwargs):
        written = save(path, epoch, *args, **kwargs)
        saved.append(written)
        if epoch == 1:
            shutil.copy(written, root / "after-epoch-1.pt")
        return written

    old_umask = os.umask(0o022)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(checkpoint, "save", recording_save)
            args = ARGS + ["--out", str(out), "--resume"]
            result = CliRunner().invoke(main, args, catch_exceptions=False)
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.output
    return {"root": root, "out": out, "saved": saved, "args": args,
            "payload": json.loads((out / "results.json").read_text())}


def test_a_run_removes_only_its_own_checkpoints(trained):
    out, saved = trained["out"], trained["saved"]
    assert saved and all(p.parent == out / "checkpoints" for p in saved)      # it did checkpoint ...
    assert not any(p.exists() for p in saved)                                  # ... and removed its own
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [FOREIGN]  # the other one stays


def test_resume_says_why_it_started_fresh_or_resumed(trained, tmp_path):
    note = trained["payload"]["methods"]["inversion"]["start"]
    assert note.startswith("started fresh") and "settings changed" in note and FOREIGN in note
    # an interruption after epoch 1, in a folder of its own: --resume continues it and says so
    own = trained["saved"][0].name
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(trained["root"] / "after-epoch-1.pt", tmp_path / "checkpoints" / own)
    result = CliRunner().invoke(main, ARGS + ["--out", str(tmp_path), "--resume"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["methods"]["inversion"]["start"] == f"resumed from checkpoint {own}"
    assert [r["auroc"] for r in payload["results"]] == [r["auroc"] for r in trained["payload"]["results"]]
    assert not (tmp_path / "checkpoints").exists()     # its own checkpoint gone, the empty folder too


def test_attack_writes_beside_the_run_and_never_over_it(trained, tmp_path):
    out = trained["out"]
    before = (out / "results.json").read_bytes()
    cfg = tmp_path / "smoke.toml"
    cfg.write_text(f'id = "synthetic"\npreset = "smoke"\nwidth = 8\nfit_limit = 1000\nout = "{out}"\n')
    attack = ["attack", "--config", str(cfg), "--start", "uniform", "--eps", "0,1", "--steps", "2", "--n", "20",
              "--test-limit", "40", "--quiet", "--method", "inversion", "--detectors", "msp"]
    into_run = CliRunner().invoke(main, attack + ["--out", str(out)])
    assert into_run.exit_code == 2 and "run's own folder" in into_run.output
    result = CliRunner().invoke(main, attack, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    beside = out.with_name(out.name + "-attack")
    assert json.loads((beside / "results.json").read_text())["kind"] == "attack"
    assert (out / "results.json").read_bytes() == before
    # and the other way round: a run does not overwrite an attack's folder, compare refuses it
    over = CliRunner().invoke(main, ARGS + ["--out", str(beside)])
    assert over.exit_code == 2 and "niood-bench attack" in over.output
    cmp = CliRunner().invoke(main, ["compare", str(out), str(beside)])
    assert cmp.exit_code == 2 and "run` results only" in cmp.output
    assert CliRunner().invoke(main, ["compare", str(out)]).exit_code == 0


def test_written_files_follow_the_umask(trained):
    out = trained["out"]
    files = [out / "results.json", out / "results.csv", out / "results.md", *out.glob("*.png"),
             *(out / "models").glob("*.pt")]
    assert len(files) >= 5
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
    assert set(modes.values()) == {0o644}, modes


def test_results_record_their_provenance(trained):
    payload = trained["payload"]
    assert {"command", "config", "environment", "timings", "id_accuracy", "methods", "results", "notes"} <= set(payload)
    prov = payload["provenance"]
    assert payload["kind"] == prov["kind"] == "run"
    assert prov["argv"] == trained["args"] and payload["command"].endswith(" ".join(trained["args"][-3:]))
    git = ["git", "-C", str(Path(niood_plugin.__file__).parent)]
    if subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True).returncode == 0:
        # the tests run from a git checkout: a commit of it is recorded (HEAD may have moved since)
        kind = subprocess.run([*git, "cat-file", "-t", str(prov["commit"])], capture_output=True, text=True)
        assert kind.stdout.strip() == "commit" and isinstance(prov["dirty"], bool)
    else:
        assert prov["commit"] is None
    assert prov["seed"] == 0 and prov["wall_s"] > 0
    assert {"cpu", "cpu_count", "torch_threads", "gpu"} <= set(prov["machine"])
    assert payload["config"]["negatives"] == {"kinds": "warp", "per_image": 1.0, "last_epochs": 2}  # the default


def test_a_rerun_replaces_the_previous_runs_plots_and_nothing_else(trained):
    out = trained["out"]
    # the folder held plots and grids but no record of what wrote them: none is removed by its name
    assert (out / "roc_fig_mnist.png").exists() and (out / "hist_standard_msp.png").exists()
    assert (out / "samples" / "fig" / "samples_epoch_001.png").exists()
    written = trained["payload"]["files"]["written"]
    assert "roc_uniform.png" in written
    (out / "my-notes.txt").write_text("mine")
    grids = sorted((out / "samples" / "inversion").glob("*.png"))
    result = CliRunner().invoke(main, [*ARGS, "--ood", "gaussian", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    files = json.loads((out / "results.json").read_text())["files"]
    stale = set(written) - set(files["written"])     # what the previous run recorded and this one did not write
    assert "roc_uniform.png" in stale and sorted(files["removed"]) == sorted(stale)
    assert not any((out / name).exists() for name in stale) and (out / "roc_gaussian.png").is_file()
    assert (out / "my-notes.txt").read_text() == "mine" and (out / "roc_fig_mnist.png").exists()
    assert grids and sorted((out / "samples" / "inversion").glob("*.png")) == grids  # same cached model's grids


def test_provenance_is_the_code_at_the_start_of_the_run(tmp_path, monkeypatch):
    """The commit recorded is the one the run started from, not HEAD (or a tree dirtied by the
    run's own outputs) at its end."""
    import niood_plugin.bench.runner as runner

    states = iter([{"commit": "at-start", "dirty": False}, {"commit": "at-end", "dirty": True}])
    monkeypatch.setattr(runner, "git_state", lambda *a, **k: next(states))
    result = CliRunner().invoke(main, [*ARGS, "--out", str(tmp_path / "run")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    prov = json.loads((tmp_path / "run" / "results.json").read_text())["provenance"]
    assert (prov["commit"], prov["dirty"]) == ("at-start", False)


def test_dirty_means_the_package_code_changed_not_result_files(tmp_path):
    from niood_plugin.bench.provenance import git_state

    repo, pkg = tmp_path / "repo", tmp_path / "repo" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "code.py").write_text("x = 1\n")
    (repo / "results.json").write_text("{}")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "init"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    assert git_state(pkg)["dirty"] is False
    (repo / "results.json").write_text('{"new": 1}')
    state = git_state(pkg)
    assert state["dirty"] is False and state["other_changes"] == 1
    (pkg / "code.py").write_text("x = 2\n")
    assert git_state(pkg)["dirty"] is True
