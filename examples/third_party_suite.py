"""UEDetector next to pytorch-ood's MSP, Energy, ODIN and Mahalanobis, evaluated by
pytorch-ood's own ``Benchmark.evaluate`` and ``OODMetrics``, unchanged.

    python examples/third_party_suite.py          # our MNIST suite (niood_plugin.suites.MNISTOneVsRest)
    python examples/third_party_suite.py --tiny   # synthetic data, seconds
"""
import argparse

from pytorch_ood.detector import ODIN, EnergyBased, Mahalanobis, MaxSoftmax

from niood_plugin import UEDetector, presets
from niood_plugin.models import DropOutput, build_classifier
from niood_plugin.suites import MNISTOneVsRest, OneVsRest

parser = argparse.ArgumentParser(description="UEDetector next to pytorch-ood's detectors in pytorch-ood's Benchmark.")
parser.add_argument("--tiny", action="store_true", help="synthetic data, seconds (default: our MNIST suite)")
tiny = parser.parse_args().tiny  # unknown arguments end the run with exit code 2
# our benchmark suites are pytorch-ood Benchmarks (train_set, test_sets with OOD targets -1, evaluate)
suite = OneVsRest(id="synthetic", ood=["gaussian", "uniform"], train_limit=1000, test_limit=300) if tiny \
    else MNISTOneVsRest()
train = suite.train

K = train.num_classes
clf = build_classifier("report28", num_outputs=K + 1, in_channels=1, ncf=8 if tiny else 32)
preset = presets.get_preset("smoke" if tiny else "fast")  # InversionTrainer + GarbageSampler settings
trainer = preset.create(clf, K, train.image_shape, progress=not tiny)
trainer.fit(train.loader(batch_size=preset.batch_size, shuffle=True))
model = trainer.classifier.eval()
id_model = DropOutput(model, index=K)  # post-hoc detectors see the K ID logits ("garbage excluded")

detectors = [UEDetector(model, garbage_index=K), MaxSoftmax(id_model), EnergyBased(id_model), ODIN(id_model),
             Mahalanobis(id_model.features).fit(train.loader(batch_size=512))]
rows = suite.evaluate(detectors, loader_kwargs={"batch_size": 256})
for r in rows:
    print(f"{r['Detector']:<12} {r['Dataset']:<14} AUROC {r['AUROC']:.4f}  FPR95 {r['FPR95TPR']:.4f}")
