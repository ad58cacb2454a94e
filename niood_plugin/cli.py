"""``niood-bench``: one-vs-rest OOD benchmarks from the command line.

Errors are one line on stderr:

* the user's (a bad option, name, value, config or data file, an output folder that
  belongs to another command, a missing model, a file system error): ``niood-bench: error:
  ...`` and exit code 2;
* anything else is a bug: ``niood-bench: internal error: <type>: <message>; rerun with
  --debug for the traceback and report it`` and exit code 1;
* Ctrl-C: exit code 130.

``--debug`` (before or after the command name) shows the traceback instead.
"""
from __future__ import annotations

import functools
import logging
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import click

from .errors import NioodError

EXIT_USAGE = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def user_message(exc: BaseException) -> Optional[str]:
    """The one-line message of a user error, or ``None`` if ``exc`` is a bug.

    User errors are decided by type alone: the library's own :class:`~niood_plugin.errors.NioodError`
    (every input check raises one) and ``OSError`` (the file system); anything else, a plain
    ``ValueError`` from inside torch included, is a bug of ours: an input the library should
    have checked first."""
    if isinstance(exc, NioodError):
        return _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, OSError):
        what = exc.strerror or _one_line(str(exc)) or type(exc).__name__
        where = f": {exc.filename}" if exc.filename else ""
        return f"{what}{where}"
    return None


class _TerminateAsInterrupt:
    """SIGTERM (how torchrun, schedulers and ``kill`` stop a process) ends a command the way
    Ctrl-C does: clean-up runs (the results folder's lock is released) and the exit code is 130."""

    def __enter__(self) -> None:
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)



