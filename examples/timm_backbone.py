"""InversionTrainer on a timm model: any name from ``timm.list_models()`` works.

    python examples/timm_backbone.py --tiny   # timm's tiny test_resnet on synthetic data
    python examples/timm_backbone.py          # resnet18 on MNIST (needs the data, see README)
"""
import argparse

import torch

from niood_plugin import UEDetector, presets
from niood_plugin.data import load_dataset
from niood_plugin.models import build_classifier

parser = argparse.ArgumentParser(description="InversionTrainer on a timm model.")
parser.add_argument("--tiny", action="store_true", help="timm's test_resnet on synthetic data (default: resnet18 on MNIST)")
tiny = parser.parse_args().tiny  # unknown arguments end the run with exit code 2
train = load_dataset("synthetic" if tiny else "mnist", "train", limit=600 if tiny else None)
K = train.num_classes
# K + 1 outputs: the timm model's own classifier head gets the garbage class.
clf = build_classifier("test_resnet" if tiny else "resnet18", num_outputs=K + 1, in_channels=1)
trainer = presets.create("smoke" if tiny else "fast", clf, K, train.image_shape, progress=not tiny)
history = trainer.fit(train.loader(batch_size=64, shuffle=True))
print("inversion accuracy per epoch:", [round(h["inversion_accuracy"], 3) for h in history[1:]])
noise = torch.rand(8, *train.image_shape) * 2 - 1
with torch.no_grad():
    print("UE of uniform noise:", UEDetector(trainer.classifier.eval(), garbage_index=K)(noise).round(decimals=3))
