"""UEDetector next to pytorch-ood's MSP, Energy, ODIN and Mahalanobis, evaluated by
pytorch-ood's own ``Benchmark.evaluate`` and ``OODMetrics``, unchanged.

    python examples/third_party_suite.py          # MNIST vs Fashion-MNIST and noise
    python examples/third_party_suite.py --tiny   # synthetic data, seconds
"""
import sys

import torch
from pytorch_ood.benchmark import Benchmark
from pytorch_ood.detector import ODIN, EnergyBased, Mahalanobis, MaxSoftmax
from torch.utils.data import ConcatDataset, TensorDataset

from niood_plugin import InversionTrainer, UEDetector
from niood_plugin.data import load_dataset
from niood_plugin.models import DropOutput, build_classifier

tiny = "--tiny" in sys.argv
id_name, ood_names = ("synthetic", ["gaussian", "uniform"]) if tiny else ("mnist", ["fashionmnist", "gaussian"])
limit = 300 if tiny else None
train = load_dataset(id_name, "train", limit=1000 if tiny else None)
test = load_dataset(id_name, "test", limit=limit)
oods = [load_dataset(n, "test", image_shape=train.image_shape, limit=limit) for n in ood_names]


class OneVsRest(Benchmark):
    """ID test set plus one OOD set at a time; OOD targets are < 0, as pytorch-ood expects."""

    ood_names = ood_names

    def train_set(self):
        return train.dataset()

    def test_sets(self, known=True, unknown=True):
        return [ConcatDataset([test.dataset(), TensorDataset(o.x, -torch.ones(len(o), dtype=torch.long))])
                for o in oods]


K = train.num_classes
clf = build_classifier("report28", num_outputs=K + 1, in_channels=1, ncf=8 if tiny else 32)
trainer = InversionTrainer(clf, K, train.image_shape, preset="smoke" if tiny else "fast", progress=not tiny)
trainer.fit(train.loader(batch_size=trainer.config.batch_size, shuffle=True))
model = trainer.classifier.eval()
id_model = DropOutput(model, index=K)  # post-hoc detectors see the K ID logits ("garbage excluded")

detectors = [UEDetector(model, garbage_index=K), MaxSoftmax(id_model), EnergyBased(id_model), ODIN(id_model),
             Mahalanobis(id_model.features).fit(train.loader(batch_size=512))]
rows = OneVsRest().evaluate(detectors, loader_kwargs={"batch_size": 256})
for r in rows:
    print(f"{r['Detector']:<12} {r['Dataset']:<14} AUROC {r['AUROC']:.4f}  FPR95 {r['FPR95TPR']:.4f}")
