"""Cost of every stage, as ratios measured in one run on one machine (issue: performance).

    python benchmarks/perf.py                      # CPU, writes benchmarks/results/perf.{json,md}
    python benchmarks/perf.py --device cuda --out benchmarks/results/perf-cuda
    python benchmarks/perf.py --only ddp --out benchmarks/results/perf-ddp   # 1 vs 2 processes
    python benchmarks/perf.py --only ddp --device cuda --ddp-procs 1,8 --out benchmarks/results/perf-ddp-cuda

Ratios (keys of perf.json):
  ue_vs_msp_throughput                UEDetector images/s over MaxSoftmax images/s (same model, batch)
  generator_vs_langevin_samples_per_s our generator's samples/s over FIG's Langevin sampler (T = 20)
  inversion_epoch_vs_plain_epoch      one InversionTrainer epoch (fast preset) over one plain epoch
Also: ODIN and Mahalanobis throughput for reference, a plain epoch in contiguous against
channels-last memory layout (the trainer's default), retraining time against garbage-pool
size (with a linear fit), the report's MNIST epoch extrapolated from measured steps, and the
peak RSS of the committed MNIST benchmark (read from its results.json).
``ddp``: samples/s of one inversion epoch and one retraining epoch of InversionTrainer (fast
preset, MNIST geometry) under ``torchrun`` with 1 and N processes (CPU: gloo, the machine's
cores split between the processes; CUDA: NCCL, one GPU each), and the scaling efficiency
``rate_N / (N * rate_1)``.
Synthetic inputs of MNIST geometry are used throughout: throughput does not depend on pixels.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_ood.detector import ODIN, Mahalanobis, MaxSoftmax

from niood_plugin import UEDetector
from niood_plugin.training import train_plain
from niood_plugin.bench.provenance import environment, git_state
from niood_plugin.data import TensorData
from niood_plugin.files import atomic_write_text
from niood_plugin.models import DropOutput, as_channels_last, build_classifier, build_generator, to_channels_last
from niood_plugin.peers import langevin_sample
from niood_plugin.presets import create as create_trainer, get_preset

SHAPE = (1, 28, 28)
K = 10



def recipe(name: str) -> SimpleNamespace:
    """Every setting of preset ``name`` (the classes' defaults filled in), as attributes."""
    preset = get_preset(name)
    values = preset.to_dict()
    return SimpleNamespace(**{**values["garbage"], **values["trainer"]}, batch_size=preset.batch_size)

def rate(fn, n_items: int, min_time: float = 2.0, repeats: int = 3) -> float:
    """Median items/s of ``fn`` (which processes ``n_items``) over ``repeats`` timed windows."""
    fn()  # warm-up
    rates = []
    for _ in range(repeats):
        t0, count = time.perf_counter(), 0
        while time.perf_counter() - t0 < min_time:
            fn()
            count += n_items
        rates.append(count / (time.perf_counter() - t0))
    return statistics.median(rates)


def fake_data(n: int, seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.rand(n, *SHAPE, generator=g) * 2 - 1, torch.randint(0, K, (n,), generator=g), "fake")


def detector_throughput(device, batch: int) -> dict:
    model = build_classifier("report28", K + 1, 1, ncf=32).to(device).eval()
    post = DropOutput(model, K)
    x = (torch.rand(batch, *SHAPE) * 2 - 1).to(device)
    ue, msp, odin = UEDetector(model, garbage_index=K), MaxSoftmax(post), ODIN(post)
    maha = Mahalanobis(post.features)
    with torch.inference_mode():
        feats = post.features(fake_data(4000).x.to(device))
    maha.fit_features(feats, torch.randint(0, K, (4000,), device=device))

    def no_grad(det):
        def run():
            with torch.inference_mode():
                det.predict(x)
        return run

    out = {name: rate(no_grad(det), batch) for name, det in (("ue", ue), ("msp", msp), ("mahalanobis", maha))}
    out["odin"] = rate(lambda: odin.predict(x), batch)
    # Interleave UE and MSP windows so both see the same machine state.
    pairs = [(rate(no_grad(ue), batch, 1.0, 1), rate(no_grad(msp), batch, 1.0, 1)) for _ in range(5)]
    out["ue_vs_msp_ratio"] = statistics.median(u / m for u, m in pairs)
    return out


def synthesis_throughput(device) -> dict:
    cfg = recipe("fast")
    gen = build_generator("report28", K + 1, cfg.latent_dim, 1, ngf=cfg.generator_width).to(device).eval()
    n = 1024
    z = torch.randn(n, cfg.latent_dim, device=device)
    v = torch.softmax(torch.randn(n, K + 1, device=device), 1)

    def generate():
        with torch.inference_mode():
            gen(z, v, None)

    g_rate = rate(generate, n)
    plain = build_classifier("report28", K, 1, ncf=32).to(device).eval()
    m = 128
    l_rate = rate(lambda: langevin_sample(plain, m, SHAPE, steps=20, device=device), m, min_time=3.0, repeats=2)
    return {"generator_samples_per_s": g_rate, "langevin_t20_samples_per_s": l_rate, "ratio": g_rate / l_rate}


def plain_epoch(device, loader, lr: float, channels_last: bool) -> float:
    """Seconds for one plain cross-entropy epoch of report28 (ncf 32) in the given memory layout:
    one epoch of the ``standard`` baseline's own training loop."""
    torch.manual_seed(0)
    plain = build_classifier("report28", K, 1, ncf=32).to(device)
    if channels_last:
        to_channels_last(plain)
    return train_plain(plain, loader, 1, lr, device, channels_last=channels_last)[0]["time_s"]


def layout_ab(device, n_train: int, repeats: int = 2) -> dict:
    """Plain epochs in contiguous and channels-last layout, alternated ``repeats`` times."""
    cfg = recipe("fast")
    loader = fake_data(n_train).loader(batch_size=cfg.batch_size, shuffle=True)
    times: dict[str, list[float]] = {"contiguous": [], "channels_last": []}
    for _ in range(repeats):
        for name in times:
            times[name].append(plain_epoch(device, loader, cfg.lr, name == "channels_last"))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"epoch_s": times, "median_s": med, "speedup": med["contiguous"] / med["channels_last"],
            "n_train": n_train}


