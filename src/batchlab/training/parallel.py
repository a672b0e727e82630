"""One run across several processes: data parallelism with torch.distributed (DistributedDataParallel).

With ``train.processes = N`` (or ``batchlab run --ddp N``, or the CLI started by ``torchrun
--nproc-per-node N``), N processes hold the same model, draw the same shuffled batches, and each
computes the gradient of its shard of every batch; DDP averages the gradients (gloo on a CPU,
NCCL on GPUs), so every process makes the same update, as Chang & Pathak (2020) did on several GPUs.

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
from dataclasses import dataclass

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
