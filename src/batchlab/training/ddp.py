"""One run on N local processes (``train.processes = N``, ``batchlab run --ddp N``).

Spawns the processes, each of which joins a process group and trains the run on its shard of every
batch (parallel.py says how the shards stay exact); rank 0 sends the run's events home, and this
process passes them on to the sweep's writer.
"""

from __future__ import annotations

import queue as queue_module
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchlab.training.parallel import World, backend
from batchlab.training.prepare import children_deaf_to_sigint, setup_worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class _Epoch:
    epoch: int
    metrics: dict[str, Any]


@dataclass(frozen=True)
class _Checkpoint:
    epoch: int
    path: str  # relative to the results directory


@dataclass(frozen=True)
class _Result:
    status: str
    stop_reason: str
    summary: dict[str, Any]


@dataclass(frozen=True)
class _Failure:
    rank: int
    error: str


def _process(rank: int, size: int, port: int, config: dict[str, Any], messages: Any, directory: str | None,
             run_id: str) -> None:
    """One of the N processes: join the group, train, and (rank 0) send the run's records home."""
    import torch.distributed as dist

    from batchlab.training.checkpoints import checkpoint_bytes, write_checkpoint
    from batchlab.training.loop import train_run

    setup_worker(config.get("plugins", []))
    dist.init_process_group(backend(config["train"].get("device", "cpu")), init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=size)
    try:
        lead = rank == 0

        def checkpoint(epoch: int, model: Any) -> None:
            messages.put(_Checkpoint(epoch, write_checkpoint(directory, run_id, epoch, checkpoint_bytes(model))))

        result = train_run(config, (lambda e, m: messages.put(_Epoch(e, m))) if lead else (lambda e, m: None),
                           on_checkpoint=checkpoint if lead and directory is not None else None,
                           world=World(rank, size))
        if lead:
            messages.put(_Result(result.status, result.stop_reason, result.summary))
    except Exception as e:  # noqa: BLE001 - reported as the run's failure
        messages.put(_Failure(rank, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    finally:
        dist.destroy_process_group()


def train_distributed(config: dict[str, Any], run_id: str, on_epoch: Callable[[int, dict[str, Any]], None],
                      on_checkpoint: Callable[[int, str], None], directory: str | None
                      ) -> tuple[str, str, dict[str, Any]]:
    """Train one run on ``train.processes`` local processes; returns (status, stop reason, summary).

    Rank 0's records reach ``on_epoch(epoch, metrics)`` and its checkpoints, written into
    ``directory``, ``on_checkpoint(epoch, relative path)``. The model is not returned: rank 0's final
    checkpoint holds it.
    """
    import multiprocessing as mp

    size = config["train"]["processes"]
    context = mp.get_context("spawn")
    messages = context.Queue()
    port = _free_port()
    procs = [context.Process(target=_process, args=(rank, size, port, config, messages, directory, run_id))
             for rank in range(size)]
    with children_deaf_to_sigint():  # a Ctrl-C is the driver's to handle; it stops the ranks
        for p in procs:
            p.start()
    outcome: _Result | None = None
    errors: list[str] = []
    try:
        while outcome is None and not errors:
            try:
                message = messages.get(timeout=1.0)
            except queue_module.Empty:  # check that the processes still live
                if all(not p.is_alive() for p in procs):
                    errors.append("the data-parallel processes exited without a result")
                continue
            match message:
                case _Result():
                    outcome = message
                case _Failure(rank, error):
                    errors.append(f"rank {rank}: {error}")
                case _Epoch(epoch, metrics):
                    on_epoch(epoch, metrics)
                case _Checkpoint(epoch, path):
                    on_checkpoint(epoch, path)
                case _:
                    raise TypeError(f"unknown message from a data-parallel process: {message!r}")
    finally:
        for p in procs:
            p.join(timeout=30 if outcome is not None or errors else 0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    if errors:
        raise RuntimeError(errors[0])
    assert outcome is not None
    return outcome.status, outcome.stop_reason, outcome.summary
