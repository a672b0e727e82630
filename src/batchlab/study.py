"""A study from spec to report, in the order it happens: ``run_study`` reads top to bottom.

    plan      the spec (a file or a recipe), its --set overrides, its sweep expanded into runs
    preflight checks that need the data; the study's warnings, once
    store     the results directory: the study and its planned runs recorded
    execute   every run not yet finished, in workers (or torchrun ranks, or on Ray)
    analyses  the spec's [analysis] that the runs could not do themselves (pairwise ones)
    measure   the spec's [measure] section, on its first configuration
    report    report.html, figures/ and summary.md

The CLI only parses arguments and prints; tests and scripts call these functions directly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchlab.errors import SpecError, Terminated
from batchlab.paths import check_output_dir, default_output_dir
from batchlab.results.claims import check_all
from batchlab.results.lock import writer_lock
from batchlab.results.store import DONE, ResultsStore, load
from batchlab.results.summary import summarize
from batchlab.spec import RunSpec, StudyPlan, parse_override, plan_study, read_document
from batchlab.sweep.events import Reporter
from batchlab.training.parallel import World, world_from_environment

Say = Callable[[str], None]  # a line for the user (warnings, notes), printed by the caller


@dataclass
class RunOptions:
    """How to run a study: the ``batchlab run`` options, with their defaults."""

    out: str | Path | None = None  # default: runs/<study name>[-quick]
    sets: list[str] = field(default_factory=list)  # KEY=VALUE overrides
    quick: bool = False
    resume: bool = False  # insist that the directory exists (re-running resumes anyway)
    jobs: int | None = None  # default: every core (one process on a GPU)
    data: str | None = None  # a folder of class sub-folders, in place of the spec's dataset
    ddp: int | None = None
    device: str | None = None  # auto | cpu | cuda; default: the spec's, else auto
    executor: str = "local"  # local | ray
    address: str | None = None
    vectorize: str = "auto"  # auto | on | off
    report: bool = True


@dataclass
class StudyRun:
    """What ``run_study`` did: where, which runs, the summary rows, and the notes it has for the user."""

    directory: Path
    plan: StudyPlan
    rows: list[dict[str, Any]]
    notes: list[str]
    report: Path | None
    world: World | None = None
    claims: list[dict[str, Any]] = field(default_factory=list)  # each claim's verdict (results/claims.py)


def run_study(target: str | dict[str, Any], options: RunOptions, progress: Callable[[int], Reporter],
              say: Say = lambda line: None) -> StudyRun | None:
    """Run a study from a spec file, a recipe name or a spec already read (a dict); None in a
    torchrun process other than rank 0.

    ``progress(total_runs)`` makes the progress display (a context manager); ``say`` receives the
    study's warnings and notes as they arise. The results directory is this process's alone while it
    writes (results/lock.py); an interrupt stops the workers and says what is kept.
    """
    world = world_from_environment()  # started by torchrun: this process is one rank of every run
    plan = plan_runs(target, options, world)
    out = output_directory(plan, options)
    notes: list[str] = []
    jobs = 1 if world is not None or _on_gpu(plan.runs) else (options.jobs or _default_jobs())
    try:
        if world is not None and world.rank != 0:
            _execute_in_world(plan, None, world, progress, say)
            return None
        with writer_lock(out):
            store = open_store(plan, out, options.quick, say)
            try:
                with progress(len(plan.runs)) as reporter:
                    if world is not None:
                        _execute_in_world(plan, store, world, progress, say, reporter)
                    else:
                        from batchlab.sweep import execute

                        notes = execute(plan.runs, store, options.jobs or jobs, reporter, vectorize=options.vectorize,
                                        executor=options.executor, address=options.address)
            finally:
                store.close()
            for note in notes:
                say(f"note: {note}")
            analyze_after_sweep(out, plan.runs, jobs)
            for name in measure_after_sweep(out, plan):
                say(f"measured {name} on configuration {plan.runs[0].config_id}")
    except KeyboardInterrupt as stop:
        what = "terminated" if isinstance(stop, Terminated) else "interrupted"
        raise type(stop)(_kept(out, plan, what)) from None
    results = load(out)
    rows = summarize(results, config_ids=list(dict.fromkeys(r.config_id for r in plan.runs)))
    claims = check_all(plan.study.claims, results) if plan.study.claims else []
    report = None
    if options.report:
        from batchlab.report import write_report

        report = write_report(out, quick=options.quick)
    return StudyRun(out, plan, rows, notes, report, world, claims)


def _kept(out: Path, plan: StudyPlan, what: str = "interrupted") -> str:
    """What an interrupted (or terminated) study keeps, and how to go on."""
    try:
        store = ResultsStore.open_read(out)
        try:
            done = sum(store.status(r.run_id) in DONE for r in plan.runs)
        finally:
            store.close()
    except Exception:  # noqa: BLE001 - the message must come out whatever the store's state
        return f"{what}; finished runs are stored in {out}; run the same command again to continue"
    return (f"{what}; {done} of {len(plan.runs)} runs are finished and stored in {out}; runs in flight are "
            "redone from their start; run the same command again to continue")


def plan_runs(target: str | dict[str, Any], options: RunOptions, world: World | None = None) -> StudyPlan:
    """The spec with its overrides, expanded into runs; checked against the options and the machine."""
    doc = copy.deepcopy(target) if isinstance(target, dict) else read_document(target)[0]
    sets = [parse_override(s) for s in options.sets]
    if options.data:
        quick_data = (doc.get("quick") or {}).get("data", {}) if options.quick else {}
        sets.insert(0, ("data", image_folder(options.data, {**(doc.get("data") or {}), **quick_data})))
    if options.ddp is not None:
        if options.ddp < 1:
            raise SpecError(f"--ddp must be at least 1, got {options.ddp}")
        sets.append(("train.processes", options.ddp))
    named = "device" in (doc.get("train") or {}) or any(key == "train.device" for key, _ in sets)
    if options.device is not None or not named:  # --device wins; else the spec's or --set's choice; else auto
        sets.append(("train.device", device_for(options.device or "auto")))
    if world is not None:
        sets.append(("train.processes", world.size))
    if options.jobs is not None and options.jobs < 1:
        raise SpecError(f"--jobs must be at least 1, got {options.jobs}")
    if options.address and options.executor != "ray":
        raise SpecError("--address is for --executor ray")
    plan = plan_study(doc, quick=options.quick, sets=sets)
    check_gpus(plan.runs)
    return plan


def output_directory(plan: StudyPlan, options: RunOptions) -> Path:
    """``--out``, else runs/<study name>[-quick]: checked and created before any work."""
    out = Path(options.out) if options.out else default_output_dir(plan.study.name, options.quick)
    if options.resume and not (out / "results.db").exists():
        raise SpecError(f"--resume: nothing to resume in {str(out)!r}")
    return check_output_dir(out, "--out" if options.out else "output directory")


def open_store(plan: StudyPlan, out: Path, quick: bool, say: Say) -> ResultsStore:
    """Check the study against its data and the machine (warnings said once), then open its store
    with the study, where it ran, and its runs recorded."""
    from batchlab.report.environment import environment
    from batchlab.sweep.preflight import preflight

    for warning in preflight(plan.runs, plan.study.measure):
        say(f"warning: {warning}")
    store = ResultsStore(out)
    store.set_meta("study", plan.study.model_dump(exclude={"quick"}))
    store.set_meta("quick", quick)
    store.set_meta("environment", environment())
    store.set_meta("spec_directory", plan.spec_directory)
    store.plan(plan.runs)
    return store


def _execute_in_world(plan: StudyPlan, store: ResultsStore | None, world: World,
                      progress: Callable[[int], Reporter], say: Say, reporter: Reporter | None = None) -> None:
    """``torchrun --nproc-per-node N -m batchlab run SPEC``: every rank trains every run on its shard
    of each batch; rank 0 (with the store and the reporter) alone writes."""
    import torch.distributed as dist

    from batchlab.sweep.events import StoreWriter
    from batchlab.sweep.torchrun import execute_in_world
    from batchlab.training.parallel import backend

    dist.init_process_group(backend(plan.runs[0].config["train"]["device"]))
    try:
        writer = StoreWriter(store, reporter, plan.runs) if store is not None and reporter is not None else None
        execute_in_world(plan.runs, store, writer, world)
    finally:
        dist.destroy_process_group()


def analyze_after_sweep(out: Path, runs: list[RunSpec], jobs: int) -> None:
    """The spec's analyses that the runs did not do themselves: pairwise ones, and per-run ones for
    runs that had finished before the [analysis] section was added (taken from their checkpoints)."""
    from batchlab.analysis import PAIRWISE
    from batchlab.analysis.runner import analyze_directory, default_pairs

    wanted: dict[str, dict[str, Any]] = {}
    for run in runs:
        wanted.update(run.config.get("analysis", {}))
    run_ids = [r.run_id for r in runs]
    for name, params in wanted.items():
        if name in PAIRWISE:
            store = ResultsStore.open_read(out)
            try:
                pairs = default_pairs([r for r in store.run_rows() if r["run_id"] in run_ids])
            finally:
                store.close()
            if pairs:
                analyze_directory(out, name, params, pairs=pairs, jobs=jobs, skip_done=True)
        else:
            analyze_directory(out, name, params, run_ids=run_ids, jobs=jobs, skip_done=True)


def measure_after_sweep(out: Path, plan: StudyPlan, seed: int = 0) -> list[str]:
    """The spec's [measure] section on its first configuration (seed 0), as `batchlab grad-stats`
    does. A measurement already stored for that configuration and seed is not taken again, so a
    resumed or re-run study adds only what is missing. Returns the names taken now."""
    from batchlab.gradients import measurements

    if not plan.study.measure:
        return []
    run = plan.runs[0]
    store = ResultsStore(out)
    try:
        done = {kind for kind, config_id, s, *_ in store.measurement_rows() if config_id == run.config_id and s == seed}
        taken = []
        for name, params in plan.study.measure.items():
            if name in done:
                continue
            for label, row in measurements.build({"name": name, **params}, {**run.config, "seed": seed}):
                store.add_measurement(name, run.config_id, seed, label, row)
            taken.append(name)
        return taken
    finally:
        store.close()


@dataclass
class Measurement:
    """What ``measure_configuration`` measured: the rows, of which configuration, stored where."""

    name: str
    plan: StudyPlan
    run: RunSpec
    seed: int
    rows: list[dict[str, Any]]
    directory: Path


def measure_configuration(target: str, name: str, params: dict[str, Any], seed: int = 0, sets: list[str] = (),
                          out: str | Path | None = None) -> Measurement:
    """``batchlab noise-scale | grad-stats | memory``: measure the spec's first configuration at one
    trial seed and store the rows (in ``out``, default runs/<name>)."""
    from batchlab.gradients import measurements
    from batchlab.sweep.preflight import preflight

    doc, _ = read_document(target)
    plan = plan_study(doc, sets=[parse_override(s) for s in sets])
    run = plan.runs[0]
    preflight([run])
    try:
        resolved = measurements.resolve({"name": name, **params})
    except ValueError as e:
        raise SpecError(f"{name}: {e}") from None
    directory = check_output_dir(Path(out) if out else default_output_dir(plan.study.name),
                                 "--out" if out else "output directory")
    with writer_lock(directory):
        labelled = measurements.build(resolved, {**run.config, "seed": seed})
        store = ResultsStore(directory)
        try:
            for label, row in labelled:
                store.add_measurement(name, run.config_id, seed, label, row)
        finally:
            store.close()
    return Measurement(name, plan, run, seed, [row for _, row in labelled], directory)


def image_folder(path: str, data: dict[str, Any]) -> dict[str, Any]:
    """``--data PATH``: the image-folder dataset at PATH, keeping the spec's split and normalization."""
    if not Path(path).is_dir():
        raise SpecError(f"--data: {path!r} is not a directory (expected one sub-folder of images per class)")
    kept = {k: data[k] for k in ("subset", "val_fraction", "normalize", "seed") if k in data}
    return {**kept, "name": "image-folder", "path": str(Path(path).resolve())}


def device_for(requested: str) -> str:
    """auto → cuda when torch sees a GPU, else cpu; cuda without one is an error."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise SpecError("--device cuda: torch sees no CUDA device here")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def check_gpus(runs: list[RunSpec]) -> None:
    """Runs on cuda need a GPU torch can see, and a data-parallel one a GPU per process (NCCL
    refuses two ranks on one GPU)."""
    import torch

    if _on_gpu(runs) and not torch.cuda.is_available():
        raise SpecError("train.device = cuda: torch sees no CUDA device here")
    wanted = max((r.config["train"].get("processes", 1) for r in runs if r.config["train"]["device"] == "cuda"),
                 default=0)
    if wanted > 1 and wanted > torch.cuda.device_count():
        raise SpecError(f"train.processes = {wanted} on cuda needs {wanted} GPUs; torch sees "
                        f"{torch.cuda.device_count()} (use --device cpu for gloo processes)")


def _on_gpu(runs: list[RunSpec]) -> bool:
    return any(r.config["train"]["device"] == "cuda" for r in runs)


def _default_jobs() -> int:
    from batchlab.sweep.workers import default_jobs

    return default_jobs()
