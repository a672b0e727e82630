"""The unit of work of a sweep: a task is one run, or a group of trials stacked into one model.

A task trains and reports through events (events.py), never through the store, so the same task
runs in this process, in a local worker, under torchrun or on a Ray node. An exception becomes the
run's 'failed' end, never a crash of the sweep.
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

from torch import nn

from batchlab.errors import BatchlabWarning
from batchlab.spec import RunSpec
from batchlab.sweep.events import CheckpointSaved, Emit, Ended, EpochRecorded, Measured, Started
from batchlab.sweep.workers import single_thread
from batchlab.training.checkpoints import checkpoint_bytes, write_checkpoint
from batchlab.training.epochs import RunResult
from batchlab.training.parallel import World

Checkpoint = Callable[[str, int, nn.Module], None]  # (run_id, epoch, model): keep the model's weights somewhere
GROUP_SIZE = 5  # runs stacked together; fixed, so the numbers never depend on --jobs


def file_checkpoints(directory: str, emit: Emit) -> Checkpoint:
    """Write checkpoints into the results directory and announce each as an event for the store."""

    def checkpoint(run_id: str, epoch: int, model: nn.Module) -> None:
        emit(CheckpointSaved(run_id, epoch, write_checkpoint(directory, run_id, epoch, checkpoint_bytes(model))))

    return checkpoint


def _failure(e: Exception) -> str:
    return f"{type(e).__name__}: {e}\n{traceback.format_exc()}"


def run_task(run: RunSpec, emit: Emit, directory: str | None = None, world: World | None = None,
             checkpoint: Checkpoint | None = None) -> None:
    """Train one run, reporting through ``emit``.

    With a results ``directory``, checkpoints are written there and announced as events (or go to
    ``checkpoint``, e.g. back to a Ray driver). Inside a torchrun ``world``, this process trains its
    shard (only rank 0 is given an emit that records).
    """
    from batchlab.training.loop import train_run

    keep = checkpoint or (file_checkpoints(directory, emit) if directory else None)
    emit(Started(run.run_id))
    if world is None and run.config["train"]["processes"] > 1:  # analyses run later, from the final checkpoint
        from batchlab.training.ddp import train_distributed

        try:
            status, reason, summary = train_distributed(
                run.config, run.run_id, lambda epoch, metrics: emit(EpochRecorded(run.run_id, epoch, metrics)),
                lambda epoch, path: emit(CheckpointSaved(run.run_id, epoch, path)), directory)
            emit(Ended(run.run_id, status, reason, summary))
        except Exception as e:  # noqa: BLE001 - recorded in the store; the sweep goes on
            emit(Ended(run.run_id, "failed", "error", {}, f"{type(e).__name__}: {e}"))
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BatchlabWarning)  # preflight reported them once for the study
            result = train_run(run.config, lambda epoch, metrics: emit(EpochRecorded(run.run_id, epoch, metrics)),
                               on_checkpoint=(lambda epoch, model: keep(run.run_id, epoch, model)) if keep else None,
                               world=world)
        if result.status == "finished" and (world is None or world.rank == 0):
            analyze_at_end(run, result, emit, directory)
        emit(Ended(run.run_id, result.status, result.stop_reason, result.summary))
    except Exception as e:  # noqa: BLE001 - recorded in the store; the sweep goes on
        emit(Ended(run.run_id, "failed", "error", {}, _failure(e)))


def run_group(runs: list[RunSpec], emit: Emit, directory: str | None = None,
              checkpoint: Checkpoint | None = None) -> None:
    """Train runs that stack (trials, and configurations differing only in rates: training/stacked.py)
    together; a single run, alone."""
    if len(runs) == 1:
        run_task(runs[0], emit, directory, checkpoint=checkpoint)
        return
    from batchlab.training.stacked import train_trials

    keep = checkpoint or (file_checkpoints(directory, emit) if directory else None)
    for run in runs:
        emit(Started(run.run_id))
    try:
        results = train_trials([r.config for r in runs],
                               lambda i, epoch, metrics: emit(EpochRecorded(runs[i].run_id, epoch, metrics)),
                               on_checkpoint=(lambda i, epoch, model: keep(runs[i].run_id, epoch, model)) if keep
                               else None)
    except Exception as e:  # noqa: BLE001 - recorded in the store; the sweep goes on
        message = _failure(e)
        for run in runs:
            emit(Ended(run.run_id, "failed", "error", {}, message))
        return
    for run, result in zip(runs, results, strict=True):
        if result.status == "finished":
            analyze_at_end(run, result, emit, directory)
        emit(Ended(run.run_id, result.status, result.stop_reason, result.summary))


def analyze_at_end(run: RunSpec, result: RunResult, emit: Emit, directory: str | None) -> None:
    """The spec's per-run analyses on the trained model, before the run is reported finished
    (pairwise ones need two runs and are done by the driver after the sweep)."""
    from batchlab.analysis import PAIRWISE
    from batchlab.analysis.runner import analyze_minimum, minimum_from_model

    wanted = {k: v for k, v in run.config.get("analysis", {}).items() if k not in PAIRWISE}
    if not wanted:
        return
    scratch = Path(directory) / "analysis" / run.run_id if directory else None
    minimum = minimum_from_model(run.run_id, run.config_id, run.config, result.summary["epochs"], result.model, scratch)
    for name, params in wanted.items():
        label, data = analyze_minimum(name, params, minimum)
        emit(Measured(name, run.config_id, run.seed, label, data))


def plan_tasks(todo: list[RunSpec], vectorize: str) -> tuple[list[list[RunSpec]], list[str]]:
    """Split the runs into tasks: stacked groups where ``vectorize`` (on | auto) allows, else single
    runs. Returns the tasks and one note per configuration whose trials could not be stacked.

    Runs stack when they share ``training.stacked.stack_key``: the trials of a configuration, and
    configurations that differ only in rates, optimizer hyperparameters and stop rules. A stack
    holds the runs of its key in plan order (configuration by configuration, seeds ascending), cut
    into groups of ``GROUP_SIZE``: fixed, so the numbers never depend on --jobs.
    """
    if vectorize == "off":
        return [[r] for r in todo], []
    from batchlab.data import load_data
    from batchlab.training.prepare import build
    from batchlab.training.stacked import calibrate, stack_key, why_not

    by_config: dict[str, list[RunSpec]] = {}
    for run in todo:
        by_config.setdefault(run.config_id, []).append(run)
    tasks: list[list[RunSpec]] = []
    notes: list[str] = []
    stacks: dict[str, list[list[RunSpec]]] = {}  # stack key -> its configurations' runs, in plan order
    for config_id, group in by_config.items():
        group.sort(key=lambda r: r.seed)
        config = group[0].config
        model, _ = build(config, load_data(config["data"]))
        reason = why_not(config, model)
        if reason is not None:
            if len(group) > 1:
                notes.append(f"configuration {config_id} runs its trials one by one: {reason}")
            tasks.extend([r] for r in group)
            continue
        stacks.setdefault(stack_key(config), []).append(group)
    for groups in stacks.values():
        runs = [r for group in groups for r in group]
        if len(runs) < 2:
            tasks.append(runs)
            continue
        if vectorize == "auto":
            config = runs[0].config
            with single_thread():
                speedup = calibrate(config, min(GROUP_SIZE, len(runs)))
            if speedup < 1.1:
                for group in groups:
                    if len(group) > 1:
                        notes.append(f"configuration {group[0].config_id} runs its trials one by one: stacking "
                                     f"measured {speedup:.2f}x as fast as one by one at batch size "
                                     f"{config['train']['batch_size']} here")
                tasks.extend([r] for r in runs)
                continue
        tasks.extend(runs[i : i + GROUP_SIZE] for i in range(0, len(runs), GROUP_SIZE))
    return tasks, notes


def _cost(run: RunSpec) -> float:
    """Rough relative run time, to start the longest runs first and keep workers busy to the end."""
    train = run.config["train"]
    epochs = train["epochs"]
    if train["regime"] == "same-updates":
        epochs *= max(1.0, train["batch_size"] / train["base_batch_size"])
    return epochs * (1.0 + 100.0 / train["batch_size"]) * (2.0 if train["sam"] else 1.0)


def task_cost(task: list[RunSpec]) -> float:
    return sum(_cost(r) for r in task) / (1.5 if len(task) > 1 else 1.0)
