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
    run.add_argument("--fresh", action="store_true", help="start over: move an existing results directory aside "
                     "to <dir>.old-<time> (never deleted)")
    run.add_argument("--add", action="store_true", help="add this spec's configurations to a directory that holds "
                     "another study")
    run.add_argument("--dry-run", action="store_true", help="print the configurations, runs, epochs and an "
                     "estimated time (from a few timed steps per configuration); write nothing")
    run.add_argument("--print-config", nargs="?", const="toml", choices=["toml", "json"],
                     help="print the resolved spec (after --quick and --set) as TOML (default) or JSON, and exit")
    run.add_argument("--quick", action="store_true", help="apply the spec's [quick] section: a few-minute version")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a field by dotted name, e.g. --set train.epochs=5 (repeatable)")
    run.add_argument("--data", metavar="PATH", help="train on your own data: CIFAR-10's python batches, or a folder "
                     "with one sub-folder of images per class (e.g. cats/ dogs/), in place of the spec's dataset "
                     "(its split settings kept)")
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
    ls.add_argument("directories", nargs="+", metavar="DIR", help="one or more results directories")
    ls.add_argument("--runs", action="store_true", help="one row per run: its id, status, epochs and final metrics")
    ls.add_argument("--json", action="store_true", help="JSON, one object per configuration (or run)")

    sub.add_parser("recipes", help="list the built-in recipes")

    report = sub.add_parser("report", help="write DIR/report.html, DIR/figures/*.png|svg and DIR/summary.md")
    report.add_argument("directories", nargs="+", metavar="DIR", help="a results directory, or several to compare")
    report.add_argument("--out", help="where to write the report (needed for several directories: one report with "
                        "every study's configurations, each labelled with its study)")

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
    analyze.add_argument("--run", action="append", metavar="ID", help="only this run, as `ls DIR --runs` shows it "
                         "(label-sSEED) or its stored id (repeatable; default: every finished run)")
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

    if args.fresh and (args.add or args.resume):
        raise SpecError(f"--fresh starts over; it cannot go with {'--add' if args.add else '--resume'}")
    options = RunOptions(out=args.out, sets=args.set, quick=args.quick, resume=args.resume, jobs=args.jobs,
                         data=args.data, ddp=args.ddp, device=args.device, executor=args.executor,
                         address=args.address, vectorize=args.vectorize, report=not args.no_report,
                         fresh=args.fresh, add=args.add)
    if args.print_config:
        from batchlab.study import resolved_spec

        print(resolved_spec(args.target, options, args.print_config), end="")
        return 0
    if args.dry_run:
        from batchlab.results.tables import show_preview
        from batchlab.study import preview

        show_preview(preview(args.target, options))
        return 0
    quiet = args.quiet or not sys.stderr.isatty()
    study = run_study(args.target, options, LogReporter if quiet else BarReporter, _say)
    if study is None:  # a torchrun process other than rank 0
        return 0
    from batchlab.results.tables import show_summary

    parallel = f" ({study.world.size} processes per run)" if study.world else ""
    show_summary(study.rows, f"{study.plan.study.name}: {study.directory}{parallel}")
    if study.claims:
        from batchlab.results.claims import counts_line

        print(counts_line(study.claims))
    if study.report is not None:
        print(f"report: {study.report}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if len(args.directories) > 1 and not args.out:
        raise SpecError("report of several directories: say where it goes with --out DIR")
    if args.out:
        from batchlab.report.compare import write_comparison

        path = write_comparison(args.directories, args.out)
    else:
        from batchlab.report import write_report

        path = write_report(args.directories[0])
    print(f"wrote {path}, {path.parent / 'summary.md'} and {path.parent / 'figures'}/")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from batchlab.results.store import load
    from batchlab.results.summary import summarize
    from batchlab.results.tables import run_rows, show, show_summary

    listed = []
    for directory in args.directories:
        rows = (run_rows if args.runs else summarize)(load(directory))
        listed += [{**({"study": directory} if len(args.directories) > 1 else {}), **row} for row in rows]
        if not args.json:
            (show if args.runs else show_summary)(rows, directory)
    if args.json:
        print(json.dumps(listed, indent=2, default=str))
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
    from batchlab.results.labels import plan_labels
    from batchlab.results.tables import show
    from batchlab.study import measure_configuration
    from batchlab.sweep.progress import counted_work

    if getattr(args, "batches", 2) < 2:
        raise SpecError(f"--batches must be at least 2, got {args.batches}")
    if args.command == "noise-scale":
        params = {"after_epochs": args.after_epochs, "small": args.small, "big": args.big, "batches": args.batches}
    elif args.command == "grad-stats":
        params = {"batch_sizes": _sizes(args.batch_sizes), "after_epochs": [args.after_epochs],
                  "batches": args.batches, "diversity_batches": args.diversity_batches}
    else:
        params = {"batch_sizes": _sizes(args.batch_sizes)}
    with counted_work(args.command) as step:
        done = measure_configuration(args.target, args.command, params, args.seed, args.set, args.out, step)
    if args.json:
        print(json.dumps(done.rows, indent=2))
    else:
        label = plan_labels(done.plan.runs).get(done.run.config_id, done.run.config_id)
        show(done.rows, f"{args.command}: {done.plan.study.name}, configuration {label}, seed {args.seed} "
                        f"(stored in {done.directory})")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    """One analysis over a results directory: per-run results, then mean ± std by configuration."""
    import importlib

    for module in args.plugin:
        importlib.import_module(module)
    from batchlab.results.tables import show_analysis
    from batchlab.study import analyze_study
    from batchlab.sweep.progress import counted_work

    if args.jobs is not None and args.jobs < 1:
        raise SpecError(f"--jobs must be at least 1, got {args.jobs}")
    with counted_work(args.analysis) as step:
        done = analyze_study(args.directory, args.analysis, args.param, args.run, args.pair, args.epoch, args.jobs,
                             step)
    if args.json:
        print(json.dumps(done.rows, indent=2))
    else:
        show_analysis(args.analysis, done.rows, done.summary, args.directory)
    return 1 if any(row["status"] != "ok" for row in done.rows) else 0


def cmd_export(args: argparse.Namespace) -> int:
    from batchlab.results.export import export

    for line in export([Path(d) for d in args.directories], "csv" if args.csv else args.format, args.to):
        print(line)
    return 0
