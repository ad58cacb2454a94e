"""``niood-bench attack``: AUROC of every method x detector under the OOD attack of
:mod:`niood_plugin.attack` (Algorithm 1 of "An algorithm for out-of-distribution attack to
neural network encoder").

OOD start images are perturbed within an eps-ball (L2 or L-inf) so that the model's
penultimate features match those of a random ID test image (or, with ``adaptive``, so
that the garbage-aware UE score drops); then every detector scores ID test images against
the attacked images.  Models come from the same cache as ``niood-bench run``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..attack import run_attack, ue_score_fn
from ..data import TensorData
from ..errors import ConfigError
from ..files import atomic_savefig, writes_into
from ..validation import Interval, Options, check_param
from .config import BenchConfig
from .detectors import chosen
from ..training import accuracy
from .report import code_line, md_table, render_csv, write_results
from .lock import hold_folder
from .outputs import check_paths, collect_outputs, planned_paths, prepare_out
from .provenance import environment, git_state, peak_rss_mb, provenance
from .runner import BenchData, ModelSource, check_device, load_data, score_method, validate

log = logging.getLogger(__name__)

BROKEN_AUROC = 0.6

#: The attack's own parameters, by option name (the models' settings are a :class:`BenchConfig`;
#: ``--start`` is a dataset name, checked with the other names by ``runner.validate``).
ATTACK_CONSTRAINTS = {
    "--norm": [Options("l2", "linf")],
    "--eps": [Interval(float, 0, None)],
    "--steps": [Interval(int, 1, None)],
    "--lr": [Interval(float, 0, None, closed="neither")],
    "--n": [Interval(int, 1, None)],
}


def attack_out(run_out: str | Path) -> Path:
    """The default folder of an attack on the models of the run in ``run_out``: a sibling."""
    run_out = Path(run_out)
    return run_out.with_name(run_out.name + "-attack")


def check_attack(cfg: BenchConfig, start: str, norm: str, eps_list: list[float], steps: int, lr: float,
                 n_attack: int) -> None:
    """The attack's parameters, before anything is loaded or written."""
    for name, value in (("--norm", norm), ("--steps", steps), ("--lr", lr), ("--n", n_attack)):
        check_param(name, value, ATTACK_CONSTRAINTS[name], "attack")
    if not eps_list:
        raise ConfigError("attack: --eps needs one or more budgets >= 0, e.g. --eps 0,0.5,1")
    for e in eps_list:
        check_param("--eps", e, ATTACK_CONSTRAINTS["--eps"], "attack")
    if len(set(eps_list)) != len(eps_list):
        raise ConfigError(f"attack: --eps lists a budget more than once: {eps_list}")
    if not isinstance(start, str) or not start:
        raise ConfigError("attack: --start needs a dataset name")
    if start == cfg.id:
        raise ConfigError(f"attack: --start {start!r} is the in-distribution set; start from an OOD set")


def run_attack_bench(cfg: BenchConfig, start: str, norm: str, eps_list: list[float], steps: int, lr: float,
                     n_attack: int, adaptive: bool, progress: bool = True, command: str = "",
                     train_missing: bool = False, argv: Optional[list[str]] = None) -> dict[str, Any]:
    """Attack the models ``cfg`` names (from the cache ``cfg.cache_dir``) and write the results
    to ``cfg.out``, a folder of its own (``results.json`` has ``"kind": "attack"``), holding its
    lock while it runs."""
    started, t_start = time.time(), time.perf_counter()
    code = git_state()  # the code that runs, before this command writes anything
    cfg = replace(cfg, ood=[start], ood_optional=[]).resolved()
    check_attack(cfg, start, norm, eps_list, steps, lr, n_attack)
    validate(cfg, "attack")
    check_paths(planned_paths(cfg, "attack", train=train_missing))
    with hold_folder(cfg.out, "niood-bench attack"), writes_into(cfg.out):
        return _attack(cfg, start, norm, eps_list, steps, lr, n_attack, adaptive, progress, command, train_missing,
                       argv, started, t_start, code)


