"""The norm of every parameter update ‖Δθ‖: large batches take fewer, larger steps."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from batchlab.gradients.probe import Probe, flat_weights, probes
from batchlab.losses import Loss


class UpdateNorms(Probe):
    """The norm ‖Δθ‖ of every update, summarized per epoch (Chang & Pathak 2020, Fig. 13); ``record`` keeps them all."""

    per_step = True
    QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

    def __init__(self, record: bool) -> None:
        self.record = record

    def begin(self, model: nn.Module, loss: Loss) -> None:
        super().begin(model, loss)
        self.previous = flat_weights(model)
        self.norms: list[torch.Tensor] = []

    def after_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        now = flat_weights(self.model)
        self.norms.append(torch.linalg.vector_norm(now - self.previous))
        self.previous = now

    def end_epoch(self, epoch: int, steps: int) -> dict[str, Any]:
        if not self.norms:
            return {}
        norms = torch.stack(self.norms).double()
        self.norms = []
        out: dict[str, Any] = {"update_norm.count": len(norms), "update_norm.mean": float(norms.mean())}
        for q, value in zip(self.QUANTILES, torch.quantile(norms, norms.new_tensor(self.QUANTILES)),
                            strict=True):
            out[f"update_norm.q{round(q * 100):02d}"] = float(value)
        out["update_norm.max"] = float(norms.max())
        if self.record:
            out["update_norm"] = norms.tolist()
        return out


@probes.register("update-norms")
def update_norms(*, record: bool = False) -> Probe:
    """Norm of every parameter update, summarized per epoch; ``record = true`` stores every value."""
    return UpdateNorms(record)