def epoch_ratio(device, n_train: int) -> dict:
    data = fake_data(n_train)
    cfg = recipe("fast")
    loader = data.loader(batch_size=cfg.batch_size, shuffle=True)
    plain_s = plain_epoch(device, loader, cfg.lr, True)  # channels-last, as the trainer
    clf = build_classifier("report28", K + 1, 1, ncf=32)
    trainer = create_trainer("fast", clf, K, SHAPE, epochs=1, device=device, progress=False)
    hist = trainer.fit(loader)
    e = hist[1]
    return {"plain_epoch_s": plain_s, "inversion_epoch_s": e["time_s"], "inversion_part_s": e["inversion_time_s"],
            "retrain_part_s": e["retrain_time_s"], "n_train": n_train, "ratio": e["time_s"] / plain_s}


def pool_scaling(device, n_train: int) -> dict:
    """Retraining-epoch time against garbage-pool size: one epoch whose pool receives ``size``
    fresh generated images (one tiny inversion step, one noise image, no negatives), so the
    retraining sees ``n_train`` ID images plus ``size`` garbage images."""
    data = fake_data(n_train)
    sizes = [0, n_train // 2, n_train, 2 * n_train]
    times = []
    for size in sizes:
        clf = build_classifier("report28", K + 1, 1, ncf=32)
        trainer = create_trainer("fast", clf, K, SHAPE, epochs=1, device=device, progress=False,
                                 negatives=None, noise_samples=1, inversion_steps=1, samples_per_step=11,
                                   garbage_per_epoch=size, pool_capacity=max(size, 1))
        hist = trainer.fit(data.loader(batch_size=128, shuffle=True))
        times.append(hist[1]["retrain_time_s"])
    slope, intercept = np.polyfit(np.array(sizes) + n_train, times, 1)
    pred = np.polyval([slope, intercept], np.array(sizes) + n_train)
    r2 = 1 - ((np.array(times) - pred) ** 2).sum() / ((np.array(times) - np.mean(times)) ** 2).sum()
    return {"pool_sizes": sizes, "epoch_s": times, "seconds_per_1000_examples": slope * 1000, "linear_r2": r2}


#: The report's schedule per dataset: classifier/generator, image shape, ID training images.
REPORT_SCHEDULES = {"mnist": ("report28", (1, 28, 28), 60_000), "cifar10": ("report32", (3, 32, 32), 50_000)}


def report_schedule(device, dataset: str = "mnist") -> dict:
    """The report's schedule for ``dataset`` (ncf = ngf = 64, 100 steps x 11,000 samples, batch
    32; 20 epochs on MNIST, 41 on CIFAR-10), measured on a few steps and batches and
    extrapolated to one epoch and the whole run."""
    arch, shape, n_id = REPORT_SCHEDULES[dataset]
    cfg = recipe(f"report-{dataset}")
    clf = to_channels_last(build_classifier(arch, K + 1, shape[0], ncf=64)).to(device).eval()
    gen = build_generator(arch, K + 1, cfg.latent_dim, shape[0], ngf=cfg.generator_width).to(device)
    for p in clf.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(gen.parameters(), lr=cfg.generator_lr)
    n, chunk = cfg.samples_per_step, 2048  # InversionTrainer's default generator_chunk

    def inversion_step():
        opt.zero_grad()
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            v = torch.softmax(torch.randn(m, K + 1, device=device), 1)
            out = clf(gen(torch.randn(m, cfg.latent_dim, device=device), v, None))
            F.cross_entropy(out, v.argmax(1)).backward()
        opt.step()

    inversion_step()
    t0 = time.perf_counter()
    for _ in range(2):
        inversion_step()
    step_s = (time.perf_counter() - t0) / 2
    clf.train()
    for p in clf.parameters():
        p.requires_grad_(True)
    copt = torch.optim.Adam(clf.parameters(), lr=cfg.lr)
    x = as_channels_last((torch.rand(cfg.batch_size, *shape) * 2 - 1).to(device))
    y = torch.randint(0, K + 1, (cfg.batch_size,), device=device)

    def clf_step():
        loss = F.cross_entropy(clf(x), y)
        copt.zero_grad()
        loss.backward()
        copt.step()

    img_per_s = rate(clf_step, cfg.batch_size, min_time=3.0, repeats=1)
    # Retraining set in epoch e: the ID images + as many noise images as one class + e * 11,000 generated.
    base = n_id + n_id // K
    retrain_s = [(base + e * n) / img_per_s for e in range(1, cfg.epochs + 1)]
    inversion_epoch_s = step_s * cfg.inversion_steps
    total_s = base / img_per_s + sum(inversion_epoch_s + r for r in retrain_s)
    return {"inversion_step_s": step_s, "inversion_epoch_s": inversion_epoch_s, "epochs": cfg.epochs,
            "classifier_images_per_s": img_per_s, "first_epoch_s": inversion_epoch_s + retrain_s[0],
            "total_h": total_s / 3600}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results/perf")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--n-train", type=int, default=60_000, help="ID images for the epoch ratio (MNIST's 60,000)")
    ap.add_argument("--n-pool", type=int, default=6_000, help="ID images for the pool-scaling runs")
    ap.add_argument("--mnist-results", default="benchmarks/results/mnist/results.json")
    ap.add_argument("--skip-report-epoch", action="store_true")
    ap.add_argument("--only", choices=["all", "ddp"], default="all", help="ddp: only the 1 vs N processes scaling")
    ap.add_argument("--ddp-procs", default="1,2", help="numbers of processes for the scaling runs")
    ap.add_argument("--ddp-repeats", type=int, default=3, help="alternating launches per number of processes")
    ap.add_argument("--ddp-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ddp_worker:
        return ddp_worker(args.ddp_worker, args.device, args.n_train)
    torch.manual_seed(0)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    code = git_state()  # the code that runs
    if args.only == "ddp":
        ddp = ddp_scaling(args.device, [int(n) for n in args.ddp_procs.split(",")], args.n_train, args.ddp_repeats)
        result = {"ddp": ddp, "environment": environment(device), "command": "python " + " ".join(sys.argv),
                  "wall_s": time.perf_counter() - t0, "code": code}
        out = Path(args.out)
        atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=2))
        atomic_write_text(out.with_suffix(".md"), render_ddp(result))
        print(render_ddp(result))
        return
    det = detector_throughput(device, args.batch)
    syn = synthesis_throughput(device)
    ep = epoch_ratio(device, args.n_train)
    pool = pool_scaling(device, args.n_pool)
    layout = layout_ab(device, args.n_train)
    rep = None if args.skip_report_epoch else report_schedule(device, "mnist")
    rss = None
    if Path(args.mnist_results).is_file():
        rss = json.loads(Path(args.mnist_results).read_text())["timings"].get("peak_rss_mb")
    result = {
        "ue_vs_msp_throughput": float(det["ue_vs_msp_ratio"]),
        "generator_vs_langevin_samples_per_s": float(syn["ratio"]),
        "inversion_epoch_vs_plain_epoch": float(ep["ratio"]),
        "peak_rss_mnist_benchmark_mb": rss,
        "detectors_images_per_s": {k: v for k, v in det.items() if k != "ue_vs_msp_ratio"},
        "synthesis": syn, "epoch": ep, "pool_scaling": pool, "layout": layout, "report_mnist_schedule": rep,
        "environment": environment(device), "command": "python " + " ".join(sys.argv),
        "wall_s": time.perf_counter() - t0, "code": code,
    }
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=2))
    atomic_write_text(out.with_suffix(".md"), render(result))
    print(render(result))


