"""One run on N local processes (``train.processes = N``, ``batchlab run --ddp N``).

Spawns the processes, each of which joins a process group and trains the run on its shard of every
batch (parallel.py says how the shards stay exact); rank 0 sends the run's events home, and this
process passes them on to the sweep's writer.
"""

from __future__ import annotations

import socket
import traceback
from collections.abc import Callable
from typing import Any

import torch

from batchlab.training.parallel import World, backend


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _process(rank: int, size: int, port: int, config: dict[str, Any], events: Any, checkpoint_dir: str | None,
             run_id: str) -> None:
    """One of the N processes: join the group, train, and (rank 0) send the run's events home."""
    import torch.distributed as dist

    from batchlab.training.loop import train_run

    torch.set_num_threads(1)
    dist.init_process_group(backend(config["train"].get("device", "cpu")), init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=size)
    try:
        lead = rank == 0
        checkpoint = None
        if lead and checkpoint_dir is not None:
            from batchlab.training.checkpoints import checkpoint_path, save_checkpoint

            def checkpoint(epoch: int, model: Any) -> None:
                path = checkpoint_path(checkpoint_dir, run_id, epoch)
                save_checkpoint(model, path)
                events.put(("checkpoint", run_id, epoch, str(path.relative_to(checkpoint_dir))))

        result = train_run(config, (lambda e, m: events.put(("epoch", run_id, e, m))) if lead else (lambda e, m: None),
                           on_checkpoint=checkpoint, world=World(rank, size))
        if lead:
            events.put(("result", result.status, result.stop_reason, result.summary))
    except Exception as e:  # noqa: BLE001 - reported as the run's failure
        events.put(("error", rank, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    finally:
        dist.destroy_process_group()


def train_distributed(config: dict[str, Any], run_id: str, emit: Callable[[tuple[Any, ...]], None],
                      directory: str | None) -> tuple[str, str, dict[str, Any]]:
    """Train one run on ``train.processes`` local processes; returns (status, stop reason, summary).

    The model is not returned: rank 0's final checkpoint holds it.
    """
    import multiprocessing as mp

    size = config["train"]["processes"]
    context = mp.get_context("spawn")
    events = context.Queue()
    port = _free_port()
    procs = [context.Process(target=_process, args=(rank, size, port, config, events, directory, run_id))
             for rank in range(size)]
    for p in procs:
        p.start()
    outcome: tuple[str, str, dict[str, Any]] | None = None
    errors: list[str] = []
    while outcome is None and not errors:
        try:
            event = events.get(timeout=1.0)
        except Exception:  # noqa: BLE001 - queue.Empty: check that the processes still live
            if all(not p.is_alive() for p in procs):
                errors.append("the data-parallel processes exited without a result")
            continue
        if event[0] == "result":
            outcome = (event[1], event[2], event[3])
        elif event[0] == "error":
            errors.append(f"rank {event[1]}: {event[2]}")
        else:
            emit(event)
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.terminate()
    if errors:
        raise RuntimeError(errors[0])
    assert outcome is not None
    return outcome
