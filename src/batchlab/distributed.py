"""One run across several processes: data parallelism with torch.distributed (DistributedDataParallel).

With ``train.processes = N`` (or ``batchlab run --ddp N``, or the CLI started by ``torchrun
--nproc-per-node N``), N processes hold the same model, draw the same shuffled batches, and each
computes the gradient of its shard of every batch; DDP averages the gradients (gloo on a CPU,
NCCL on GPUs), so every process makes the same update, as seed 002 did on several GPUs.

Exactness: DDP averages the N shard gradients with equal weight, which is the batch gradient only
when the shards are equal. Each process therefore scales its shard's mean loss by
N·(shard size)/(batch size), so uneven shards (a batch of 21 over 2 processes, or the last short
batch of an epoch) still give exactly the full batch's mean gradient. Without batch norm the
N-process run matches the one-process run to float tolerance (tested); with batch norm each
process normalizes over its shard, as plain DDP does.

Every process evaluates the full splits (identical numbers, so every process takes the same stop
decision without talking); only rank 0 reports epochs, writes checkpoints and runs analyses.
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from batchlab.losses import Loss


@dataclass(frozen=True)
class World:
    rank: int
    size: int

    def shard(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """This process's contiguous part of a batch and the loss factor that keeps the average exact."""
        n = len(y)
        start, stop = self.rank * n // self.size, (self.rank + 1) * n // self.size
        return x[start:stop], y[start:stop], self.size * (stop - start) / n


class ScaledLoss(Loss):
    """A loss whose batch mean is multiplied by a factor that the training loop sets before each step."""

    def __init__(self, inner: Loss) -> None:
        self.inner, self.factor = inner, 1.0

    def num_outputs(self, num_classes: int) -> int:
        return self.inner.num_outputs(num_classes)

    def __call__(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.inner(outputs, y) * self.factor

    def correct(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.inner.correct(outputs, y)


def world_from_environment() -> World | None:
    """The world torchrun describes (RANK, WORLD_SIZE), or None when not launched by it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(int(os.environ.get("RANK", "0")), size) if size > 1 else None


def backend(device: str) -> str:
    """NCCL between GPUs, gloo between CPU processes (a CPU run keeps gloo on a machine with a GPU)."""
    return "nccl" if device == "cuda" and torch.distributed.is_nccl_available() else "gloo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _process(rank: int, size: int, port: int, config: dict[str, Any], events: Any, checkpoint_dir: str | None,
             run_id: str) -> None:
    """One of the N processes: join the group, train, and (rank 0) send the run's events home."""
    import torch.distributed as dist

    from batchlab.engine import train_run

    torch.set_num_threads(1)
    dist.init_process_group(backend(config["train"].get("device", "cpu")), init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=size)
    try:
        lead = rank == 0
        checkpoint = None
        if lead and checkpoint_dir is not None:
            from batchlab.checkpoints import checkpoint_path, save_checkpoint

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
