"""A study from spec to report, in the order it happens: ``run_study`` reads top to bottom.

    plan      the spec (a file or a recipe), its --set overrides, its sweep expanded into runs
    directory the results directory: this study's (resumed), another's (refused unless --add, or
              moved aside with --fresh), or new
    preflight checks that need the data; the study's warnings, once
    store     the study and its planned runs recorded
    execute   every run not yet finished, in workers (or torchrun ranks, or on Ray)
    analyses  the spec's [analysis] that the runs could not do themselves (pairwise ones)
    measure   the spec's [measure] section, on its first configuration
    report    report.html, figures/ and summary.md

The CLI only parses arguments and prints; tests and scripts call these functions directly.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchlab.data.files import data_override
from batchlab.errors import SpecError, Terminated
from batchlab.paths import check_output_dir, default_output_dir
from batchlab.results.claims import check_all
from batchlab.results.labels import named_runs, plan_labels
from batchlab.results.lock import writer_lock
from batchlab.results.store import DONE, ResultsStore, load
from batchlab.results.summary import summarize
from batchlab.spec import RunSpec, StudyPlan, parse_override, plan_study, read_document
from batchlab.spec.plan import check_not_swept
from batchlab.spec.reading import deep_merge
from batchlab.sweep.events import Reporter
from batchlab.training.parallel import World, world_from_environment

Say = Callable[[str], None]  # a line for the user (warnings, notes), printed by the caller
# The progress display for the runs to do, their labels (config id → label) and the worker count
# (sweep/progress.py): a context manager that is the sweep's Reporter.
Progress = Callable[[list[RunSpec], dict[str, str], int], Reporter]


@dataclass
class RunOptions:
    """How to run a study: the ``batchlab run`` options, with their defaults."""

    out: str | Path | None = None  # default: runs/<study name>[-quick]
    sets: list[str] = field(default_factory=list)  # KEY=VALUE overrides
    quick: bool = False
    resume: bool = False  # insist that the directory exists (re-running resumes anyway)
    fresh: bool = False  # move an existing results directory aside (<dir>.old-<time>) and start over
    add: bool = False  # add this study's configurations to a directory that holds another study
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


def run_study(target: str | dict[str, Any], options: RunOptions, progress: Progress,
              say: Say = lambda line: None) -> StudyRun | None:
    """Run a study from a spec file, a recipe name or a spec already read (a dict); None in a
    torchrun process other than rank 0.

    ``progress(runs, labels, jobs)`` makes the progress display of the runs still to do (a context
    manager); ``say`` receives the study's warnings and notes as they arise. The results directory
    is this process's alone while it writes (results/lock.py); an interrupt stops the workers and
    says what is kept.
    """
    from batchlab.sweep.preflight import preflight

    world = world_from_environment()  # started by torchrun: this process is one rank of every run
    plan = plan_runs(target, options, world)
    warnings = preflight(plan.runs, plan.study.measure)  # what needs the data, before anything is written
    if world is None or world.rank == 0:
        for warning in warnings:
            say(f"warning: {warning}")
    out = output_directory(plan, options)
    notes: list[str] = []
    jobs = 1 if world is not None or _on_gpu(plan.runs) else (options.jobs or _default_jobs())
    try:
        if world is not None and world.rank != 0:
            _execute_in_world(plan, None, world)
            return None
        with writer_lock(out):
            moved = settle_directory(out, plan, options)
        if moved is not None:
            say(f"moved the earlier results to {moved}; starting afresh in {out}")
            check_output_dir(out, "--out" if options.out else "output directory")
        with writer_lock(out):
            store = open_store(plan, out, options.quick)
            try:
                todo = [r for r in plan.runs if store.status(r.run_id) not in DONE]
                with progress(todo, plan_labels(plan.runs), jobs) as reporter:
                    if world is not None:
                        _execute_in_world(plan, store, world, reporter)
                    else:
                        from batchlab.sweep import execute

                        notes = execute(plan.runs, store, options.jobs or jobs, reporter, vectorize=options.vectorize,
                                        executor=options.executor, address=options.address)
            finally:
                store.close()
            labels = plan_labels(plan.runs)
            for note in notes:
                say(f"note: {named_runs(note, labels)}")
            analyze_after_sweep(out, plan.runs, jobs)
            for name in measure_after_sweep(out, plan):
                say(f"measured {name} on configuration {labels[plan.runs[0].config_id]}")
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


def settle_directory(out: Path, plan: StudyPlan, options: RunOptions) -> Path | None:
    """Whether this study may write into ``out``. A directory resumes when every configuration the
    spec plans is already in its store (more trials of them are added as a resume); a directory that
    holds other configurations is refused, unless ``--add`` (both studies in one directory) or
    ``--fresh`` (the old directory moved aside, never deleted; its new path is returned)."""
    if not (out / "results.db").exists():
        return None
    if options.fresh:
        return move_aside(out)
    store = ResultsStore.open_read(out)
    try:
        stored = {r["config_id"] for r in store.run_rows()}
    finally:
        store.close()
    new = {r.config_id for r in plan.runs} - stored
    if not stored or not new or options.add:
        return None
    raise SpecError(f"{str(out)!r} holds another study ({len(new)} of this spec's {len({r.config_id for r in plan.runs})}"
                    f" configurations are not among its {len(stored)}): --fresh starts over (the old directory is "
                    "moved aside, not deleted), --add keeps both studies in it")


def move_aside(out: Path) -> Path:
    """Rename a results directory to ``<dir>.old-<YYYYmmdd-HHMMSS>`` (a suffix added if that exists)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = out.with_name(f"{out.name}.old-{stamp}"), 1
    while target.exists():
        n += 1
        target = out.with_name(f"{out.name}.old-{stamp}-{n}")
    out.rename(target)
    return target


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
    shaped = deep_merge(doc, doc["quick"]) if options.quick and isinstance(doc.get("quick"), dict) else doc
    sets = [parse_override(s) for s in options.sets]
    for text in options.sets:
        check_not_swept(shaped, text)
    if options.data:
        quick_data = (doc.get("quick") or {}).get("data", {}) if options.quick else {}
        sets.insert(0, ("data", data_override(options.data, {**(doc.get("data") or {}), **quick_data})))
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


