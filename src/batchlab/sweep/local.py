"""Running tasks on this machine: in this process (``--jobs 1``), or in single-thread worker
processes that stream their events home (workers.py)."""

from __future__ import annotations

from functools import partial

from batchlab.spec import RunSpec
from batchlab.sweep.events import Emit, Ended, Event
from batchlab.sweep.tasks import run_group
from batchlab.sweep.workers import Send, plugins_of, run_in_workers, single_thread


def _train(directory: str, task: list[RunSpec], send: Send) -> None:
    run_group(task, send, directory)


def execute_locally(tasks: list[list[RunSpec]], jobs: int, emit: Emit, directory: str) -> None:
    """Every task, ``jobs`` at a time; only this process hands events to ``emit`` (the store's writer)."""
    if jobs <= 1 or len(tasks) <= 1:
        with single_thread():
            for task in tasks:
                run_group(task, emit, directory)
        return
    ended: set[str] = set()

    def receive(event: Event) -> None:
        emit(event)
        if isinstance(event, Ended):
            ended.add(event.run_id)

    def lost(task: list[RunSpec], why: str) -> None:  # a dead worker cannot send its runs' ends
        for run in task:
            if run.run_id not in ended:
                receive(Ended(run.run_id, "failed", "error", {}, why))

    plugins = plugins_of(r.config for task in tasks for r in task)
    run_in_workers(partial(_train, directory), tasks, jobs, plugins, receive, lost)
