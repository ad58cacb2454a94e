"""Bad invocations: every one is one line on stderr, exit code 2, no traceback, and nothing
created or trained (issue 24).  Values are typed as declared: a bool is never a number,
YAML 1.1 words (yes/on/off) are strings, ``1e-3`` is a float."""
import json
import os

import pytest
import torch
from click.testing import CliRunner

from niood_plugin.bench.config import BenchConfig, apply, apply_sets, load_config_file, parse_value
from niood_plugin.cli import main
from niood_plugin.errors import ConfigError

RUN = ["run", "--preset", "smoke", "--quiet"]
ATTACK = ["attack", "--preset", "smoke", "--quiet", "--start", "uniform", "--eps", "0,1"]


def _file(name, content):
    def make(tmp):
        path = tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return str(path)
    return make


def _results(tmp, kind, body=None):
    out = tmp / f"{kind}-results"
    out.mkdir()
    payload = body if body is not None else {"kind": kind, "config": {"id": "synthetic"}, "results": []}
    (out / "results.json").write_text(json.dumps(payload))
    return str(out)


def _dir(tmp, name):
    (tmp / name).mkdir()
    return str(tmp / name)


def _foreign(tmp):
    (tmp / "mine").mkdir()
    (tmp / "mine" / "thesis.tex").write_text("x")
    return str(tmp / "mine")


def _with_child(tmp, child, as_dir):
    out = tmp / "prev"
    out.mkdir()
    (out / child).mkdir() if as_dir else (out / child).write_text("x")
    return str(out)


cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
mps = pytest.mark.skipif(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                         reason="MPS is available here")

