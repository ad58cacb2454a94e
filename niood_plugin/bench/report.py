"""results.json / results.csv / results.md, written atomically, and multi-run comparison."""
from __future__ import annotations

import csv
import io
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ..errors import ConfigError
from ..files import atomic_write_text

RESULT_KEYS = ("method", "detector", "ood", "auroc", "aupr_in", "aupr_out", "fpr95", "id_score_mean",
               "id_score_std", "id_score_min", "id_score_max", "ood_score_mean", "ood_score_std",
               "ood_score_min", "ood_score_max", "separation")
EXTRA_KEYS = ("scored_on", "id_accuracy")


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def comparison_tables(results: list[dict], metrics=("auroc", "aupr_out", "fpr95")) -> str:
    """Report-style tables: rows = OOD sets + average, columns = method/detector."""
    oods = list(OrderedDict.fromkeys(r["ood"] for r in results))
    cols = list(OrderedDict.fromkeys((r["method"], r["detector"]) for r in results))
    by = {(r["method"], r["detector"], r["ood"]): r for r in results}
    names = {"auroc": "AUROC (higher is better)", "aupr_out": "AUPR-OUT (higher is better)",
             "fpr95": "FPR@95TPR (lower is better)", "aupr_in": "AUPR-IN (higher is better)"}
    parts = []
    for metric in metrics:
        header = ["OOD set"] + [f"{m}/{d}" for m, d in cols]
        rows = []
        for ood in oods:
            rows.append([ood] + [by[(m, d, ood)][metric] if (m, d, ood) in by else "" for m, d in cols])
        rows.append(["**average**"] + [_mean([by[(m, d, o)][metric] for o in oods if (m, d, o) in by])
                                      for m, d in cols])
        parts.append(f"### {names[metric]}\n\n" + md_table(header, rows))
    return "\n\n".join(parts)


def summary_table(results: list[dict], methods_info: dict | None = None) -> str:
    """One row per method/detector: AUROC per OOD set, average AUROC and FPR95, ID accuracy."""
    oods = list(OrderedDict.fromkeys(r["ood"] for r in results))
    groups: dict[tuple[str, str], dict[str, dict]] = OrderedDict()
    for r in results:
        groups.setdefault((r["method"], r["detector"]), {})[r["ood"]] = r
    rows = []
    for (method, det), by_ood in groups.items():
        vals = list(by_ood.values())
        acc = (methods_info or {}).get(method, {}).get("id_accuracy", vals[0].get("id_accuracy", ""))
        rows.append([method, det] + [by_ood[o]["auroc"] if o in by_ood else "" for o in oods]
                    + [_mean([v["auroc"] for v in vals]), _mean([v["fpr95"] for v in vals]), acc])
    return md_table(["method", "detector"] + [f"AUROC {o}" for o in oods] + ["avg AUROC", "avg FPR95", "ID acc"], rows)


def per_ood_table(results: list[dict], method: str, detector: str) -> str:
    """The report's "comprehensive OOD analysis" table for one method and detector."""
    rows = [r for r in results if r["method"] == method and r["detector"] == detector]
    if not rows:
        return ""
    body = [[r["ood"], r["auroc"], r["aupr_in"], r["aupr_out"], r["fpr95"], r["id_score_mean"],
             r["ood_score_mean"], r["separation"]] for r in rows]
    body.append(["**average**"] + [_mean([r[k] for r in rows]) for k in
                                   ("auroc", "aupr_in", "aupr_out", "fpr95", "id_score_mean", "ood_score_mean",
                                    "separation")])
    return md_table(["OOD set", "AUROC", "AUPR-IN", "AUPR-OUT", "FPR95", "ID score mean", "OOD score mean",
                     "separation"], body)


def code_line(payload: dict) -> str:
    """Which code made a result: the git commit (and whether it had local changes)."""
    prov = payload.get("provenance") or {}
    if not prov.get("commit"):
        return f"niood-plugin {payload.get('environment', {}).get('niood_plugin', '?')} (not a git checkout)"
    dirty = {True: " with local changes", False: "", None: ""}.get(prov.get("dirty"), "")
    return f"commit {prov['commit'][:12]}{dirty}"


