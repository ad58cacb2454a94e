"""Every example runs, on tiny synthetic data."""
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name", ["quickstart.py", "third_party_suite.py", "timm_backbone.py", "own_loop.py"])
def test_example_runs(name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [name, "--tiny"])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    out = capsys.readouterr().out
    assert {"quickstart.py": "AUROC", "third_party_suite.py": "UEDetector",
            "timm_backbone.py": "UE of uniform noise", "own_loop.py": "ID accuracy"}[name] in out
