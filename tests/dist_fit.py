"""A tiny ``InversionTrainer.fit`` run under torchrun (or alone): ``python -m torch.distributed.run
--nproc-per-node N tests/dist_fit.py OUT``.  Each rank writes ``OUT.<rank>.pt`` with its final
classifier state, history and pool, for ``tests/test_distributed.py``."""
import sys

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from niood_plugin import InversionTrainer, distributed
from niood_plugin.data import TensorData
from niood_plugin.models import build_classifier

GLOBAL_BATCH = 64


def main(out: str) -> None:
    torch.set_num_threads(1)
    distributed.setup("cpu")
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = (F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False) * 2 - 1).clamp(-1, 1)
    data = TensorData(x[:640], torch.tensor(d.target)[:640], "digits")
    w = distributed.world_size()
    # The same global batch whatever the number of processes; the sampler's order in every case.
    loader = data.loader(batch_size=GLOBAL_BATCH // w, shuffle=True, seed=0, distributed=True)
    torch.manual_seed(0)
    clf = build_classifier("report28", num_outputs=11, in_channels=1, ncf=8)
    trainer = InversionTrainer(clf, 10, (1, 28, 28), preset="smoke", progress=False, inversion_steps=3,
                               samples_per_step=110, latent_dim=8, generator_width=8, epochs=2, classifier_lr=3e-3)
    history = trainer.fit(loader, val_loader=TensorData(x[640:900], torch.tensor(d.target)[640:900], "v").loader(260))
    torch.save({"classifier": trainer.classifier.state_dict(), "generator": trainer.generator.state_dict(),
                "history": [{k: v for k, v in e.items() if not k.endswith("time_s")} for e in history],
                "pool": trainer.pool.raw().clone(), "world_size": w}, f"{out}.{distributed.rank()}.pt")
    distributed.cleanup()


if __name__ == "__main__":
    main(sys.argv[1])