def render_markdown(payload: dict) -> str:
    cfg, env, timings = payload["config"], payload["environment"], payload["timings"]
    results = payload["results"]
    lines = [f"# niood-bench: {cfg['id']} in-distribution", ""]
    lines.append(f"- command: `{payload.get('command', '')}`")
    lines.append(f"- code: {code_line(payload)}")
    lines.append(f"- methods: {', '.join(cfg['methods'])}; preset `{cfg['preset']}`; epochs "
                 f"{cfg['epochs'] if cfg['epochs'] is not None else 'preset default'}; seed {cfg['seed']}")
    cpu_id = f", {env['cpu_id']}" if env.get("cpu_id") else ""
    lines.append(f"- hardware: {env.get('cpu', '?')} ({env.get('cpu_count', '?')} cores{cpu_id}, torch threads "
                 f"{env.get('torch_threads', '?')}); device `{env.get('device', '?')}` {env.get('gpu') or ''}")
    lines.append(f"- versions: torch {env.get('torch')}, pytorch-ood {env.get('pytorch_ood')}, "
                 f"niood-plugin {env.get('niood_plugin')}")
    cached = [m for m, v in payload["methods"].items() if v.get("cached")]
    lines.append(f"- wall time: {timings.get('total_s', 0):.1f} s in total"
                 + (f" (models of {', '.join(cached)} came from the cache, so their training is not in it; "
                    "the table below gives each method's training wall time)" if cached else ""))
    for note in payload.get("notes", []):
        lines.append(f"- note: {note}")
    lines += ["", "## Methods", ""]
    mrows = [[name, m["id_accuracy"], m["train_time_s"], m["score_time_s"], "yes" if m.get("cached") else "no"]
             for name, m in payload["methods"].items()]
    lines.append(md_table(["method", "ID test accuracy", "train wall s", "score wall s", "from cache"], mrows))
    lines += ["", "## Summary", "", summary_table(results, payload["methods"]), ""]
    lines += ["## Comparison (report-style tables)", "", comparison_tables(results), ""]
    for method in cfg["methods"]:
        for det in ("ue", "ue-id"):
            table = per_ood_table(results, method, det)
            if table:
                lines += [f"## Per-OOD analysis: {method} / {det}", "", table, ""]
    scored = OrderedDict.fromkeys((r["method"], r["detector"], r.get("scored_on", "")) for r in results)
    lines += ["## What each score was computed from", "",
              md_table(["method", "detector", "scored on"], list(scored)), ""]
    return "\n".join(lines)


