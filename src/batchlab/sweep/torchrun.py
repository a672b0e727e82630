"""A sweep under torchrun (``torchrun --nproc-per-node N -m batchlab run SPEC``): every process
trains every run, each its shard of every batch; rank 0 alone decides what is left to do (resume)
and writes the store."""

from __future__ import annotations

from typing import Any

from batchlab.results.store import DONE, ResultsStore
from batchlab.spec import RunSpec
from batchlab.sweep.events import Emit
from batchlab.sweep.tasks import run_task
from batchlab.sweep.workers import single_thread
from batchlab.training.parallel import World


def execute_in_world(runs: list[RunSpec], store: ResultsStore | None, emit: Emit | None, world: World) -> None:
    """Rank 0 passes its store and the store's writer; the other ranks pass None for both."""
    import torch.distributed as dist

    todo_ids: list[Any] = [None]
    if world.rank == 0:
        assert store is not None and emit is not None
        todo_ids = [[r.run_id for r in runs if store.status(r.run_id) not in DONE]]
    dist.broadcast_object_list(todo_ids, src=0)
    todo = [r for r in runs if r.run_id in set(todo_ids[0])]
    lead = world.rank == 0
    handle: Emit = emit if lead and emit is not None else (lambda event: None)
    with single_thread():
        for run in todo:
            run_task(run, handle, str(store.directory) if lead and store else None, world=world)
