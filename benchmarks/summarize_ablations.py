"""One Markdown table of the ablation runs: python benchmarks/summarize_ablations.py DIR."""
import json
import sys
from pathlib import Path

from niood_plugin.bench.report import md_table
from niood_plugin.files import atomic_write_text

root = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/ablations")
rows, oods = [], None
for d in sorted(p for p in root.iterdir() if (p / "results.json").is_file()):
    payload = json.loads((d / "results.json").read_text())
    res = payload["results"]
    oods = oods or sorted({r["ood"] for r in res})
    m = payload["methods"]["inversion"]
    hist = [h for h in m["history"] if "inversion_accuracy" in h]

    def avg(det, key="auroc"):
        vals = [r[key] for r in res if r["detector"] == det]
        return sum(vals) / len(vals)

    fm = next(r["auroc"] for r in res if r["detector"] == "ue" and r["ood"] == "fashionmnist")
    rows.append([d.name, m["id_accuracy"], avg("ue"), fm, avg("ue", "fpr95"), avg("garbage"), avg("ue-id"),
                 avg("mahalanobis"), hist[-1]["inversion_accuracy"] if hist else "-", m["train_time_s"]])
table = md_table(["ablation", "ID acc", "UE avg AUROC", "UE AUROC FMNIST", "UE avg FPR95", "garbage avg AUROC",
                  "UE-id avg AUROC", "Mahalanobis avg AUROC", "last inversion acc", "train s"], rows)
text = (f"# Ablations (MNIST ID; OOD: {', '.join(oods or [])})\n\nMade by `bash benchmarks/ablations.sh`; "
        "see that script for the shared budget. UE = the default garbage-aware UE (variant 'combined').\n\n"
        + table + "\n")
atomic_write_text(root / "ablations.md", text)
print(text)