CASES = [
    # names
    (RUN + ["--id", "nosuchset"], "unknown dataset"),
    (RUN + ["--method", "magic"], "unknown method"),
    (RUN + ["--detectors", "psychic"], "unknown detector"),
    (["run", "--preset", "turbo"], "unknown preset"),
    (RUN + ["--set", "nope=1"], "unknown hyperparameter"),
    (RUN + ["--id", "synthetic", "--ood", "synthetic"], "both the ID set and an OOD set"),
    (RUN + ["--id", "gaussian"], "no class labels"),
    # typing: YAML 1.1 words are strings, a bool is never a number, an int never a bool
    (RUN + ["--set", "lr=yes"], "lr must be"),
    (RUN + ["--set", "lr=True"], "lr must be"),
    (RUN + ["--set", "gamma=true"], "gamma must be"),
    (RUN + ["--set", "weighted_ce=yes"], "weighted_ce must be"),
    (RUN + ["--set", "weighted_ce=1"], "weighted_ce must be"),
    (RUN + ["--set", "epochs=2.5"], "epochs must be"),
    (RUN + ["--set", "novelty"], "--set expects KEY=VALUE"),
    (RUN + ["--set", "width=4"], "benchmark setting"),
    (RUN + ["--set", "jigsaw=1"], "moved to the negatives table"),
    (RUN + ["--set", "negatives=3"], "negatives=none"),
    (RUN + ["--set", "negatives.bogus=1"], "unknown negatives key"),
    (RUN + ["--set", "negatives.per_image=true"], "negatives.per_image must be"),
    (RUN + ["--set", "negatives.kinds=blur"], "negatives:"),
    (RUN + ["--set", "lr=[1"], "not valid JSON"),
    (RUN + ["--epochs", "3", "--set", "epochs=2"], "epochs is given twice"),
    # ranges
    (RUN + ["--seed", "-1"], "seed must be an int in [0, 4294967295]"),
    (RUN + ["--seed", str(2**32)], "seed must be"),
    (RUN + ["--epochs", "0"], "epochs must be"),
    (RUN + ["--train-limit", "0"], "train_limit must be"),
    (RUN + ["--test-limit", "-5"], "test_limit must be"),
    (RUN + ["--seed", "x"], "not a valid integer"),
    (RUN + ["--frobnicate"], "No such option"),
    # devices
    (RUN + ["--device", "nonsense"], "not a torch device"),
    (RUN + ["--device", "CPU"], "did you mean 'cpu'"),
    pytest.param(RUN + ["--device", "cuda"], "CUDA is not available", marks=cuda),
    pytest.param(RUN + ["--device", "mps"], "MPS is not available", marks=mps),
    # detector lists
    (RUN + ["--detectors", ""], "detectors is empty"),
    (RUN + ["--detectors", "msp,msp"], "more than once"),
    (RUN + ["--detectors", "bal"], "method bal"),
    (RUN + ["--method", "standard", "--detectors", "garbage"], "method inversion"),
    # config files
    (lambda t: RUN + ["--config", _file("c.toml", 'id = "synthetic"\nfrobnicate = 3\n')(t)], "unknown key"),
    (lambda t: RUN + ["--config", _file("c.toml", "epochs = 4.0\n")(t)], "epochs must be an int"),
    (lambda t: RUN + ["--config", _file("c.toml", "epochs = true\n")(t)], "epochs must be an int"),
    (lambda t: RUN + ["--config", _file("c.toml", 'negatives = "warp"\n')(t)], "negatives must be a table"),
    (lambda t: RUN + ["--config", _file("c.toml", "epochs = [\n")(t)], "not valid TOML"),
    (lambda t: RUN + ["--config", _file("c.yaml", "epochs: yes\n")(t)], "epochs must be"),
    (lambda t: RUN + ["--config", _file("c.yaml", "seed: 1e3\n")(t)], "seed must be an int"),
    (lambda t: RUN + ["--config", _file("c.yaml", "hparams:\n  lr: on\n")(t)], "lr must be"),
    (lambda t: RUN + ["--config", _file("c.yaml", "epochs: 2\nepochs: 3\n")(t)], "duplicate key 'epochs'"),
    (lambda t: RUN + ["--config", _file("c.yaml", "a: [1\nb: 2\n")(t)], "at line 2"),
    (lambda t: RUN + ["--config", _file("c.yaml", "- 1\n- 2\n")(t)], "mapping"),
    (lambda t: RUN + ["--config", _file("c.toml", b"\xef\xbb\xbfepochs = 2\n")(t)], "byte-order mark"),
    (lambda t: RUN + ["--config", _file("c.yaml", b"\x89PNG\r\n\x1a\n\x00\x00")(t)], "binary"),
    (lambda t: RUN + ["--config", _file("c.yaml", b"epochs: \xff\xfe\n")(t)], "not UTF-8"),
    (lambda t: RUN + ["--config", _file("c.ini", "epochs = 2\n")(t)], "must end in"),
    (lambda t: RUN + ["--config", str(t / "missing.toml")], "does not exist"),
    (lambda t: RUN + ["--config", _dir(t, "d.toml")], "is a directory"),
    # output folders: of the right kind, writable, owned by this command
    (lambda t: RUN + ["--out", _file("afile", "x")(t)], "is a file"),
    (lambda t: RUN + ["--out", _file("afile", "x")(t) + "/sub"], "is a file"),
    (lambda t: RUN + ["--out", _with_child(t, "results.json", as_dir=True)], "results.json is a directory"),
    (lambda t: RUN + ["--out", _with_child(t, "models", as_dir=False)], "models is a file"),
    (lambda t: RUN + ["--out", str(t / ("x" * 300))], "limit"),
    (lambda t: RUN + ["--out", "bad\x00name"], "non-empty path"),
    (lambda t: RUN + ["--out", _foreign(t)], "holds no niood-bench results"),
    (lambda t: RUN + ["--out", _results(t, "attack")], "results of `niood-bench attack`"),
    (lambda t: RUN + ["--out", _results(t, "x", {"something": "else"})], "did not write"),
    (lambda t: RUN + ["--data-root", _file("afile", "x")(t)], "is a file"),
    (lambda t: ATTACK + ["--out", _results(t, "run")], "results of `niood-bench run`"),
    (lambda t: ATTACK + ["--out", "runs/smoke"], "the run's own folder"),
    # the attack's own parameters
    (ATTACK[:-2] + ["--eps", "0", "--n", "-1"], "--n must be"),
    (ATTACK[:-2] + ["--eps", "-1"], "--eps must be"),
    (ATTACK[:-2] + ["--eps", "nan"], "--eps must be"),
    (ATTACK[:-2] + ["--eps", "a,b"], "comma-separated numbers"),
    (ATTACK[:-2] + ["--eps", "1,1"], "more than once"),
    (ATTACK + ["--steps", "0"], "--steps must be"),
    (ATTACK + ["--lr", "0"], "--lr must be"),
    (["attack", "--preset", "smoke", "--start", "synthetic", "--eps", "0"], "in-distribution"),
    # compare
    (lambda t: ["compare", str(t / "nowhere")], "does not exist"),
    (lambda t: ["compare", _dir(t, "empty")], "no results.json"),
    (lambda t: ["compare", _file("r.json", "[1, 2]")(t)], "not a niood-bench results.json"),
    (lambda t: ["compare", _file("r.json", '{"kind": "run", "config": {"id": "x"}, "results": [3]}')(t)],
     "not a result row"),
    (lambda t: ["compare", _file("r.json", "{")(t)], "not valid JSON"),
    (lambda t: ["compare", _file("r.json", b"\x00\xff")(t)], "results.json"),
    (lambda t: ["compare", _results(t, "attack")], "compare reads `niood-bench run` results only"),
]


