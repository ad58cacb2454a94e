import subprocess
import sys


def test_import_keeps_the_core_light():
    """``import niood_plugin`` loads neither the harness nor its heavy optional dependencies."""
    code = ("import sys, niood_plugin; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'click', 'matplotlib', 'timm', 'yaml'}), "
            "any(m.startswith('niood_plugin.bench') or m == 'niood_plugin.cli' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]", "False"], out


def test_public_api():
    import niood_plugin

    for name in ("InversionTrainer", "GarbageSampler", "UEDetector", "Negatives", "SampleGrid", "Callback", "Measure",
                 "Checkpoint"):
        assert hasattr(niood_plugin, name), name
