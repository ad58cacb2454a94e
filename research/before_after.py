"""Before/after table of the redesign: the committed runs at 85dbc06 (pre-redesign code)
against the re-runs now in benchmarks/results/ (those that record provenance).

    python research/before_after.py mnist mnist-seed1 mnist-seed2 fashionmnist fashionmnist-seed1 fashionmnist-seed2
"""
import json
import os
import subprocess
import sys

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
def load_old(d):
    try: return json.loads(subprocess.check_output(["git","show",f"85dbc06:benchmarks/results/{d}/results.json"],stderr=subprocess.DEVNULL))
    except subprocess.CalledProcessError: return None
def load_new(d):
    p=f"benchmarks/results/{d}/results.json"
    if not os.path.exists(p): return None
    j=json.load(open(p))
    return j if j.get("provenance") else None
def summ(p):
    rows=p["results"]
    def avg(m,d,key="auroc"):
        v=[r[key] for r in rows if r["method"]==m and r["detector"]==d]; return sum(v)/len(v) if v else float("nan")
    plain=max(((avg("standard",d),d) for d in {r["detector"] for r in rows if r["method"]=="standard"}))
    return dict(acc=p["methods"]["inversion"]["id_accuracy"], ue=avg("inversion","ue"), garbage=avg("inversion","garbage"),
                fpr=avg("inversion","garbage","fpr95"), plain=plain, wall=p["timings"]["total_s"]/60,
                worst=min(r["auroc"] for r in rows if r["method"]=="inversion" and r["detector"]=="garbage"))
print("| run | code | ID acc | UE (combined) avg AUROC | garbage avg AUROC | garbage worst | garbage FPR95 | plain best post-hoc | wall min |")
print("|---|---|---|---|---|---|---|---|---|")
for d in sys.argv[1:]:
    for tag,p in (("before (85dbc06)",load_old(d)),("after",load_new(d))):
        if p is None: continue
        s=summ(p)
        code=tag if tag.startswith("before") else p["provenance"]["commit"][:7]
        print(f"| {d} | {code} | {s['acc']:.4f} | {s['ue']:.4f} | {s['garbage']:.4f} | {s['worst']:.4f} | {s['fpr']:.4f} | {s['plain'][1]} {s['plain'][0]:.4f} | {s['wall']:.1f} |")