def ddp_worker(out: str, device: str, n_train: int) -> None:
    """Run under torchrun by :func:`ddp_scaling`: one InversionTrainer epoch; rank 0 writes its timings."""
    from niood_plugin import distributed

    dev = distributed.setup(device)
    cfg = recipe("fast")
    w = distributed.world_size()
    loader = fake_data(n_train).loader(batch_size=cfg.batch_size // w, shuffle=True, distributed=True, device=dev)
    torch.manual_seed(0)
    clf = build_classifier("report28", K + 1, 1, ncf=32)
    trainer = create_trainer("fast", clf, K, SHAPE, epochs=1, device=dev, progress=False)
    e = trainer.fit(loader)[1]
    if distributed.is_main():
        inverted = cfg.inversion_steps * cfg.samples_per_step
        retrained = n_train + e["garbage_size"] + (n_train if e["negatives"] else 0)
        Path(out).write_text(json.dumps({
            "world_size": w, "torch_threads": torch.get_num_threads(), "inversion_s": e["inversion_time_s"],
            "retrain_s": e["retrain_time_s"], "inversion_samples": inverted, "retrain_samples": retrained,
            "inversion_samples_per_s": inverted / e["inversion_time_s"],
            "retrain_samples_per_s": retrained / e["retrain_time_s"]}))
    distributed.cleanup()


def ddp_scaling(device: str, procs: list[int], n_train: int, repeats: int = 1) -> dict:
    """One epoch with each number of processes in ``procs``, launched by torchrun one after
    another, the sequence ``repeats`` times (alternating, so a slow spell of the machine hits
    every setting); medians per setting."""
    import os
    import subprocess
    import tempfile

    cores = os.cpu_count() or 1
    launches = []
    for _ in range(repeats):
        for n in procs:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "ddp.json"
                env = dict(os.environ)
                if device == "cpu":  # the machine's cores split between the processes
                    env["OMP_NUM_THREADS"] = str(max(1, cores // n))
                cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n), "--master-addr",
                       "127.0.0.1", "--master-port", str(29600 + n), __file__, "--ddp-worker", str(out),
                       "--device", device, "--n-train", str(n_train)]
                t0 = time.perf_counter()
                subprocess.run(cmd, env=env, check=True)
                launches.append({**json.loads(out.read_text()), "launch_wall_s": time.perf_counter() - t0,
                                 "command": " ".join(cmd[1:]).replace(str(out), "OUT")})
    runs = []
    for n in procs:
        mine = [x for x in launches if x["world_size"] == n]
        row = {"world_size": n, "torch_threads": mine[0]["torch_threads"], "repeats": len(mine),
               "launch_wall_s": statistics.median(x["launch_wall_s"] for x in mine)}
        for k in ("inversion", "retrain"):
            rates = [x[f"{k}_samples_per_s"] for x in mine]
            row.update({f"{k}_samples_per_s": statistics.median(rates), f"{k}_min": min(rates), f"{k}_max": max(rates)})
        runs.append(row)
    base = runs[0]
    for r in runs:
        for k in ("inversion", "retrain"):
            speedup = r[f"{k}_samples_per_s"] / base[f"{k}_samples_per_s"]
            r[f"{k}_speedup"] = speedup
            r[f"{k}_efficiency"] = speedup / (r["world_size"] / base["world_size"])
    return {"n_train": n_train, "device": device, "runs": runs, "launches": launches}


def render_ddp(r: dict) -> str:
    d = r["ddp"]
    lines = header(r, "perf: processes (torchrun)") + [
        f"One InversionTrainer epoch, fast preset, {d['n_train']} synthetic 1x28x28 images, device {d['device']}; "
        f"median (min-max) of {d['runs'][0].get('repeats', 1)} alternating launches per setting.", "",
        "| processes | threads each | inversion samples/s | speedup | efficiency | retraining samples/s | speedup "
        "| efficiency | launch wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for x in d["runs"]:
        lines.append(f"| {x['world_size']} | {x['torch_threads']} | {x['inversion_samples_per_s']:.0f} "
                     f"({x.get('inversion_min', 0):.0f}-{x.get('inversion_max', 0):.0f}) | "
                     f"{x['inversion_speedup']:.2f} | {x['inversion_efficiency']:.2f} | {x['retrain_samples_per_s']:.0f} "
                     f"({x.get('retrain_min', 0):.0f}-{x.get('retrain_max', 0):.0f}) "
                     f"| {x['retrain_speedup']:.2f} | {x['retrain_efficiency']:.2f} | {x['launch_wall_s']:.0f} |")
    if d["device"] == "cpu":
        lines += ["", "On CPU the processes share the machine's cores (threads each = cores / processes), so the "
                  "speedup at equal cores is the figure to read: below 1 is the cost of the process group "
                  "(all-reduce, gathering the garbage, a second copy of the data); efficiency per process "
                  "(speedup / processes) is the figure for one GPU per process."]
    return "\n".join(lines) + "\n"


def header(r: dict, title: str = "perf") -> list[str]:
    """The first lines of a perf report: machine, command, wall time, code."""
    env, code = r["environment"], r.get("code") or {}
    return [f"# {title}: {env['cpu']} ({env['cpu_count']} cores, {env['torch_threads']} torch threads), "
            f"device {env['device']} {env['gpu'] or ''}", "",
            f"command: `{r['command']}`; wall {r['wall_s']:.0f} s; torch {env['torch']}; code "
            f"{code.get('commit', '?')[:7]} (dirty: {code.get('dirty')})", ""]


def render(r: dict) -> str:
    lines = header(r) + [
             "| ratio | value | target |", "|---|---|---|",
             f"| ue_vs_msp_throughput | {r['ue_vs_msp_throughput']:.3f} | >= 0.95 |",
             f"| generator_vs_langevin_samples_per_s | {r['generator_vs_langevin_samples_per_s']:.1f} | >= 20 |",
             f"| inversion_epoch_vs_plain_epoch | {r['inversion_epoch_vs_plain_epoch']:.2f} | <= 2.0 |", "",
             "| detector | images/s |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in r["detectors_images_per_s"].items()]
    ep, syn, pool = r["epoch"], r["synthesis"], r["pool_scaling"]
    lines += ["", f"- generator {syn['generator_samples_per_s']:.0f} samples/s vs Langevin (T=20) "
                  f"{syn['langevin_t20_samples_per_s']:.0f} samples/s",
              f"- epoch on {ep['n_train']} images: plain {ep['plain_epoch_s']:.1f} s; inversion epoch "
              f"{ep['inversion_epoch_s']:.1f} s (inversion {ep['inversion_part_s']:.1f} s + retraining "
              f"{ep['retrain_part_s']:.1f} s)",
              f"- retraining vs pool size {pool['pool_sizes']}: {[round(t, 1) for t in pool['epoch_s']]} s; "
              f"{pool['seconds_per_1000_examples']:.2f} s per 1,000 examples, linear fit R^2 = {pool['linear_r2']:.3f}"]
    lay = r.get("layout")
    if lay:
        lines.append(f"- memory layout, plain epoch on {lay['n_train']} images (median of "
                     f"{len(lay['epoch_s']['contiguous'])}, alternated): contiguous {lay['median_s']['contiguous']:.1f} s, "
                     f"channels-last {lay['median_s']['channels_last']:.1f} s, speedup {lay['speedup']:.2f}x")
    if r["peak_rss_mnist_benchmark_mb"] is not None:
        lines.append(f"- peak RSS of the MNIST benchmark: {r['peak_rss_mnist_benchmark_mb']:.0f} MiB")
    rep = r.get("report_mnist_schedule")
    if rep:
        lines.append(f"- the report's MNIST schedule here: one inversion step (11,000 samples) "
                     f"{rep['inversion_step_s']:.1f} s, first epoch {rep['first_epoch_s'] / 60:.0f} min, "
                     f"{rep['epochs']} epochs about {rep['total_h']:.1f} h (extrapolated from measured steps)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