def render_csv(results: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(RESULT_KEYS) + list(EXTRA_KEYS), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(results)
    return buf.getvalue()


#: OpenOOD's result columns, in its order (``openood/evaluators/ood_evaluator.py``, ``_save_csv``;
#: OpenOOD v1.5's release had CCR_4..CCR_1 before ACC, which we do not compute): percentages, 2 decimals.
OPENOOD_COLUMNS = ("dataset", "FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC")


def render_openood_csv(results: list[dict], groups: Optional[dict[str, list[str]]] = None) -> str:
    """The rows of a run in OpenOOD's CSV layout, one block per method and detector (the first two
    columns say which): a row per OOD set, then a mean row per group of sets (``groups``, e.g.
    OpenOOD's ``nearood``/``farood``; default one ``mean`` row over all sets)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "detector", *OPENOOD_COLUMNS])
    blocks: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        blocks.setdefault((r["method"], r["detector"]), []).append(r)
    cols = ("fpr95", "auroc", "aupr_in", "aupr_out", "id_accuracy")
    for (method, detector), rows in blocks.items():
        for r in rows:
            writer.writerow([method, detector, r["ood"], *(f"{100 * r[c]:.2f}" for c in cols)])
        for name, sets in (groups or {"mean": [r["ood"] for r in rows]}).items():
            members = [r for r in rows if r["ood"] in sets]
            if members:
                writer.writerow([method, detector, name, *(f"{100 * sum(r[c] for r in members) / len(members):.2f}"
                                                            for c in cols)])
    return buf.getvalue()


def write_results(out: Path, payload: dict, csv_text: str | None = None, md_text: str | None = None) -> None:
    """Write results.json, results.csv and results.md atomically (each old or new, never half);
    for a run also results_openood.csv (:func:`render_openood_csv`)."""
    atomic_write_text(out / "results.json", json.dumps(payload, indent=2, default=float))
    atomic_write_text(out / "results.csv", render_csv(payload["results"]) if csv_text is None else csv_text)
    atomic_write_text(out / "results.md", render_markdown(payload) if md_text is None else md_text)
    if payload.get("kind") == "run":
        atomic_write_text(out / "results_openood.csv", render_openood_csv(payload["results"],
                                                                          payload.get("ood_groups")))


KINDS = ("run", "attack")


def result_kind(payload: Any) -> str | None:
    """``"run"`` or ``"attack"`` for a results payload (older ones without ``kind``: an
    ``attack`` entry marks an attack result), ``None`` if it is not a niood-bench result."""
    if not isinstance(payload, dict) or not isinstance(payload.get("results"), list) \
            or not isinstance(payload.get("config"), dict):
        return None
    kind = payload.get("kind", "attack" if "attack" in payload else "run")
    return kind if kind in KINDS else None


def load_results(path: str | Path) -> dict:
    """The payload of a results folder (or of a results.json file); one-line errors for a missing,
    unreadable or malformed file."""
    p = Path(path)
    p = p / "results.json" if p.is_dir() else p
    if not p.is_file():
        raise ConfigError(f"no results.json in {path}" if Path(path).is_dir() else f"{path} does not exist")
    try:
        payload = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p} is not UTF-8 text, so not a niood-bench results.json") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if result_kind(payload) is None:
        raise ConfigError(f"{p} is not a niood-bench results.json (it needs 'config', 'results' and a known 'kind')")
    for i, r in enumerate(payload["results"]):
        if not isinstance(r, dict) or not all(k in r for k in ("method", "detector", "ood", "auroc", "fpr95")) \
                or not all(isinstance(r[k], (int, float)) and not isinstance(r[k], bool) for k in ("auroc", "fpr95")):
            raise ConfigError(f"{p}: results[{i}] is not a result row (method, detector, ood, auroc, fpr95)")
    if not isinstance(payload["config"].get("id"), str):
        raise ConfigError(f"{p}: config.id is missing")
    return payload


def compare(paths: Sequence[str | Path]) -> str:
    """One side-by-side Markdown table of average AUROC / FPR95 over several ``run`` result folders.

    Attack results are refused: their rows are one per attack budget, and an average over
    budgets is not an AUROC of anything.
    """
    rows = []
    for path in paths:
        payload = load_results(path)
        kind = result_kind(payload)
        if kind != "run":
            raise ConfigError(f"{path} holds `niood-bench {kind}` results (AUROC per attack budget); compare reads "
                              "`niood-bench run` results only: read its results.md instead")
        methods = payload.get("methods", {}) if isinstance(payload.get("methods"), dict) else {}
        groups: dict[tuple[str, str], list[dict]] = OrderedDict()
        for r in payload["results"]:
            groups.setdefault((r["method"], r["detector"]), []).append(r)
        for (method, det), rs in groups.items():
            m = methods.get(method, {}) if isinstance(methods.get(method), dict) else {}
            rows.append([str(path), payload["config"]["id"], method, det, _mean([r["auroc"] for r in rs]),
                         _mean([r["fpr95"] for r in rs]), m.get("id_accuracy", ""), m.get("train_time_s", "")])
    return md_table(["run", "ID", "method", "detector", "avg AUROC", "avg FPR95", "ID acc", "train s"], rows)
