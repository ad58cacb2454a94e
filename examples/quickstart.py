"""Train a garbage-class MNIST model with InversionTrainer and score OOD data with UEDetector.

    python examples/quickstart.py            # MNIST vs Fashion-MNIST (needs the data, see README)
    python examples/quickstart.py --tiny     # synthetic data, seconds
"""
import argparse

import torch
from pytorch_ood.metrics import OODMetrics

from niood_plugin import UEDetector, presets
from niood_plugin.data import load_dataset
from niood_plugin.models import build_classifier

parser = argparse.ArgumentParser(description="Train a garbage-class model and score OOD data with UEDetector.")
parser.add_argument("--tiny", action="store_true", help="synthetic data, seconds (default: MNIST vs Fashion-MNIST)")
tiny = parser.parse_args().tiny  # unknown arguments end the run with exit code 2
id_name, ood_name = ("synthetic", "uniform") if tiny else ("mnist", "fashionmnist")
train = load_dataset(id_name, "train", limit=1000 if tiny else None)
test = load_dataset(id_name, "test", limit=300 if tiny else None)
ood = load_dataset(ood_name, "test", image_shape=train.image_shape, limit=300 if tiny else None)

K = train.num_classes
clf = build_classifier("report28", num_outputs=K + 1, in_channels=1, ncf=8 if tiny else 32)
preset = presets.get_preset("smoke" if tiny else "fast")  # InversionTrainer + GarbageSampler settings
trainer = preset.create(clf, num_classes=K, image_shape=train.image_shape, progress=not tiny)
trainer.fit(train.loader(batch_size=preset.batch_size, shuffle=True))

detector = UEDetector(trainer.classifier.eval(), garbage_index=K)
metrics = OODMetrics()
with torch.no_grad():
    for data, is_ood in ((test, False), (ood, True)):
        for x, y in data.loader(batch_size=512):
            metrics.update(detector(x), -torch.ones_like(y) if is_ood else torch.zeros_like(y))
print({k: round(v, 4) for k, v in metrics.compute().items()})
