"""``niood-bench``: one-vs-rest OOD benchmarks from the command line.

Errors in what the user gave (names, files, data, config) print one line on stderr and
exit with code 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import functools
import logging
import shlex
import sys
from typing import Any, Callable, Optional

import click

from .errors import NioodError

EXIT_USAGE = 2


def _user_errors(fn: Callable) -> Callable:
    """Turn the library's input errors into a one-line message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return fn(*args, **kwargs)
        except (NioodError, ValueError, TypeError, FileNotFoundError, PermissionError) as exc:
            if debug:
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"niood-bench: error: {msg}", err=True)
            sys.exit(EXIT_USAGE)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="niood-plugin")
def main(debug: bool) -> None:
    """Benchmark network-inversion OOD training against standard detectors."""


def _csv(value: Optional[tuple[str, ...]]) -> Optional[list[str]]:
    if not value:
        return None
    items: list[str] = []
    for v in value:
        items += [s.strip() for s in v.split(",") if s.strip()]
    return items


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("pytorch_ood", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


SMOKE = {"id": "synthetic", "ood": ["gaussian", "uniform"], "train_limit": None, "test_limit": 200,
         "fit_limit": 1000, "width": 8, "out": "runs/smoke"}


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML or YAML file of settings.")
@click.option("--id", "id_", help="In-distribution dataset (default mnist).")
@click.option("--ood", multiple=True, help="OOD dataset(s); repeat or comma-separate.")
@click.option("--method", "methods", multiple=True, help="Method(s): inversion, standard, fig, bal.")
@click.option("--detectors", multiple=True, help="Detector(s), comma-separated (default: all).")
@click.option("--epochs", type=int, help="Training epochs (default: the preset's).")
@click.option("--preset", help="Hyperparameter preset: fast (default), report, smoke, ...")
@click.option("--data-root", type=click.Path(file_okay=False), envvar="NIOOD_DATA",
              help="Where datasets are looked for [env NIOOD_DATA; default ~/.cache/niood/data].")
@click.option("--out", type=click.Path(file_okay=False), help="Output directory.")
@click.option("--device", help="cpu (default) or cuda.")
@click.option("--seed", type=int, help="Random seed (default 0).")
@click.option("--train-limit", type=int, help="Use this many ID training images.")
@click.option("--test-limit", type=int, help="Use this many images per test set.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Trainer hyperparameter override, e.g. --set gamma=10 --set conditioning=matrix.")
@click.option("--resume", is_flag=True, help="Continue an interrupted training from its last epoch.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or log lines; print the table only.")
@_user_errors
def run(config_file, id_, ood, methods, detectors, epochs, preset, data_root, out, device, seed, train_limit,
        test_limit, sets, resume, quiet) -> None:
    """Train each method once, score it with every detector, write tables and plots."""
    from .bench.config import BenchConfig, apply, load_config_file
    from .bench.report import summary_table
    from .bench.runner import run as run_bench

    _setup_logging(quiet)
    cfg = BenchConfig()
    if config_file:
        cfg = apply(cfg, load_config_file(config_file), str(config_file))
    flags = {"id": id_, "ood": _csv(ood), "methods": _csv(methods), "detectors": _csv(detectors),
             "epochs": epochs, "preset": preset, "data_root": data_root, "out": out, "device": device,
             "seed": seed, "train_limit": train_limit, "test_limit": test_limit}
    flags = {k: v for k, v in flags.items() if v is not None}
    if flags.get("preset", cfg.preset) == "smoke":
        cfg = apply(cfg, {k: v for k, v in SMOKE.items() if k not in flags}, "smoke preset")
    if "id" in flags and "out" not in flags and not config_file:
        flags["out"] = f"runs/{flags['id']}"
    cfg = apply(cfg, _with_sets(flags, cfg, sets), "command line")
    command = "niood-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    payload = run_bench(cfg, progress=not quiet, resume=resume, command=command)
    click.echo(summary_table(payload["results"], payload["methods"]))
    click.echo(f"wall time {payload['timings']['total_s']:.1f} s; results in {cfg.out}/results.md")


def _parse_sets(sets: tuple[str, ...]) -> dict[str, Any]:
    import yaml

    from .errors import ConfigError

    out: dict[str, Any] = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out  # checked with the rest of the configuration by bench.runner.validate


def _with_sets(flags: dict[str, Any], cfg: Any, sets: tuple[str, ...]) -> dict[str, Any]:
    """``flags`` plus, with ``--set`` options, ``hparams``: the configuration's, overridden by them."""
    return {**flags, "hparams": {**cfg.hparams, **_parse_sets(sets)}} if sets else flags


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Same file as for `run`.")
@click.option("--id", "id_", help="In-distribution dataset (default mnist).")
@click.option("--start", required=True, help="OOD set the attacked images start from (e.g. fashionmnist).")
@click.option("--norm", type=click.Choice(["l2", "linf"]), default="l2", show_default=True)
@click.option("--eps", "eps", required=True, help="Comma-separated budgets, e.g. 0,0.5,1,2,4.")
@click.option("--steps", type=int, default=50, show_default=True, help="Adamax steps per attack.")
@click.option("--lr", type=float, default=0.01, show_default=True)
@click.option("--n", "n_attack", type=int, default=500, show_default=True, help="Start images attacked.")
@click.option("--adaptive", is_flag=True, help="Minimise the garbage-aware UE score instead of matching features.")
@click.option("--method", "methods", multiple=True, help="Method(s) whose cached models are attacked.")
@click.option("--detectors", multiple=True, help="Detector(s), comma-separated (default: all).")
@click.option("--preset", help="Preset of the models (must match the cached run).")
@click.option("--epochs", type=int)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Trainer hyperparameter override, as for `run` (must match the cached run).")
@click.option("--data-root", type=click.Path(file_okay=False), envvar="NIOOD_DATA")
@click.option("--out", type=click.Path(file_okay=False), help="Output directory.")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Trained models (default <out>/models).")
@click.option("--device")
@click.option("--seed", type=int)
@click.option("--test-limit", type=int, help="ID test images scored.")
@click.option("--train", "train_missing", is_flag=True, help="Train models missing from the cache (else an error).")
@click.option("--quiet", "-q", is_flag=True)
@_user_errors
def attack(config_file, id_, start, norm, eps, steps, lr, n_attack, adaptive, methods, detectors, preset, epochs,
           sets, data_root, out, cache_dir, device, seed, test_limit, train_missing, quiet) -> None:
    """AUROC of each method x detector when OOD images are attacked (source 004)."""
    from .bench.attack_bench import attack_table, run_attack_bench
    from .bench.config import BenchConfig, apply, load_config_file
    from .errors import ConfigError

    _setup_logging(quiet)
    cfg = BenchConfig()
    if config_file:
        cfg = apply(cfg, load_config_file(config_file), str(config_file))
    flags = {"id": id_, "methods": _csv(methods), "detectors": _csv(detectors), "preset": preset, "epochs": epochs,
             "data_root": data_root, "out": out, "cache_dir": cache_dir, "device": device, "seed": seed,
             "test_limit": test_limit}
    cfg = apply(cfg, _with_sets({k: v for k, v in flags.items() if v is not None}, cfg, sets), "command line")
    try:
        eps_list = [float(e) for e in eps.split(",") if e.strip()]
    except ValueError as exc:
        raise ConfigError(f"--eps must be comma-separated numbers, got {eps!r}") from exc
    command = "niood-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    payload = run_attack_bench(cfg, start, norm, eps_list, steps, lr, n_attack, adaptive, progress=not quiet,
                               command=command, train_missing=train_missing)
    click.echo(attack_table(payload["results"]))
    click.echo(f"wall time {payload['timings']['total_s']:.1f} s; results in {cfg.out}/results.md")


