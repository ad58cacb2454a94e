"""Add the garbage class to a classifier inside your own PyTorch training loop.

    python examples/own_loop.py [--epochs 2] [--seed 0]

The loop is plain PyTorch; the method comes as one part, :class:`niood_plugin.GarbageSampler`
(noise, then network-inversion samples of the classifier), and the loss is pytorch-ood's
``BackgroundClassLoss`` (label -1 goes to the extra output K).  On this tiny problem it trains
exactly what ``InversionTrainer(clf, garbage, weighted_ce=False, lr_schedule="constant",
channels_last=False)`` trains (``tests/test_own_loop.py``).
"""
import argparse

import torch
from pytorch_ood.loss import BackgroundClassLoss

from niood_plugin import GarbageSampler, UEDetector
from niood_plugin.training import check_loader

K, SHAPE = 10, (1, 28, 28)


def train(clf: torch.nn.Module, loader, seed: int = 0, epochs: int = 2, pretrain_epochs: int = 1, lr: float = 3e-3,
          **garbage_parameters) -> torch.nn.Module:
    """``clf``: K + 1 outputs, ``features``/``head``; ``loader``: (x in [-1, 1], y in [0, K))."""
    check_loader(loader, SHAPE, K)                       # shapes, range and labels, as fit() checks
    torch.manual_seed(seed)
    garbage = GarbageSampler(K, SHAPE, seed=seed, channels_last=False, **garbage_parameters).to("cpu")
    garbage.start(torch.bincount(torch.cat([y for _, y in loader]), minlength=K), epochs)  # noise images
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    loss_fn = BackgroundClassLoss(n_classes=K)
    for epoch in [0] * pretrain_epochs + list(range(1, epochs + 1)):
        if epoch:
            garbage.refresh(clf)                         # invert the classifier; new images join the pool
        clf.train()
        for (x, y), g in zip(loader, garbage.epoch(len(loader))):
            neg = garbage.make_negatives(x, epoch)       # warped ID images, in the last epochs
            g = g if neg is None else torch.cat([g, neg])
            logits = clf(torch.cat([x, g]))
            loss = loss_fn(logits, torch.cat([y, torch.full((g.shape[0],), -1)]))  # -1: the garbage class
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        clf.eval()
    return clf


def main() -> None:
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    from niood_plugin.data import TensorData
    from niood_plugin.models import build_classifier
    from niood_plugin.presets import get_preset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="inversion epochs after pre-training (>= 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    d = load_digits()
    x = F.interpolate(torch.tensor(d.images, dtype=torch.float32)[:, None] / 16, size=SHAPE[1:], mode="bilinear")
    data = TensorData((2 * x - 1).clamp(-1, 1)[:1400], torch.tensor(d.target)[:1400], "digits")
    torch.manual_seed(args.seed)
    clf = build_classifier("report28", num_outputs=K + 1, in_channels=1, ncf=16)
    train(clf, data.loader(batch_size=32, shuffle=True), seed=args.seed, epochs=args.epochs,
          progress=False, **get_preset("smoke").garbage)
    test = (2 * x - 1).clamp(-1, 1)[1400:]
    with torch.no_grad():
        acc = (clf(test)[:, :K].argmax(1) == torch.tensor(d.target)[1400:]).float().mean()
        ue = UEDetector(clf, garbage_index=K)
        print(f"ID accuracy {acc:.3f}; mean UE: ID {ue.predict(test).mean():.3f}, "
              f"noise {ue.predict(torch.rand(200, *SHAPE) * 2 - 1).mean():.3f}")


if __name__ == "__main__":
    main()