def open_store(plan: StudyPlan, out: Path, quick: bool) -> ResultsStore:
    """The study's store, with the study, where it ran, and its runs recorded."""
    from batchlab.report.environment import environment

    store = ResultsStore(out)
    store.set_meta("study", plan.study.model_dump(exclude={"quick"}))
    store.set_meta("quick", quick)
    store.set_meta("environment", environment())
    store.set_meta("spec_directory", plan.spec_directory)
    store.plan(plan.runs)
    return store


def _execute_in_world(plan: StudyPlan, store: ResultsStore | None, world: World, reporter: Reporter | None = None
                      ) -> None:
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
        dist.barrier()  # every rank done talking before any tears its group down (gloo aborts otherwise)
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


def measure_after_sweep(out: Path, plan: StudyPlan) -> list[str]:
    """The spec's [measure] section on its first configuration, as `batchlab grad-stats` does, at the
    first ``trials`` trial seeds (default 1: seed 0) with each trial's own data. A measurement already
    stored for that configuration and seed is not taken again, so a resumed or re-run study adds only
    what is missing. Returns the names taken now."""
    from batchlab.gradients import measurements

    if not plan.study.measure:
        return []
    first = plan.runs[0].config_id
    trials = [run for run in plan.runs if run.config_id == first]
    store = ResultsStore(out)
    try:
        done = {(kind, s) for kind, config_id, s, *_ in store.measurement_rows() if config_id == first}
        taken = []
        for name, params in plan.study.measure.items():
            params = dict(params)
            for run in trials[:params.pop("trials", 1)]:
                if (name, run.seed) in done:
                    continue
                for label, row in measurements.build({"name": name, **params}, run.config):
                    store.add_measurement(name, first, run.seed, label, row)
                taken.append(name)
        return list(dict.fromkeys(taken))
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
                          out: str | Path | None = None, progress: Callable[[int, int, str], None] | None = None
                          ) -> Measurement:
    """``batchlab noise-scale | grad-stats | memory``: measure the spec's first configuration at one
    trial seed and store the rows (in ``out``, default runs/<name>); ``progress(done, total, what)``
    hears of each step (a batch size, a point of training) as it is measured."""
    from batchlab.gradients import measurements
    from batchlab.gradients.measurement import reporting
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
    with writer_lock(directory), reporting(progress):
        labelled = measurements.build(resolved, {**run.config, "seed": seed})
        store = ResultsStore(directory)
        try:
            for label, row in labelled:
                store.add_measurement(name, run.config_id, seed, label, row)
        finally:
            store.close()
    return Measurement(name, plan, run, seed, [row for _, row in labelled], directory)


@dataclass
class Analysis:
    """What ``analyze_study`` found: a row per run (or pair), and mean ± std by configuration."""

    rows: list[dict[str, Any]]  # configuration (label), seed, label (the request), config_id, the result
    summary: list[dict[str, Any]]


