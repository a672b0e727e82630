"""Probes: what training does to the weights, measured while it runs (``train.probes`` in a spec).

A probe sees the model before training (``begin``), the size of the training set
(``set_train_size``), optionally every batch just before its update (``before_step``) and just after
it (``after_step``), and the end of every epoch (``end_epoch``), where it returns metrics that join
the epoch's record in the results store. Per-step values (``series``) are stored whole when asked for.

A quantity of the gradient belongs in ``before_step``: there the weights are those the batch's
gradient is taken at, while after the update the batch has just been descended on and its gradient
is smaller than a fresh batch's.

Probes never change the run: they read the weights, and anything that needs a forward pass
saves and restores the random state and leaves batch-norm statistics alone. Their time is kept
apart from the training time (``probe_seconds``), and a run without probes does no probe work.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from batchlab.losses import Loss
from batchlab.registry import Registry

probes = Registry("probe")


def flat_weights(model: nn.Module) -> torch.Tensor:
    """All parameters as one detached vector (a copy), in ``named_parameters`` order."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def layer_slices(model: nn.Module) -> dict[str, tuple[list[slice], str]]:
    """Each module that owns parameters → its slices of the flat vector and a short description."""
    layers: dict[str, tuple[list[slice], str]] = {}
    start = 0
    modules = dict(model.named_modules())
    for name, p in model.named_parameters():
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        layers.setdefault(owner, ([], type(modules[owner]).__name__))[0].append(slice(start, start + p.numel()))
        start += p.numel()
    return layers


class Probe:
    """The hooks the engine calls; a probe overrides the ones it needs."""

    per_step = False
    train_size: int | None = None  # the number of training examples; None until the engine says

    def begin(self, model: nn.Module, loss: Loss) -> None:
        self.model, self.loss = model, loss

    def set_train_size(self, n: int) -> None:
        """The engine tells the probe how many examples each epoch's batches are drawn from."""
        self.train_size = n

    def before_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        pass

    def after_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        pass

    def end_epoch(self, epoch: int, steps: int) -> dict[str, Any]:
        return {}
