"""The ``batchlab`` command. Imports stay inside the commands so ``batchlab --help`` never loads torch."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batchlab.errors import EnvironmentFailure, SpecError, Terminated, os_failure


def _parser() -> argparse.ArgumentParser:
    from batchlab import __version__

    parser = argparse.ArgumentParser(prog="batchlab", description="Batch-size studies of neural-network training.")
    parser.add_argument("--version", action="version", version=f"batchlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a study: a spec file or a built-in recipe name")
    run.add_argument("target", help="a spec .toml file, or a recipe name (see `batchlab recipes`)")
    run.add_argument("--out", help="results directory (default: runs/<study name>[-quick])")
    run.add_argument("--jobs", type=int, help="worker processes, one thread each (default: all cores)")
    run.add_argument("--resume", action="store_true", help="continue an existing directory (also the default)")
    run.add_argument("--quick", action="store_true", help="apply the spec's [quick] section: a few-minute version")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a field by dotted name, e.g. --set train.epochs=5 (repeatable)")
    run.add_argument("--data", metavar="PATH", help="train on your own images: a folder with one sub-folder per "
                     "class (e.g. cats/ dogs/), in place of the spec's dataset (its split settings kept)")
    run.add_argument("--quiet", action="store_true", help="log lines instead of a progress bar")
    run.add_argument("--no-report", action="store_true", help="skip writing report.html, figures/ and summary.md")
    run.add_argument("--ddp", type=int, metavar="N", help="split every batch across N data-parallel processes "
                     "(DistributedDataParallel; the same as --set train.processes=N)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"],
                     help="where data and models sit: auto (a GPU when one is visible), cpu or cuda "
                          "(default: the spec's train.device if it sets one, else auto)")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="where runs execute: local worker processes, or a Ray cluster (pip install 'batchlab[ray]')")
    run.add_argument("--address", help="the Ray cluster to join (default: start a local one)")
    run.add_argument("--vectorize", choices=["auto", "on", "off"], default="auto",
                     help="train a configuration's trials as one stacked model: auto (where a cached calibration "
                          "says it is faster here), on (wherever possible), off (default: auto)")

    ls = sub.add_parser("ls", help="one row per configuration: final metrics, mean ± std over trials")
    ls.add_argument("directory")
    ls.add_argument("--json", action="store_true", help="JSON, one object per configuration")

    sub.add_parser("recipes", help="list the built-in recipes")

    report = sub.add_parser("report", help="write DIR/report.html, DIR/figures/*.png|svg and DIR/summary.md")
    report.add_argument("directory")

    def point(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("target", help="a spec .toml file or a recipe name; its first configuration is used")
        cmd.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a field (e.g. to pick the configuration), repeatable")
        cmd.add_argument("--seed", type=int, default=0, help="the trial seed (initialization and batches)")
        cmd.add_argument("--out", help="results directory to store the measurement in (default: runs/<name>)")
        cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
        return cmd

    noise = point("noise-scale", "gradient noise scale and predicted critical batch size (McCandlish et al.)")
    noise.add_argument("--after-epochs", type=int, nargs="+", default=[0, 1], metavar="N",
                       help="measure at initialization (0) and after these training epochs (default: 0 1)")
    noise.add_argument("--small", type=int, default=16, help="the small batch size of the estimator (default 16)")
    noise.add_argument("--big", type=int, help="the big batch size (default: half the training set)")
    noise.add_argument("--batches", type=int, default=200, help="random batches per size (default 200)")

    grads = point("grad-stats", "norm of the mean batch gradient vs batch size, and gradient diversity")
    grads.add_argument("--batch-sizes", default="1,10,100,1000", help="comma-separated (default 1,10,100,1000)")
    grads.add_argument("--batches", type=int, default=1000, help="random batches per size (default 1000)")
    grads.add_argument("--diversity-batches", type=int, default=20,
                       help="batches per size for the diversity ratio, from per-example gradients (default 20)")
    grads.add_argument("--after-epochs", type=int, default=0, help="train this many epochs first (default 0)")

    memory = point("memory", "peak process memory of a training step, by batch size")
    memory.add_argument("--batch-sizes", default="20,100,1000", help="comma-separated (default 20,100,1000)")

    analyze = sub.add_parser("analyze", help="analyse trained minima: sharpness, hessian, interpolate, landscape")
    analyze.add_argument("analysis", help="sharpness | hessian | interpolate | landscape (or a registered plug-in)")
    analyze.add_argument("directory", help="a results directory written by `batchlab run`")
    analyze.add_argument("--run", action="append", metavar="ID", help="only this run (repeatable; default: every "
                         "finished run)")
    analyze.add_argument("--pair", nargs=2, action="append", metavar=("A", "B"),
                         help="interpolate from run A to run B (repeatable; default: smallest- vs largest-batch run "
                              "of each seed)")
    analyze.add_argument("--epoch", type=int, help="the checkpoint to analyse (default: each run's last)")
    analyze.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                         help="a parameter of the analysis, e.g. -p epsilon=5e-4 (repeatable)")
    analyze.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import first (registers "
                         "analyses)")
    analyze.add_argument("--jobs", type=int, help="worker processes when several runs are analysed (default: all cores)")
    analyze.add_argument("--json", action="store_true", help="print the results as JSON")

    export = sub.add_parser("export", help="results to CSV files, TensorBoard event files or MLflow runs")
    export.add_argument("directories", nargs="+", metavar="DIR", help="one or more results directories")
    export.add_argument("--format", choices=["csv", "tensorboard", "mlflow"], default="csv",
                        help="csv: runs.csv and epochs.csv; tensorboard: one event folder per run; mlflow: one "
                             "MLflow run per run (pip install 'batchlab[mlflow]') (default: csv)")
    export.add_argument("--csv", action="store_true", help=argparse.SUPPRESS)  # the older spelling of --format csv
    export.add_argument("--to", help="destination folder, or an MLflow tracking URI (default: each directory itself)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure a user can cause or meet is one line on stderr and an exit code:
    2 bad input, 1 the machine (a full disk), 130 Ctrl-C, 143 SIGTERM, never a traceback."""
    for stream in (sys.stdout, sys.stderr):  # a name the terminal cannot encode is escaped, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = _parser().parse_args(argv)
    commands = {"run": cmd_run, "ls": cmd_ls, "recipes": cmd_recipes, "export": cmd_export,
                "noise-scale": cmd_measure, "grad-stats": cmd_measure, "memory": cmd_measure,
                "analyze": cmd_analyze, "report": cmd_report}
    with _sigterm_as_interrupt():
        try:
            return commands[args.command](args)
        except (SpecError, EnvironmentFailure) as e:
            return _fail(str(e), e.exit_code)
        except BrokenPipeError:  # `batchlab ls DIR | head -1`: the reader left; that is not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except OSError as e:
            failure = os_failure(e, "batchlab")
            return _fail(str(failure), failure.exit_code)
        except KeyboardInterrupt as stop:
            said = stop.args[0] if stop.args else "interrupted; what finished is stored; run the same command again"
            return _fail(said, 143 if isinstance(stop, Terminated) else 130, prefix="batchlab: ")


