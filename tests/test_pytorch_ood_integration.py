"""UEDetector must slot into pytorch-ood's own evaluation code exactly like MaxSoftmax."""
import torch
from pytorch_ood.benchmark import Benchmark
from pytorch_ood.detector import EnergyBased, MaxSoftmax
from pytorch_ood.metrics import OODMetrics
from torch.utils.data import DataLoader, TensorDataset

from niood_plugin import UEDetector


def toy_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
    with torch.no_grad():
        model[1].weight.mul_(5)
    return model.eval()


def id_and_ood():
    g = torch.Generator().manual_seed(1)
    # ID inputs are scaled-up (confident logits), OOD ones are near zero (flat softmax)
    x_id = torch.randn(64, 1, 4, 4, generator=g) * 3
    x_ood = torch.randn(64, 1, 4, 4, generator=g) * 0.05
    return x_id, x_ood


def test_in_oodmetrics_loop_like_maxsoftmax():
    model = toy_model()
    x_id, x_ood = id_and_ood()
    x = torch.cat([x_id, x_ood])
    y = torch.cat([torch.zeros(64, dtype=torch.long), -torch.ones(64, dtype=torch.long)])
    results = {}
    for det in (UEDetector(model), MaxSoftmax(model)):
        metrics = OODMetrics()
        for xb, yb in DataLoader(TensorDataset(x, y), batch_size=32):
            metrics.update(det(xb), yb)
        results[type(det).__name__] = metrics.compute()
    assert set(results["UEDetector"]) == set(results["MaxSoftmax"])
    assert results["UEDetector"]["AUROC"] > 0.9


class ToyBenchmark(Benchmark):
    """A minimal pytorch-ood Benchmark: labels >= 0 are ID, < 0 OOD."""

    ood_names = ["near-zero"]

    def __init__(self):
        x_id, x_ood = id_and_ood()
        self._test = TensorDataset(torch.cat([x_id, x_ood]),
                                   torch.cat([torch.zeros(64, dtype=torch.long), -torch.ones(64, dtype=torch.long)]))

    def train_set(self):
        return self._test

    def test_sets(self, known=True, unknown=True):
        return [self._test]


def test_in_benchmark_evaluate_with_other_detectors():
    model = toy_model()
    bench = ToyBenchmark()
    dets = [UEDetector(model), MaxSoftmax(model), EnergyBased(model)]
    rows = bench.evaluate(dets, loader_kwargs={"batch_size": 32}, cache=True)
    by_name = {r["Detector"]: r for r in rows}
    assert set(by_name) == {"UEDetector", "MaxSoftmax", "EnergyBased"}
    assert by_name["UEDetector"]["AUROC"] > 0.9
    assert set(by_name["UEDetector"]) == set(by_name["MaxSoftmax"])
