"""Sweeps on a Ray cluster (``batchlab run SPEC --executor ray [--address ADDR]``).

Each task (a run, or a group of stacked trials) becomes a Ray task of one CPU that trains exactly as
a local worker does, one thread, and returns the run's events. The driver alone turns them into
the results store, in the same way as local events, so resume and determinism work as locally: a
task that is lost or fails leaves its runs unfinished or failed, and the next ``batchlab run``
redoes them.

A cluster's workers need not share the driver's disk, so checkpoints travel back inside the
events as safetensors bytes (``CheckpointMade``) and the store's writer writes the files.
"""

from __future__ import annotations

import os
from typing import Any

from batchlab.spec import RunSpec
from batchlab.sweep.events import CheckpointMade, Emit, Ended, Event, Started
from batchlab.sweep.tasks import run_group
from batchlab.sweep.workers import plugins_of
from batchlab.training.checkpoints import checkpoint_bytes
from batchlab.training.prepare import setup_worker


def _remote_task(task: list[RunSpec], plugins: list[str]) -> list[Event]:
    """Runs on a Ray worker: train the task's runs and return every event they produced."""
    setup_worker(plugins)
    events: list[Event] = []

    def checkpoint(run_id: str, epoch: int, model: Any) -> None:
        events.append(CheckpointMade(run_id, epoch, checkpoint_bytes(model)))

    run_group(task, events.append, directory=None, checkpoint=checkpoint)
    return events


def execute_on_ray(tasks: list[list[RunSpec]], emit: Emit, address: str | None = None) -> None:
    """Send every task to Ray; hand each returned event to ``emit`` (the store's writer) as the task completes."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        from batchlab.errors import SpecError

        raise SpecError("--executor ray needs Ray: pip install 'batchlab[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        plugins = plugins_of(r.config for task in tasks for r in task)
        remote = ray.remote(num_cpus=1, max_retries=0)(_remote_task)
        pending = {remote.remote(task, plugins): task for task in tasks}
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ready)
            try:
                events = ray.get(ready)
            except Exception as e:  # noqa: BLE001 - a lost worker or task: its runs failed, the rest go on
                for run in task:
                    emit(Started(run.run_id))
                    emit(Ended(run.run_id, "failed", "error", {}, f"Ray task failed: {type(e).__name__}: {e}"))
                continue
            for event in events:
                emit(event)
    finally:
        if started_here:
            ray.shutdown()
