"""Every example runs, on tiny synthetic data, and refuses arguments it does not know."""
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# own_loop.py's default run is already the tiny one; the others take --tiny
ARGS = {"quickstart.py": ["--tiny"], "third_party_suite.py": ["--tiny"], "timm_backbone.py": ["--tiny"],
        "own_loop.py": []}


@pytest.mark.parametrize("name", ["quickstart.py", "third_party_suite.py", "timm_backbone.py", "own_loop.py"])
def test_example_runs(name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [name, *ARGS[name]])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    out = capsys.readouterr().out
    assert {"quickstart.py": "AUROC", "third_party_suite.py": "UEDetector",
            "timm_backbone.py": "UE of uniform noise", "own_loop.py": "ID accuracy"}[name] in out


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_example_refuses_an_unknown_argument(name, monkeypatch, capsys):
    """``python examples/NAME --bogus`` stops with argparse's usage message and exit code 2,
    before any data is loaded or anything is trained."""
    monkeypatch.setattr(sys, "argv", [name, "--bogus"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