def _handle_errors(fn: Callable) -> Callable:
    """Run a command, turning exceptions into one line and an exit code (see the module doc)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, debug: bool = False, **kwargs: Any) -> Any:
        debug = debug or click.get_current_context().find_root().params.get("debug", False)
        try:
            with _TerminateAsInterrupt():
                return fn(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except BrokenPipeError:  # `niood-bench list | head`: the reader left; say nothing
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError, AttributeError):
                pass
            sys.exit(EXIT_BUG)
        except KeyboardInterrupt:
            if debug:
                raise
            hint = "; rerun with --resume to continue the training" if fn.__name__ == "run" else ""
            click.echo(f"niood-bench: interrupted{hint}", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:
            if debug:
                raise
            msg = user_message(exc)
            if msg is not None:
                click.echo(f"niood-bench: error: {msg}", err=True)
                sys.exit(EXIT_USAGE)
            click.echo(f"niood-bench: internal error: {type(exc).__name__}: {_one_line(str(exc))}; rerun with "
                       "--debug for the traceback and report it", err=True)
            sys.exit(EXIT_BUG)

    return click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")(wrapper)


class _Group(click.Group):
    """Keeps the exact argument list (for results.json) and prints click's usage errors as one line."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta.setdefault("niood_argv", list(args))
        return super().parse_args(ctx, args)

    def main(self, args=None, prog_name=None, complete_var=None,  # type: ignore[override]
             standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "niood-bench"
            click.echo(f"niood-bench: error: {_one_line(exc.format_message())} (see `{where} --help`)", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.ClickException as exc:
            click.echo(f"niood-bench: error: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("niood-bench: aborted", err=True)
            sys.exit(EXIT_BUG)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="niood-plugin")
def main(debug: bool) -> None:
    """Benchmark network-inversion OOD training against standard detectors."""
    from .devices import tune_cpu_allocator

    tune_cpu_allocator()  # CPU training steps reuse freed buffers instead of fresh pages (devices.py)


def _command_line() -> tuple[str, list[str]]:
    ctx = click.get_current_context()
    argv = ctx.meta.get("niood_argv", sys.argv[1:])
    return "niood-bench " + " ".join(shlex.quote(a) for a in argv), list(argv)


def _csv(value: Optional[tuple[str, ...]]) -> Optional[list[str]]:
    """Repeated and comma-separated names as one list; ``None`` if the option was not given
    (an explicitly empty ``--detectors ""`` stays ``[]``, which validation refuses)."""
    if not value:
        return None
    items: list[str] = []
    for v in value:
        items += [s.strip() for s in v.split(",") if s.strip()]
    return items


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger().setLevel(logging.WARNING if quiet else logging.INFO)
    for noisy in ("pytorch_ood", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


SMOKE = {"id": "synthetic", "ood": ["gaussian", "uniform"], "train_limit": None, "test_limit": 200,
         "fit_limit": 1000, "width": 8, "out": "runs/smoke"}


def _config(config_file: Optional[str], flags: dict[str, Any], sets: tuple[str, ...]):
    """The :class:`~niood_plugin.bench.config.BenchConfig` of defaults < config file < smoke preset
    (for keys neither gives) < flags < ``--set``; every value checked as it comes in."""
    from .bench.config import BenchConfig, apply, apply_sets, load_config_file

    cfg = BenchConfig()
    file_values: dict[str, Any] = {}
    if config_file:
        file_values = load_config_file(config_file)
        cfg = apply(cfg, file_values, str(config_file))
    flags = {k: v for k, v in flags.items() if v is not None}
    suite = flags.get("suite", cfg.suite)
    if suite is not None:  # a suite sets what it fixes (ours: the ID and OOD sets)
        from .errors import ConfigError
        from .suites import suite_settings

        settings = suite_settings(suite)  # an unknown name: "unknown suite ...; choose one of [...]"
        for key, value in settings.items():  # the suite is the one definition: no mixing
            mine = flags.get(key, file_values.get(key))
            if mine is not None and mine != value:
                raise ConfigError(f"--suite {suite} sets {key} = {value}; drop {key} = {mine}, or drop the suite "
                                  "and give --id and --ood")
        given = {k: v for k, v in settings.items() if k not in flags and k not in file_values}
        cfg = apply(cfg, given, f"suite {suite}")
        file_values = {**file_values, **given}  # the smoke preset below does not replace them
        if "id" in settings and "out" not in flags and "out" not in file_values:  # else runs/<id>, below
            flags["out"] = f"runs/{suite}"
    if flags.get("preset", cfg.preset) == "smoke":
        cfg = apply(cfg, {k: v for k, v in SMOKE.items() if k not in flags and k not in file_values},
                    "smoke preset")
    if "id" in flags and "out" not in flags and "out" not in file_values:
        flags["out"] = f"runs/{flags['id']}"
    cfg = apply(cfg, flags, "command line")
    return apply_sets(cfg, sets)


_SET_HELP = ("Trainer hyperparameter, e.g. --set gamma=10, or negatives entry: --set negatives.kinds=warp, "
             "--set negatives.last_epochs=2, --set negatives=none.  Values: int, float, true/false, none, "
             "else a string.")


@main.command()
@click.option("--config", "config_file", help="TOML or YAML file of settings.")
@click.option("--id", "id_", help="In-distribution dataset (default mnist).")
@click.option("--ood", multiple=True, help="OOD dataset(s); repeat or comma-separate.")
@click.option("--suite", help="A named benchmark (`niood-bench list`): mnist, fashionmnist, cifar10 (ID and OOD "
                               "sets of our benchmarks), openood (pytorch-ood's OpenOOD test sets for --id "
                               "cifar10/cifar100).")
@click.option("--method", "methods", multiple=True, help="Method(s): inversion, standard, fig, bal, logitnorm, vos.")
@click.option("--detectors", multiple=True, help="Detector(s), comma-separated (default: every detector that applies "
                                                 "to each method; `niood-bench list` names them).")
@click.option("--epochs", type=int, help="Training epochs (default: the preset's).")
@click.option("--classifier", help="Classifier every method trains (default: by ID geometry; `niood-bench list`).")
@click.option("--width", type=int, help="Base width of the classifier (default: the classifier's).")
@click.option("--tta", type=click.Choice(["none", "flip"]),
              help="Test-time augmentation when scoring: none or flip (mean of each image and its mirror); "
                   "default: by ID geometry (flip for 32x32 RGB sets, else none).")
@click.option("--preset", help="Hyperparameter preset (default: fast for 28x28 sets, cifar for 32x32 RGB), report, smoke, ...")
@click.option("--finetune-epochs", type=int, help="inversion-ft: inversion epochs on the 'standard' model (default 3).")
@click.option("--finetune-lr", type=float,
              help="inversion-ft: their learning rate, in the recipe's unit (default: the preset's).")
@click.option("--data-root", envvar="NIOOD_DATA",
              help="Where datasets are looked for [env NIOOD_DATA; default ~/.cache/niood/data].")
@click.option("--out", help="Output directory (default runs/<id>); holds this run's results only.")
@click.option("--device", help="cpu (default), cuda, cuda:N or mps.")
@click.option("--seed", type=int, help="Random seed, 0 to 2**32-1 (default 0).")
@click.option("--train-limit", type=int, help="Use this many ID training images.")
@click.option("--test-limit", type=int, help="Use this many images per test set.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--resume", is_flag=True, help="Continue an interrupted training from its last epoch.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or log lines; print the table only.")
@_handle_errors
def run(config_file, id_, ood, suite, methods, detectors, epochs, classifier, width, tta, preset, finetune_epochs,
        finetune_lr, data_root, out, device, seed, train_limit, test_limit, sets, resume, quiet) -> None:
    """Train each method once, score it with every detector, write tables and plots.

    Under torchrun (`torchrun --nproc-per-node N -m niood_plugin.cli run ...`) every process
    trains its share (DDP) and rank 0 scores and writes the one results folder."""
    from . import distributed
    from .bench.report import summary_table
    from .bench.runner import run as run_bench

    quiet = quiet or (distributed.launched() and os.environ["RANK"] != "0")  # one rank talks
    _setup_logging(quiet)
    flags = {"id": id_, "ood": _csv(ood), "suite": suite, "methods": _csv(methods), "detectors": _csv(detectors),
             "epochs": epochs, "classifier": classifier, "width": width, "tta": tta, "preset": preset,
             "finetune_epochs": finetune_epochs, "finetune_lr": finetune_lr, "data_root": data_root,
             "out": out, "device": device,
             "seed": seed, "train_limit": train_limit, "test_limit": test_limit}
    cfg = _config(config_file, flags, sets)
    command, argv = _command_line()
    payload = run_bench(cfg, progress=not quiet, resume=resume, command=command, argv=argv)
    if not payload:  # a rank other than 0 of a distributed run
        return
    click.echo(summary_table(payload["results"], payload["methods"]))
    click.echo(f"wall time {payload['timings']['total_s']:.1f} s; results in {cfg.out}/results.md")


@main.command()
@click.option("--config", "config_file", help="Same file as for `run` (names the models and the run's folder).")
@click.option("--id", "id_", help="In-distribution dataset (default mnist).")
@click.option("--start", required=True, help="OOD set the attacked images start from (e.g. fashionmnist).")
@click.option("--norm", type=click.Choice(["l2", "linf"]), default="l2", show_default=True)
@click.option("--eps", "eps", required=True, help="Comma-separated budgets, e.g. 0,0.5,1,2,4.")
@click.option("--steps", type=int, default=50, show_default=True, help="Adamax steps per attack.")
@click.option("--lr", type=float, default=0.01, show_default=True)
@click.option("--n", "n_attack", type=int, default=500, show_default=True, help="Start images attacked.")
@click.option("--adaptive", is_flag=True, help="Minimise the garbage-aware UE score instead of matching features.")
@click.option("--method", "methods", multiple=True, help="Method(s) whose cached models are attacked.")
@click.option("--detectors", multiple=True, help="Detector(s), comma-separated (default: every detector that applies "
                                                 "to each method).")
@click.option("--preset", help="Preset of the models (must match the cached run).")
@click.option("--epochs", type=int)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="As for `run` (must match the cached run).")
@click.option("--data-root", envvar="NIOOD_DATA")
@click.option("--out", help="The attack's own output directory (default: <the run's --out>-attack).")
@click.option("--cache-dir", help="Trained models (default <the run's --out>/models).")
@click.option("--device")
@click.option("--seed", type=int)
@click.option("--test-limit", type=int, help="ID test images scored.")
@click.option("--train", "train_missing", is_flag=True, help="Train models missing from the cache (else an error).")
@click.option("--quiet", "-q", is_flag=True)
@_handle_errors
def attack(config_file, id_, start, norm, eps, steps, lr, n_attack, adaptive, methods, detectors, preset, epochs,
           sets, data_root, out, cache_dir, device, seed, test_limit, train_missing, quiet) -> None:
    """AUROC of each method x detector when OOD images are attacked to look in-distribution.

    The models come from the run that the same --config/flags describe (its --out/models);
    the results go to a folder of their own, never into the run's.
    """
    from .bench.attack_bench import attack_out, attack_table, run_attack_bench
    from .bench.config import apply
    from .errors import ConfigError

    _setup_logging(quiet)
    flags = {"id": id_, "methods": _csv(methods), "detectors": _csv(detectors), "preset": preset, "epochs": epochs,
             "data_root": data_root, "cache_dir": cache_dir, "device": device, "seed": seed,
             "test_limit": test_limit}
    cfg = _config(config_file, flags, sets)  # the run's settings, out included
    run_out = Path(cfg.out)
    target = Path(out) if out else attack_out(run_out)
    if target.absolute() == run_out.absolute() or (run_out.exists() and target.exists()
                                                   and target.resolve() == run_out.resolve()):
        raise ConfigError(f"attack --out {target} is the run's own folder; attack results go to a folder of their "
                          f"own (default {attack_out(run_out)})")
    cfg = apply(cfg, {"out": str(target), "cache_dir": cfg.cache_dir or str(run_out / "models")}, "command line")
    try:
        eps_list = [float(e) for e in eps.split(",") if e.strip()]
    except ValueError:
        raise ConfigError(f"--eps must be comma-separated numbers, got {eps!r}") from None
    command, argv = _command_line()
    payload = run_attack_bench(cfg, start, norm, eps_list, steps, lr, n_attack, adaptive, progress=not quiet,
                               command=command, train_missing=train_missing, argv=argv)
    click.echo(attack_table(payload["results"]))
    click.echo(f"wall time {payload['timings']['total_s']:.1f} s; results in {cfg.out}/results.md")


def _check_data_root(data_root: Optional[str]) -> None:
    if data_root is not None:
        from .bench.runner import check_dir_path

        check_dir_path(Path(data_root), "--data-root", need_write=False)


@main.command(name="list")
@click.option("--data-root", envvar="NIOOD_DATA")
@_handle_errors
def list_(data_root) -> None:
    """Datasets (and which are present), suites, detectors, methods, classifiers, augmentations and presets."""
    from .bench.detectors import DETECTORS
    from .bench.methods import METHODS, list_methods
    from .data import dataset_status, list_augmentations, list_datasets
    from .models import list_classifiers
    from .presets import list_presets
    from .suites import list_suites

    _check_data_root(data_root)
    click.echo("datasets:")
    for name in list_datasets():
        st = dataset_status(name, data_root)
        click.echo(f"  {name:<14} {'present' if st['present'] else 'missing'}")
    click.echo("suites: " + ", ".join(list_suites()))
    click.echo("detectors:")
    for name in DETECTORS.in_order():
        entry = DETECTORS.get(name)
        scope = f" ({entry.scope()})" if entry.scope() else ""
        click.echo(f"  {name:<12} {entry.description}{scope}")
    click.echo("methods:")
    for name in list_methods():
        click.echo(f"  {name:<10} {METHODS.get(name).description}")
    click.echo("classifiers: " + ", ".join(list_classifiers()) + " (and any timm model name)")
    click.echo("augmentations: " + ", ".join(list_augmentations()))
    click.echo("presets: " + ", ".join(list_presets()))


@main.command()
@click.option("--data-root", envvar="NIOOD_DATA")
@_handle_errors
def data(data_root) -> None:
    """Where each dataset is looked for, and how to get a missing one."""
    from .data import dataset_status, default_data_root, list_datasets

    _check_data_root(data_root)
    click.echo(f"data root: {data_root or default_data_root()}")
    for name in list_datasets():
        st = dataset_status(name, data_root)
        click.echo(f"\n{name}: {'present' if st['present'] else 'MISSING'}")
        for place in st["looked_in"]:
            click.echo(f"  looked in: {place}")
        if not st["present"]:
            click.echo(f"  how to get it: {st['how_to_get']}")


@main.command()
@click.argument("dirs", nargs=-1, required=True)
@_handle_errors
def compare(dirs) -> None:
    """One side-by-side table of several `run` result directories."""
    from .bench.report import compare as compare_runs

    click.echo(compare_runs(dirs))


if __name__ == "__main__":  # pragma: no cover
    main()