def _attack(cfg: BenchConfig, start: str, norm: str, eps_list: list[float], steps: int, lr: float, n_attack: int,
            adaptive: bool, progress: bool, command: str, train_missing: bool, argv: Optional[list[str]],
            started: float, t_start: float, code: Any) -> dict[str, Any]:
    out = Path(cfg.out)
    device = check_device(cfg.device)
    data = load_data(cfg)
    starts = data.oods[start]
    n = min(n_attack, len(starts))
    x_start = starts.x[:n]

    if train_missing:
        prepare_out(out)  # training writes checkpoints and sample grids there
    models = ModelSource(cfg, data, device, progress, resume=False, train_missing=train_missing)
    trained = {m: models.get(m) for m in cfg.methods}  # a missing model fails here, before out is made
    prepare_out(out)

    results: list[dict[str, Any]] = []
    methods_info: dict[str, Any] = {}
    mapes: dict[tuple[str, float], np.ndarray] = {}
    for method in cfg.methods:
        tm = trained[method]
        tm.model.to(device).eval()
        t0 = time.perf_counter()
        attacked: dict[str, TensorData] = {}
        eps_of: dict[str, float] = {}
        for eps in eps_list:
            score_fn = ue_score_fn(tm.model, tm.garbage_index) if adaptive else None
            x_adv, mape = run_attack(tm.model, data.test.x, x_start, eps, norm=norm, steps=steps, lr=lr,
                                     batch_size=cfg.batch_size, seed=cfg.seed, score_fn=score_fn, device=device)
            name = f"{start}@{len(eps_of)}"
            eps_of[name] = eps
            attacked[name] = TensorData(x_adv.cpu(), -torch.ones(n, dtype=torch.long), name)
            mapes[(method, eps)] = mape.cpu().numpy()
            log.info("%s eps=%g: median MAPE %.4f", method, eps, float(np.median(mapes[(method, eps)])))
        attack_s = time.perf_counter() - t0
        rows, _, _ = score_method(tm, cfg, BenchData(data.train, data.test, attacked, data.fit), device)
        for r in rows:
            eps = eps_of[r["ood"]]
            r["eps"] = eps
            r["ood"] = start
            r["mape_median"] = float(np.median(mapes[(method, eps)]))
        results += rows
        methods_info[method] = {"id_accuracy": accuracy(tm.model, data.test.loader(batch_size=cfg.batch_size),
                                                        device, tm.num_classes),
                                "train_time_s": tm.train_time_s, "attack_time_s": attack_s, "cached": tm.cached,
                                "start": models.start[method]}

    total = time.perf_counter() - t_start
    payload = {
        "kind": "attack", "command": command, "config": {**cfg.to_dict(), "detectors": chosen(cfg.detectors)},
        "attack": {"start": start, "norm": norm, "eps": eps_list, "steps": steps, "lr": lr, "n_attacked": n,
                   "adaptive": adaptive, "target": "garbage-aware UE score" if adaptive else "penultimate features",
                   "models": str(models.cache_dir)},
        "environment": environment(device),
        "timings": {"total_s": total, "peak_rss_mb": peak_rss_mb()},
        "id_accuracy": methods_info[cfg.methods[0]]["id_accuracy"], "methods": methods_info, "results": results,
        "notes": [f"attacked {n} {start} test images per budget; AUROC of ID test images against them"],
        "provenance": provenance("attack", argv, cfg.seed, device, started, total, code),
    }
    written = plot_attack(out, results, mapes)
    outputs = collect_outputs(out, "attack", written, cfg.methods)  # read the previous record before replacing it
    outputs.tidy()
    payload["files"] = outputs.record()
    write_results(out, payload, render_csv_with_eps(results), render_attack_md(payload))
    models.remove_own_checkpoints()
    return payload


def render_csv_with_eps(results: list[dict]) -> str:
    lines = render_csv(results).splitlines()
    lines[0] += ",eps,mape_median"
    for i, r in enumerate(results, start=1):
        lines[i] += f",{r['eps']},{r['mape_median']}"
    return "\n".join(lines) + "\n"


def breaking_eps(rows: list[dict]) -> Optional[float]:
    """Smallest eps whose AUROC is below 0.6 (None if the detector holds at every eps)."""
    broken = sorted(r["eps"] for r in rows if r["auroc"] < BROKEN_AUROC)
    return broken[0] if broken else None


def attack_table(results: list[dict]) -> str:
    eps_values = sorted({r["eps"] for r in results})
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["method"], r["detector"]), []).append(r)
    rows = []
    for (method, det), rs in groups.items():
        by_eps = {r["eps"]: r["auroc"] for r in rs}
        b = breaking_eps(rs)
        rows.append([method, det] + [by_eps.get(e, "") for e in eps_values]
                    + [f"{b:g}" if b is not None else f"> {max(eps_values):g}"])
    return md_table(["method", "detector"] + [f"AUROC eps={e:g}" for e in eps_values]
                    + [f"smallest eps with AUROC < {BROKEN_AUROC}"], rows)


def render_attack_md(payload: dict) -> str:
    a, env = payload["attack"], payload["environment"]
    lines = [f"# OOD attack: {payload['config']['id']} vs attacked {a['start']}", "",
             f"- command: `{payload['command']}`", f"- code: {code_line(payload)}",
             f"- attack: {a['norm']} ball, eps {a['eps']}, {a['steps']} Adamax steps, lr {a['lr']}, "
             f"{a['n_attacked']} start images, target: {a['target']}; seed {payload['config']['seed']}",
             f"- hardware: {env['cpu']} ({env['cpu_count']} cores), device {env['device']}; wall "
             f"{payload['timings']['total_s']:.0f} s", "",
             "AUROC of ID test images against attacked OOD images (higher = detector still works; 0.5 = chance):",
             "", attack_table(payload["results"]), ""]
    med = sorted({(r["method"], r["eps"], r["mape_median"]) for r in payload["results"]})
    lines += ["Median MAPE between the attacked image's features and its ID target's (lower = closer match):", "",
              md_table(["method", "eps", "median MAPE"], med), ""]
    return "\n".join(lines)


def plot_attack(out: Path, results: list[dict], mapes: dict[tuple[str, float], np.ndarray]) -> list[Path]:
    from .plots import pyplot

    plt = pyplot()
    files = []
    for method in sorted({r["method"] for r in results}):
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
        for det in sorted({r["detector"] for r in results if r["method"] == method}):
            rs = sorted((r for r in results if r["method"] == method and r["detector"] == det), key=lambda r: r["eps"])
            a.plot([r["eps"] for r in rs], [r["auroc"] for r in rs], marker="o", label=det)
        a.axhline(BROKEN_AUROC, color="k", ls=":", lw=0.8)
        a.set(xlabel="eps", ylabel="AUROC", title=f"{method}: AUROC under attack")
        a.legend(fontsize=7)
        for (m, eps), v in sorted(mapes.items()):
            if m == method:
                b.hist(v, bins=40, alpha=0.5, label=f"eps={eps:g}")
        b.set(xlabel="MAPE", title="feature MAPE to the ID target")
        b.legend(fontsize=7)
        files.append(atomic_savefig(fig, out / f"attack_{method}.png", dpi=100, bbox_inches="tight"))
        plt.close(fig)
    return files
