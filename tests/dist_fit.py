"""Tiny ``InversionTrainer.fit`` runs under torchrun: ``python -m torch.distributed.run
--nproc-per-node N tests/dist_fit.py OUT MODE [MODE ...]``.  For each mode every rank writes
``OUT.<mode>.<rank>.pt`` with its final classifier and generator states, history and pool,
for ``tests/test_distributed.py`` (one launch, several runs: a launch costs more than a run).

``MODE`` ``default``: the report28 classifier with BatchNorm and dropout, class-weighted CE and
negatives (what a user runs).  ``exact``: nothing that depends on the split of a batch over
the ranks (no BatchNorm, no dropout, unweighted CE, noise garbage that splits evenly), so N
processes must give one process's run up to float rounding; the novelty term is on, so the
DDP forward that returns features and the all-reduced class means are exercised."""
import sys

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from niood_plugin import distributed, presets
from niood_plugin.data import TensorData
from niood_plugin.models import build_classifier, build_generator, generator_for_shape

GLOBAL_BATCH = 64


def _strip_batchnorm(module: torch.nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            setattr(module, name, torch.nn.Identity())
        else:
            _strip_batchnorm(child)


def main(out: str, modes: list[str]) -> None:
    torch.set_num_threads(1)
    distributed.setup("cpu")
    for mode in modes:
        run(f"{out}.{mode}", mode)
    distributed.cleanup()


def run(out: str, mode: str) -> None:
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = (F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False) * 2 - 1).clamp(-1, 1)
    data = TensorData(x[:640], torch.tensor(d.target)[:640], "digits")
    w = distributed.world_size()
    # The same global batch whatever the number of processes; the sampler's order in every case.
    loader = data.loader(batch_size=GLOBAL_BATCH // w, shuffle=True, seed=0, distributed=True)
    exact = mode == "exact"
    torch.manual_seed(0)
    clf = build_classifier("report28", num_outputs=11, in_channels=1, ncf=8, dropout=0.0 if exact else 0.5)
    generator = None
    extra = {}
    if exact:
        generator = build_generator(generator_for_shape((1, 28, 28)), num_outputs=11, nz=8, out_channels=1, ngf=8)
        for m in (clf, generator):
            _strip_batchnorm(m)
        extra = dict(novelty=1.0, weighted_ce=False, noise_samples=640, negatives=None)
    trainer = presets.create("smoke", clf, 10, (1, 28, 28), progress=False, inversion_steps=3, samples_per_step=110,
                             latent_dim=8, generator_width=8, epochs=2, lr=3e-3, generator=generator, **extra)
    history = trainer.fit(loader, val_loader=TensorData(x[640:900], torch.tensor(d.target)[640:900], "v").loader(260))
    plain = {}
    if exact:  # train_plain (standard, LogitNorm, VOS in the harness) in DDP: the same global batch
        from niood_plugin.training import train_plain

        torch.manual_seed(0)
        model = build_classifier("report28", num_outputs=10, in_channels=1, ncf=8, dropout=0.0)
        _strip_batchnorm(model)
        loader = data.loader(batch_size=GLOBAL_BATCH // w, shuffle=True, seed=1, distributed=True)
        plain = {"plain": model.state_dict(), "plain_history": [
            {k: v for k, v in e.items() if k != "time_s"} for e in train_plain(model, loader, 2, 3e-3, "cpu")]}
    torch.save({**plain, "classifier": trainer.classifier.state_dict(), "generator": trainer.garbage.generator.state_dict(),
                "history": [{k: v for k, v in e.items() if not k.endswith("time_s")} for e in history],
                "pool": trainer.garbage.pool.raw().clone(), "world_size": w}, f"{out}.{distributed.rank()}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