def analyze_study(directory: str | Path, name: str, param_texts: list[str], runs: list[str] | None = None,
                  pairs: list[list[str]] | None = None, epoch: int | None = None, jobs: int | None = None,
                  progress: Callable[[int, int, str], None] | None = None) -> Analysis:
    """``batchlab analyze``: one analysis of a results directory's runs (``runs`` and ``pairs`` named
    as ``ls --runs`` shows them, or by stored id), stored with its results; the study's plug-ins are
    imported from where its spec was. ``progress(done, total, what)`` hears of each result."""
    from batchlab.analysis import HEADLINES, PAIRWISE, analyses
    from batchlab.analysis.runner import analyze_directory
    from batchlab.results.labels import config_name, find_run, labels_by_config, run_names
    from batchlab.results.summary import summarize_measurements
    from batchlab.spec.plan import import_plugins

    directory = Path(directory)
    store = ResultsStore.open_read(directory)
    try:
        import_plugins(sorted({p for r in store.run_rows() for p in r["config"].get("plugins", [])}),
                       [d for d in [store.meta("spec_directory")] if d])
    finally:
        store.close()
    try:
        params = analyses.resolve({**dict(parse_override(p) for p in param_texts), "name": name})
    except ValueError as e:
        raise SpecError(f"analyze {name}: {e}") from None
    params.pop("name")
    if pairs and name not in PAIRWISE:
        raise SpecError(f"--pair is for pairwise analyses ({', '.join(sorted(PAIRWISE))}), not {name!r}")
    table = load(directory).runs
    labels, names = labels_by_config(table), run_names(table)

    def stored(shown: str) -> str:
        found = find_run(shown, table)
        if found is None:
            raise SpecError(f"no run {shown!r} in {str(directory)!r}; `batchlab ls {directory} --runs` lists them")
        return found

    def named(config_id: str, seed: int, label: str) -> str:
        return f"{config_name(config_id, labels)} s{seed}: {named_runs(label, names)}"

    with writer_lock(directory):
        found = analyze_directory(directory, name, params, run_ids=[stored(r) for r in runs or []] or None,
                                  pairs=[(stored(a), stored(b)) for a, b in pairs] if pairs else None, epoch=epoch,
                                  jobs=jobs or _default_jobs(), on_done=None if progress is None else (
                                      lambda row, done, total: progress(done, total, named(*row[1:4]))))
    found.sort(key=lambda row: (row[1], row[2]))
    rows = [{"configuration": config_name(c, labels), "seed": s, "label": named_runs(label, names), "config_id": c,
             **data} for _, c, s, label, data in found]
    return Analysis(rows, summarize_measurements(load(directory), name) if HEADLINES.get(name) else [])


@dataclass
class Preview:
    """``run --dry-run``: the plan, where it would be stored, and what it would cost; nothing written."""

    plan: StudyPlan
    directory: Path
    done: int  # runs of the plan already finished there
    jobs: int
    costs: list[Any]  # sweep.estimate.ConfigCost of each configuration still to run
    seconds: float


def preview(target: str | dict[str, Any], options: RunOptions) -> Preview:
    """The study as ``run`` would run it, timed by a few steps per configuration (sweep/estimate.py);
    creates no directory and writes no store."""
    from batchlab.sweep.estimate import estimate

    plan = plan_runs(target, options)
    out = Path(options.out) if options.out else default_output_dir(plan.study.name, options.quick)
    done: set[str] = set()
    if (out / "results.db").exists():
        store = ResultsStore.open_read(out)
        try:
            done = {r.run_id for r in plan.runs if store.status(r.run_id) in DONE}
        finally:
            store.close()
    jobs = 1 if _on_gpu(plan.runs) else (options.jobs or _default_jobs())
    costs, seconds = estimate([r for r in plan.runs if r.run_id not in done], jobs)
    return Preview(plan, out, len(done), jobs, costs, seconds)


def resolved_spec(target: str | dict[str, Any], options: RunOptions, form: str = "toml") -> str:
    """``run --print-config``: the study after --quick and --set, every default filled in, as TOML
    (an unset field, which TOML cannot write, is left out: it keeps its default) or JSON."""
    import json

    import tomli_w

    spec = json.loads(json.dumps(plan_runs(target, options).study.model_dump(exclude={"quick"}), default=str))
    if form == "json":
        return json.dumps(spec, indent=2) + "\n"

    def present(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: present(v) for k, v in value.items() if v is not None}
        return [present(v) for v in value] if isinstance(value, list) else value

    return tomli_w.dumps(present(spec))


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
