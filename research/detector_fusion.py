"""The garbage log-odds fused with Energy over the K ID logits, on validation data only (issue 33).

Loads a run folder's cached ``inversion-ft`` model and prints the AUROC of
``s_w = (l_g - LSE(l_ID)) - w * LSE(l_ID)`` for a few weights ``w`` (``w = 0``: the garbage
probability's ranking; large ``w``: Energy's) on the config's OOD sets and the synthetic outliers
of ``validate_detectors.py``.  Never point it at a config with the reported sets.

    python research/detector_fusion.py --config research/configs/cifar10-ft-val.toml \\
        --out runs/val-w64-e25-ft3-lr05 --opt width=64 --opt epochs=25 --opt finetune_epochs=3 \\
        --opt finetune_lr=0.5 --set recipe=airbench-no-smoothing [--json research/results/x.json]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from niood_plugin.bench.evaluate import ood_metrics
from niood_plugin.bench.runner import load_data, model_source
from niood_plugin.models import FlipAveraged

sys.path.insert(0, str(Path(__file__).parent))
from finetune_probe import outputs, run_config, write_json  # noqa: E402
from validate_detectors import outliers  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)


def scores(logits: torch.Tensor, k: int) -> dict[str, np.ndarray]:
    lse = logits.double()[:, :k].logsumexp(1)
    g = logits.double()[:, k] - lse
    return {"energy": (-lse).numpy(), **{f"w={w}": (g - w * lse).numpy() for w in WEIGHTS}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True, help="the run folder whose models/ cache holds 'inversion-ft'")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--opt", action="append", default=[])
    ap.add_argument("--json")
    args = ap.parse_args()
    cfg = run_config(args.config, args.opt, args.sets, args.out)
    device = torch.device(cfg.device)
    data = load_data(cfg)
    tm = model_source(cfg, data, device, progress=False, resume=False, train_missing=False)("inversion-ft")
    model = FlipAveraged(tm.model).eval() if cfg.resolved().tta == "flip" else tm.model.eval()
    k = data.num_classes
    ids = scores(outputs(model, data.test, device)[1], k)
    table = {}
    for name, ood in {**data.oods, **outliers(data.test)}.items():
        s = scores(outputs(model, ood, device)[1], k)
        table[name] = {n: ood_metrics(ids[n], s[n])["auroc"] for n in ids}
    print("%-18s" % "", " ".join("%9s" % n for n in ids))
    for name, row in table.items():
        print("%-18s" % name, " ".join("%9.4f" % v for v in row.values()))
    write_json(args.json, {"argv": sys.argv, "auroc": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
