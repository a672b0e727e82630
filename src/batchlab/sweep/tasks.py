"""Running a study's runs: in this process, or in worker processes that each compute on one thread.

Workers never touch the results store. They stream events (start, epoch, end) through a queue and
the driver alone writes them, one commit per epoch; so an interrupted sweep keeps every finished
epoch, and the same code can later drive remote executors.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
import traceback
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol

from batchlab.results.store import DONE, ResultsStore
from batchlab.spec import RunSpec

Event = tuple[Any, ...]


class Reporter(Protocol):
    def started(self, run: RunSpec) -> None: ...
    def epoch(self, run_id: str, epoch: int, metrics: dict[str, float]) -> None: ...
    def ended(self, run_id: str, status: str, error: str | None) -> None: ...


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


Checkpoint = Callable[[str, int, Any], None]  # (run_id, epoch, model): keep the model's weights somewhere


def file_checkpoints(directory: str, emit: Callable[[Event], None]) -> Checkpoint:
    """Write checkpoints under ``directory`` and announce each as an event for the store."""
    from batchlab.training.checkpoints import checkpoint_path, save_checkpoint

    def checkpoint(run_id: str, epoch: int, model: Any) -> None:
        path = checkpoint_path(directory, run_id, epoch)
        save_checkpoint(model, path)
        emit(("checkpoint", run_id, epoch, str(path.relative_to(directory))))

    return checkpoint


def run_task(run: RunSpec, emit: Callable[[Event], None], directory: str | None = None, world: Any = None,
             checkpoint: Checkpoint | None = None) -> None:
    """Train one run, reporting through ``emit``; an exception becomes a 'failed' end, never a crash.

    With a results ``directory``, checkpoints are written there and announced as events (or go to
    ``checkpoint``, e.g. back to a Ray driver). Inside a torchrun ``world``, this process trains its
    shard (only rank 0 is given an emit that records).
    """
    from batchlab.errors import BatchlabWarning
    from batchlab.training.loop import train_run

    keep = checkpoint or (file_checkpoints(directory, emit) if directory else None)
    emit(("start", run.run_id))
    if world is None and run.config["train"]["processes"] > 1:  # analyses run later, from the final checkpoint
        from batchlab.training.ddp import train_distributed

        try:
            status, reason, summary = train_distributed(run.config, run.run_id, emit, directory)
            emit(("end", run.run_id, status, reason, summary, None))
        except Exception as e:  # noqa: BLE001 - recorded in the store; the sweep goes on
            emit(("end", run.run_id, "failed", "error", {}, f"{type(e).__name__}: {e}"))
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BatchlabWarning)  # preflight reported them once for the study
            result = train_run(run.config, lambda epoch, metrics: emit(("epoch", run.run_id, epoch, metrics)),
                               on_checkpoint=(lambda epoch, model: keep(run.run_id, epoch, model)) if keep else None,
                               world=world)
        if result.status == "finished" and (world is None or world.rank == 0):
            analyze_at_end(run, result, emit, directory)
        emit(("end", run.run_id, result.status, result.stop_reason, result.summary, None))
    except Exception as e:  # noqa: BLE001 - recorded in the store; the sweep goes on
        message = f"{type(e).__name__}: {e}"
        emit(("end", run.run_id, "failed", "error", {}, message + "\n" + traceback.format_exc()))


def run_group(runs: list[RunSpec], emit: Callable[[Event], None], directory: str | None = None,
              checkpoint: Checkpoint | None = None) -> None:
    """Train trials of one configuration together (vectorized.py); a single run, alone."""
    if len(runs) == 1:
        run_task(runs[0], emit, directory, checkpoint=checkpoint)
        return
    from batchlab.training.stacked import train_trials

    keep = checkpoint or (file_checkpoints(directory, emit) if directory else None)

    for run in runs:
        emit(("start", run.run_id))
    try:
        results = train_trials([r.config for r in runs],
                               lambda i, epoch, metrics: emit(("epoch", runs[i].run_id, epoch, metrics)),
                               on_checkpoint=(lambda i, epoch, model: keep(runs[i].run_id, epoch, model)) if keep
                               else None)
    except Exception as e:  # noqa: BLE001 - recorded in the store; the sweep goes on
        message = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
        for run in runs:
            emit(("end", run.run_id, "failed", "error", {}, message))
        return
    for run, result in zip(runs, results, strict=True):
        if result.status == "finished":
            analyze_at_end(run, result, emit, directory)
        emit(("end", run.run_id, result.status, result.stop_reason, result.summary, None))


GROUP_SIZE = 5  # trials stacked together; fixed, so the numbers never depend on --jobs


def plan_tasks(todo: list[RunSpec], vectorize: str) -> tuple[list[list[RunSpec]], list[str]]:
    """Split the runs into tasks: stacked trial groups where ``vectorize`` (on | auto) allows, else
    single runs. Returns the tasks and one note per configuration that could not be stacked."""
    if vectorize == "off":
        return [[r] for r in todo], []
    from batchlab.data import load_data
    from batchlab.training.loop import build
    from batchlab.training.stacked import calibrate, why_not

    by_config: dict[str, list[RunSpec]] = {}
    for run in todo:
        by_config.setdefault(run.config_id, []).append(run)
    tasks: list[list[RunSpec]] = []
    notes: list[str] = []
    for config_id, group in by_config.items():
        group.sort(key=lambda r: r.seed)
        config = group[0].config
        if len(group) < 2:
            tasks.append(group)
            continue
        model, _ = build(config, load_data(config["data"]))
        reason = why_not(config, model)
        if reason is None and vectorize == "auto":
            with single_thread():
                speedup = calibrate(config, min(GROUP_SIZE, len(group)))
            if speedup < 1.1:
                reason = f"stacking measured {speedup:.2f}x as fast as one by one at batch size " \
                         f"{config['train']['batch_size']} here"
        if reason is not None:
            notes.append(f"configuration {config_id} runs its trials one by one: {reason}")
            tasks.extend([r] for r in group)
            continue
        tasks.extend(group[i : i + GROUP_SIZE] for i in range(0, len(group), GROUP_SIZE))
    return tasks, notes


def analyze_at_end(run: RunSpec, result: Any, emit: Callable[[Event], None], directory: str | None) -> None:
    """The spec's per-run analyses on the trained model, before the run is reported finished
    (pairwise ones need two runs and are done by the driver after the sweep)."""
    from pathlib import Path

    from batchlab.analysis import PAIRWISE
    from batchlab.analysis.runner import analyze_minimum, minimum_from_model

    wanted = {k: v for k, v in run.config.get("analysis", {}).items() if k not in PAIRWISE}
    if not wanted:
        return
    scratch = Path(directory) / "analysis" / run.run_id if directory else None
    minimum = minimum_from_model(run.run_id, run.config_id, run.config, result.summary["epochs"], result.model, scratch)
    for name, params in wanted.items():
        label, data = analyze_minimum(name, params, minimum)
        emit(("measurement", name, run.config_id, run.seed, label, data))


@contextmanager
def single_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_EVENTS: Any = None
_DIRECTORY: str | None = None


def _worker_init(events: Any, plugins: list[str], directory: str | None) -> None:
    import importlib

    import torch

    global _EVENTS, _DIRECTORY
    _EVENTS, _DIRECTORY = events, directory
    torch.set_num_threads(1)
    for module in plugins:
        importlib.import_module(module)


def _worker_main(task: list[RunSpec]) -> None:
    run_group(task, _EVENTS.put, _DIRECTORY)


def _cost(run: RunSpec) -> float:
    """Rough relative run time, to start the longest runs first and keep workers busy to the end."""
    train = run.config["train"]
    epochs = train["epochs"]
    if train["regime"] == "same-updates":
        epochs *= max(1.0, train["batch_size"] / train["base_batch_size"])
    return epochs * (1.0 + 100.0 / train["batch_size"]) * (2.0 if train["sam"] else 1.0)


def _task_cost(task: list[RunSpec]) -> float:
    return sum(_cost(r) for r in task) / (1.5 if len(task) > 1 else 1.0)


def _handler(store: ResultsStore, reporter: Reporter, todo: list[RunSpec]) -> Callable[[Event], None]:
    """The driver's side of the event stream: each event becomes a store write (and a progress line)."""
    by_id = {r.run_id: r for r in todo}

    def handle(event: Event) -> None:
        kind, run_id = event[0], event[1]
        if kind == "start":
            store.start_run(run_id)
            reporter.started(by_id[run_id])
        elif kind == "epoch":
            store.add_epoch(run_id, event[2], event[3])
            reporter.epoch(run_id, event[2], event[3])
        elif kind == "checkpoint":
            store.add_checkpoint(run_id, event[2], event[3])
        elif kind == "measurement":
            store.add_measurement(*event[1:])
        else:
            _, _, status, stop_reason, summary, error = event
            store.finish_run(run_id, status, stop_reason, summary, error)
            reporter.ended(run_id, status, error)

    return handle


