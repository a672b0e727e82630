"""Sweeps on a Ray cluster (``batchlab run SPEC --executor ray [--address ADDR]``).

Each task (a run, or a group of stacked trials) becomes a Ray task of one CPU that trains exactly as
a local worker does, one thread, and returns the run's events. The driver alone turns them into
the results store, in the same way as local events, so resume and determinism work as locally: a
task that is lost or fails leaves its runs unfinished or failed, and the next ``batchlab run``
redoes them.

A cluster's workers need not share the driver's disk, so checkpoints travel back inside the
events as safetensors bytes and the driver writes the files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchlab.spec import RunSpec

Event = tuple[Any, ...]


def _remote_task(task: list[RunSpec], plugins: list[str]) -> list[Event]:
    """Runs on a Ray worker: train the task's runs and return every event they produced."""
    import importlib

    import torch
    from safetensors.torch import save

    from batchlab.sweep import tasks as sweep

    torch.set_num_threads(1)
    for module in plugins:
        importlib.import_module(module)
    events: list[Event] = []

    def emit(event: Event) -> None:
        events.append(event)

    def checkpoint(run_id: str, epoch: int, model: Any) -> None:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        events.append(("checkpoint-bytes", run_id, epoch, save(state)))

    sweep.run_group(task, emit, directory=None, checkpoint=checkpoint)
    return events


def execute_on_ray(tasks: list[list[RunSpec]], handle: Callable[[Event], None], directory: str,
                   address: str | None = None) -> None:
    """Send every task to Ray; hand each returned event to ``handle`` as the task completes."""
    from batchlab.training.checkpoints import checkpoint_path

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
        plugins = sorted({p for task in tasks for r in task for p in r.config.get("plugins", [])})
        remote = ray.remote(num_cpus=1, max_retries=0)(_remote_task)
        pending = {remote.remote(task, plugins): task for task in tasks}
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ready)
            try:
                events = ray.get(ready)
            except Exception as e:  # noqa: BLE001 - a lost worker or task: its runs failed, the rest go on
                for run in task:
                    handle(("start", run.run_id))
                    handle(("end", run.run_id, "failed", "error", {}, f"Ray task failed: {type(e).__name__}: {e}"))
                continue
            for event in events:
                if event[0] == "checkpoint-bytes":
                    _, run_id, epoch, data = event
                    path = checkpoint_path(directory, run_id, epoch)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f".{path.name}.tmp")
                    tmp.write_bytes(data)
                    tmp.replace(path)
                    handle(("checkpoint", run_id, epoch, str(path.relative_to(Path(directory)))))
                else:
                    handle(event)
    finally:
        if started_here:
            ray.shutdown()