def _fail(message: str, code: int, prefix: str = "batchlab: error: ") -> int:
    print(f"{prefix}{message}", file=sys.stderr)
    return code


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C (workers stopped, the store closed); only the main thread can listen."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Terminated("terminated; what finished is stored; run the same command again to continue")

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from batchlab.study import RunOptions, run_study
    from batchlab.sweep.progress import BarReporter, LogReporter

    options = RunOptions(out=args.out, sets=args.set, quick=args.quick, resume=args.resume, jobs=args.jobs,
                         data=args.data, ddp=args.ddp, device=args.device, executor=args.executor,
                         address=args.address, vectorize=args.vectorize, report=not args.no_report)
    quiet = args.quiet or not sys.stderr.isatty()
    study = run_study(args.target, options, LogReporter if quiet else BarReporter, _say)
    if study is None:  # a torchrun process other than rank 0
        return 0
    parallel = f" ({study.world.size} processes per run)" if study.world else ""
    _print_table(study.rows, f"{study.plan.study.name}: {study.directory}{parallel}")
    if study.claims:
        from batchlab.results.claims import counts_line

        print(counts_line(study.claims))
    if study.report is not None:
        print(f"report: {study.report}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from batchlab.report import write_report

    path = write_report(args.directory)
    print(f"wrote {path}, {path.parent / 'summary.md'} and {path.parent / 'figures'}/")
    return 0


def _print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console

    from batchlab.results.summary import render_table

    Console(width=200 if not sys.stdout.isatty() else None).print(render_table(rows, title))


def cmd_ls(args: argparse.Namespace) -> int:
    from batchlab.results.store import load
    from batchlab.results.summary import summarize

    rows = summarize(load(args.directory))
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        _print_table(rows, args.directory)
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from batchlab.spec import read_document, recipe_names

    for name in recipe_names():
        description = read_document(name)[0].get("description", "").strip()
        print(f"{name:24s} {description.splitlines()[0] if description else ''}")
    return 0


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SpecError(f"--batch-sizes: expected comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise SpecError(f"--batch-sizes: expected positive integers, got {text!r}")
    return sizes


def cmd_measure(args: argparse.Namespace) -> int:
    """noise-scale, grad-stats and memory: measure one configuration, print, store."""
    from batchlab.study import measure_configuration

    if getattr(args, "batches", 2) < 2:
        raise SpecError(f"--batches must be at least 2, got {args.batches}")
    if args.command == "noise-scale":
        params = {"after_epochs": args.after_epochs, "small": args.small, "big": args.big, "batches": args.batches}
    elif args.command == "grad-stats":
        params = {"batch_sizes": _sizes(args.batch_sizes), "after_epochs": [args.after_epochs],
                  "batches": args.batches, "diversity_batches": args.diversity_batches}
    else:
        params = {"batch_sizes": _sizes(args.batch_sizes)}
    done = measure_configuration(args.target, args.command, params, args.seed, args.set, args.out)
    if args.json:
        print(json.dumps(done.rows, indent=2))
    else:
        _print_rows(done.rows, f"{args.command}: {done.plan.study.name}, configuration {done.run.config_id}, "
                               f"seed {args.seed} (stored in {done.directory})")
    return 0


def _print_rows(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for key in rows[0]:
        table.add_column(key, justify="right")
    for row in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


def cmd_analyze(args: argparse.Namespace) -> int:
    """One analysis over a results directory: per-run results, then mean ± std by configuration."""
    import importlib

    from batchlab.spec import parse_override

    for module in args.plugin:
        importlib.import_module(module)
    from batchlab.analysis import DETAILS, HEADLINES, PAIRWISE, analyses
    from batchlab.analysis.runner import analyze_directory
    from batchlab.results.lock import writer_lock
    from batchlab.results.store import ResultsStore
    from batchlab.spec.plan import import_plugins
    from batchlab.sweep.workers import default_jobs

    directory = Path(args.directory)
    if not (directory / "results.db").exists():
        raise SpecError(f"no results in {str(directory)!r} (no results.db)")
    store = ResultsStore.open_read(directory)
    try:  # the study's plug-ins, from where its spec was: its models and data must be rebuilt
        plugins = sorted({p for r in store.run_rows() for p in r["config"].get("plugins", [])})
        import_plugins(plugins, [d for d in [store.meta("spec_directory")] if d])
    finally:
        store.close()
    try:
        params = analyses.resolve({**dict(parse_override(p) for p in args.param), "name": args.analysis})
    except ValueError as e:
        raise SpecError(f"analyze {args.analysis}: {e}") from None
    params.pop("name")
    if args.pair and args.analysis not in PAIRWISE:
        raise SpecError(f"--pair is for pairwise analyses ({', '.join(sorted(PAIRWISE))}), not {args.analysis!r}")
    if args.jobs is not None and args.jobs < 1:
        raise SpecError(f"--jobs must be at least 1, got {args.jobs}")
    with writer_lock(directory):
        rows = analyze_directory(directory, args.analysis, params, run_ids=args.run,
                                 pairs=[tuple(p) for p in args.pair] if args.pair else None, epoch=args.epoch,
                                 jobs=args.jobs or default_jobs())
    rows.sort(key=lambda row: (row[1], row[2]))
    if args.json:
        print(json.dumps([{"config_id": c, "seed": s, "label": label, **data} for _, c, s, label, data in rows],
                         indent=2))
        return 0
    headline = HEADLINES.get(args.analysis) or []
    shown = headline + DETAILS.get(args.analysis, [])
    table = [{"configuration": c, "seed": s, "label": label, "status": data["status"],
              **{k: data.get(k) for k in shown}, **({"error": data["error"]} if data["status"] != "ok" else {})}
             for _, c, s, label, data in rows]
    _print_rows(table, f"{args.analysis}: {directory} (stored in its results)")
    from batchlab.results.store import load
    from batchlab.results.summary import summarize_measurements

    summary = summarize_measurements(load(directory), args.analysis)
    if summary and headline:
        _print_rows(summary, f"{args.analysis}: mean ± std over trials, by configuration")
    failed = sum(data["status"] != "ok" for *_, data in rows)
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from batchlab.results.export import export

    for line in export([Path(d) for d in args.directories], "csv" if args.csv else args.format, args.to):
        print(line)
    return 0