@main.command(name="list")
@click.option("--data-root", type=click.Path(file_okay=False), envvar="NIOOD_DATA")
@_user_errors
def list_(data_root) -> None:
    """Datasets (and which are present), detectors, methods and presets."""
    from .bench.config import ALL_DETECTORS
    from .bench.methods import METHODS
    from .data import dataset_status, list_datasets
    from .presets import list_presets

    click.echo("datasets:")
    for name in list_datasets():
        st = dataset_status(name, data_root)
        click.echo(f"  {name:<14} {'present' if st['present'] else 'missing'}")
    click.echo("detectors: " + ", ".join(list(ALL_DETECTORS) + ["bal (with method bal)"]))
    click.echo("methods:")
    for name, m in sorted(METHODS.items()):
        click.echo(f"  {name:<10} {m.description}")
    click.echo("presets: " + ", ".join(list_presets()))


@main.command()
@click.option("--data-root", type=click.Path(file_okay=False), envvar="NIOOD_DATA")
@_user_errors
def data(data_root) -> None:
    """Where each dataset is looked for, and how to get a missing one."""
    from .data import dataset_status, default_data_root, list_datasets

    click.echo(f"data root: {data_root or default_data_root()}")
    for name in list_datasets():
        st = dataset_status(name, data_root)
        click.echo(f"\n{name}: {'present' if st['present'] else 'MISSING'}")
        for place in st["looked_in"]:
            click.echo(f"  looked in: {place}")
        if not st["present"]:
            click.echo(f"  how to get it: {st['how_to_get']}")


@main.command()
@click.argument("dirs", nargs=-1, required=True, type=click.Path())
@_user_errors
def compare(dirs) -> None:
    """One side-by-side table of several result directories."""
    from .bench.report import compare as compare_runs

    click.echo(compare_runs(dirs))


if __name__ == "__main__":  # pragma: no cover
    main()
