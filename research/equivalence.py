"""InversionTrainer built from its parts (a GarbageSampler holding the garbage's parameters)
against the trainer of keyword hyperparameters it replaced (1be0654), on the same machine:
three tiny runs (no negatives; warped negatives in the last two epochs; plus the novelty term
and unweighted CE), final classifier weights and history compared exactly.

    python research/equivalence.py            # prints IDENTICAL or DIFFERENT per variant

The old package is taken from git (``git archive 85dbc06 niood_plugin``) into a temp folder;
each side runs in its own process.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLD = "1be0654"

RUN = r'''
import sys, json, torch, torch.nn.functional as F
which, variant = sys.argv[1], sys.argv[2]
if which != "new":
    sys.path.insert(0, which)
from niood_plugin import InversionTrainer
from niood_plugin.models import build_classifier
from sklearn.datasets import load_digits
torch.set_num_threads(2)
d = load_digits()
x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
x = (F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False) * 2 - 1).clamp(-1, 1)
y = torch.tensor(d.target, dtype=torch.long)
ds = torch.utils.data.TensorDataset(x[:600], y[:600])
loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
hp = dict(epochs=3, inversion_steps=4, samples_per_step=110, garbage_per_epoch=200, latent_dim=100, batch_size=64,
          vector_temperature=0.2, lr_schedule="cosine", classifier_lr=3e-3, generator_lr=1e-3,
          pool_policy="reservoir", pool_capacity=500, generator_width=16)
if variant == "novelty":
    hp.update(novelty=1.0, weighted_ce=False)
neg = variant in ("warp", "novelty")
torch.manual_seed(0)
clf = build_classifier("report28", num_outputs=11, in_channels=1, ncf=8)
from niood_plugin import Negatives
negatives = Negatives("warp", 1.0, last_epochs=2) if neg else None
if which != "new":
    t = InversionTrainer(clf, 10, (1, 28, 28), progress=False, seed=0, negatives=negatives, **hp)
else:
    from niood_plugin import GarbageSampler
    trainer_keys = ("epochs", "classifier_lr", "lr_schedule", "weighted_ce")
    garbage = GarbageSampler(10, (1, 28, 28), negatives=negatives, progress=False, seed=0,
                             **{k: v for k, v in hp.items() if k not in trainer_keys + ("batch_size",)})
    kw = {k: v for k, v in hp.items() if k in trainer_keys}
    kw["lr"] = kw.pop("classifier_lr")
    t = InversionTrainer(clf, garbage, progress=False, seed=0, **kw)
h = t.fit(loader)
sd = {k: v.double().sum().item() for k, v in t.classifier.state_dict().items()}
keys = ["train_loss", "train_id_acc", "inversion_loss", "confidence", "lr", "class_weights"]
print(json.dumps({"sd": sd, "h": [{k: e.get(k) for k in keys} for e in h]}))
'''


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD, "niood_plugin"], check=True,
                                 capture_output=True).stdout
        old = Path(tmp) / "old"
        old.mkdir()
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        script = Path(tmp) / "script" / "run.py"  # not beside the old package: "new" must import ours
        script.parent.mkdir()
        script.write_text(RUN)
        same = True
        for variant in ("plain", "warp", "novelty"):
            out = {}
            for which in (str(old), "new"):
                r = subprocess.run([sys.executable, str(script), which, variant], cwd=ROOT, capture_output=True,
                                   text=True, check=True)
                out[which] = json.loads(r.stdout.strip().splitlines()[-1])
            ok = out[str(old)] == out["new"]
            same &= ok
            print(f"{variant}: {'IDENTICAL' if ok else 'DIFFERENT'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