@pytest.mark.parametrize("args, expect", CASES)
def test_bad_invocation_is_one_line_exit_2(args, expect, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # default output folders (runs/...) land here, if anywhere
    args = args(tmp_path) if callable(args) else args
    if "--out" not in args and args[0] in ("run", "attack"):
        args = args + (["--out", str(tmp_path / "o")] if args[0] == "run" else [])
    before = set(tmp_path.rglob("*"))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("niood-bench: error: "), result.output
    assert expect in lines[0]
    assert result.stdout == ""            # the message is on stderr
    assert set(tmp_path.rglob("*")) == before, "a failed invocation created files"


def test_a_bug_is_reported_as_an_internal_error(monkeypatch, tmp_path):
    """Anything that is not the user's doing: one line that asks for --debug and a report, exit 1."""
    import niood_plugin.bench.runner as runner

    def broken(cfg):
        return {}["missing"]

    monkeypatch.setattr(runner, "load_data", broken)
    result = CliRunner().invoke(main, RUN + ["--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "internal error: KeyError" in lines[0] and "--debug" in lines[0]
    assert "Traceback" not in result.output
    debug = CliRunner().invoke(main, RUN + ["--out", str(tmp_path / "o"), "--debug"])
    assert isinstance(debug.exception, KeyError)


def test_errors_are_told_apart_by_type_alone(monkeypatch, tmp_path):
    """One of the library's checks (a NioodError) is the user's: exit 2; a plain ValueError, as
    torch, NumPy or Python raise inside a call, is a bug of ours (an input we did not check
    first): exit 1, whichever file raised it."""
    import niood_plugin.bench.runner as runner
    from niood_plugin.negatives import parse_kinds

    monkeypatch.setattr(runner, "load_data", lambda cfg: parse_kinds("blur"))
    result = CliRunner().invoke(main, RUN + ["--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "negatives must be one of" in result.output
    monkeypatch.setattr(runner, "load_data", lambda cfg: float("not a number"))
    result = CliRunner().invoke(main, RUN + ["--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "internal error: ValueError" in result.output


def test_the_library_raises_no_plain_value_or_type_error():
    """Every user error is one of the library's own classes (they subclass ValueError/TypeError),
    so the CLI can tell them from bugs by type; the CLI reads no source code to do it."""
    import ast
    from pathlib import Path

    import niood_plugin

    root = Path(niood_plugin.__file__).parent
    plain = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(exc, ast.Name) and exc.id in ("ValueError", "TypeError"):
                    plain.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not plain, plain
    cli_imports = {alias.name for node in ast.walk(ast.parse((root / "cli.py").read_text()))
                   if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    assert "ast" not in cli_imports and "linecache" not in cli_imports


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("-2", -2), ("1e-3", 1e-3), (".5", 0.5), ("2.", 2.0), ("true", True), ("False", False),
    ("none", None), ("yes", "yes"), ("on", "on"), ("off", "off"), ("y", "y"), ("warp", "warp"),
    ('"3"', "3"), ("[1, 2]", [1, 2]), ("1_000", "1_000"), ("0x10", "0x10"),
])
def test_set_values_parse_as_int_float_bool_string(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_set_typing_reaches_the_config():
    cfg = apply_sets(BenchConfig(), ["lr=1e-3", "weighted_ce=false", "negatives.kinds=warp",
                                     "negatives.last_epochs=2", "negatives.per_image=1"])
    assert cfg.hparams == {"lr": 1e-3, "weighted_ce": False}
    assert cfg.negatives == {"kinds": "warp", "last_epochs": 2, "per_image": 1}
    assert type(cfg.hparams["lr"]) is float
    assert cfg.recipe().trainer["lr"] == 1e-3          # accepted by the trainer's table
    assert apply_sets(cfg, ["negatives=none"]).negatives is None
    assert "negatives" in cfg.to_dict() and cfg.to_dict()["negatives"]["kinds"] == "warp"


def test_yaml_files_use_the_yaml_1_2_core_schema(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("id: synthetic\nepochs: 3\nhparams:\n  lr: 1e-3\n  weighted_ce: false\n"
                    "  conditioning: on\n  novelty: 017\nnegatives:\n  kinds: warp\n  last_epochs: null\n"
                    "out: 2001-12-14\n")
    values = load_config_file(path)
    assert values["hparams"] == {"lr": 1e-3, "weighted_ce": False, "conditioning": "on", "novelty": 17}
    assert values["negatives"] == {"kinds": "warp", "last_epochs": None}
    assert values["out"] == "2001-12-14"   # YAML 1.1 would make it a date
    cfg = apply(BenchConfig(), values, str(path))
    assert cfg.epochs == 3 and cfg.negatives["last_epochs"] is None


@pytest.mark.parametrize("field, value", [
    ("epochs", True), ("seed", False), ("width", True), ("fit_limit", 1.0), ("test_limit", "100"),
    ("batch_size", 0), ("threads", -1), ("ood", []), ("negatives", {"per_image": True}),
])
def test_bool_is_never_a_number_nor_a_float_an_int(field, value):
    with pytest.raises(ConfigError, match=field.split(".")[0]):
        apply(BenchConfig(), {field: value}, "test")


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root can write anywhere")
def test_unwritable_out_parent_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = CliRunner().invoke(main, RUN + ["--out", str(locked / "o")])
        assert result.exit_code == 2 and "not writable" in result.output
    finally:
        locked.chmod(0o700)


def test_ctrl_c_is_one_line_with_exit_130(monkeypatch, tmp_path):
    import niood_plugin.bench.runner as runner

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "load_data", interrupted)
    result = CliRunner().invoke(main, RUN + ["--out", str(tmp_path / "o")])
    assert result.exit_code == 130
    assert result.output.strip() == "niood-bench: interrupted; rerun with --resume to continue the training"