def execute_in_world(runs: list[RunSpec], store: ResultsStore | None, reporter: Reporter | None, world: Any) -> None:
    """Under torchrun: every process trains every run, each its shard of every batch; rank 0 alone
    decides what is left to do (resume) and writes the store."""
    import torch.distributed as dist

    todo_ids: list[Any] = [None]
    if world.rank == 0:
        assert store is not None and reporter is not None
        todo_ids = [[r.run_id for r in runs if store.status(r.run_id) not in DONE]]
    dist.broadcast_object_list(todo_ids, src=0)
    todo = [r for r in runs if r.run_id in set(todo_ids[0])]
    lead = world.rank == 0
    handle = _handler(store, reporter, todo) if lead else (lambda event: None)
    with single_thread():
        for run in todo:
            run_task(run, handle, str(store.directory) if lead and store else None, world=world)


def execute(runs: list[RunSpec], store: ResultsStore, jobs: int, reporter: Reporter, vectorize: str = "off",
            executor: str = "local", address: str | None = None) -> list[str]:
    """Run every run not yet finished or diverged (so re-running a directory resumes it).

    ``vectorize`` (off | on | auto) stacks the trials of a configuration where it can (see
    plan_tasks); returns the notes on configurations that could not be stacked. ``executor =
    "ray"`` sends the tasks to a Ray cluster (``address``; a local one by default) instead of
    local worker processes; either way only this process writes the store.
    """
    todo = [r for r in runs if store.status(r.run_id) not in DONE]
    handle = _handler(store, reporter, todo)
    if not todo:
        return []
    tasks, notes = plan_tasks(todo, vectorize)
    tasks.sort(key=_task_cost, reverse=True)
    parallel = [t for t in tasks if t[0].config["train"]["processes"] > 1]  # each spans processes itself
    tasks = [t for t in tasks if t not in parallel]
    if executor == "ray":
        from batchlab.sweep.ray_cluster import execute_on_ray

        execute_on_ray(tasks, handle, str(store.directory), address)
    elif jobs <= 1 or len(tasks) <= 1:
        with single_thread():
            for task in tasks:
                run_group(task, handle, str(store.directory))
    else:
        _execute_in_pool(tasks, min(jobs, len(tasks)), handle, str(store.directory))
    for task in parallel:
        run_group(task, handle, str(store.directory))
    return notes


def _execute_in_pool(tasks: list[list[RunSpec]], workers: int, handle: Callable[[Event], None], directory: str
                     ) -> None:
    context = mp.get_context("spawn")  # a fresh interpreter: no forked torch thread pools
    events = context.Queue()
    plugins = sorted({p for task in tasks for r in task for p in r.config.get("plugins", [])})
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init, initargs=(events, plugins, directory))
    total = sum(len(task) for task in tasks)
    try:
        futures: dict[Future[None], list[RunSpec]] = {pool.submit(_worker_main, task): task for task in tasks}
        ended: set[str] = set()
        while len(ended) < total:
            try:
                event = events.get(timeout=0.2)
            except queue_module.Empty:
                for future, task in futures.items():  # a worker that died cannot send its own end
                    for run in task:
                        if future.done() and future.exception() and run.run_id not in ended:
                            handle(("end", run.run_id, "failed", "error", {}, f"worker died: {future.exception()!r}"))
                            ended.add(run.run_id)
                continue
            handle(event)
            if event[0] == "end":
                ended.add(event[1])
        pool.shutdown()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        raise
