"""Distance of the weights from their initialization, the quantity behind Hoffer et al.'s (2017)
"random walk on a random potential": it grows like the log of the number of updates."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from batchlab.gradients.probe import Probe, flat_weights, layer_slices, probes
from batchlab.losses import Loss


class Distance(Probe):
    """Euclidean distance of the weights from their initial values (total, per layer, weights and
    biases apart) and the distance covered within each epoch (Chang & Pathak 2020, Figs. 10-12, 27)."""

    def __init__(self, per_layer: bool) -> None:
        self.per_layer = per_layer

    def begin(self, model: nn.Module, loss: Loss) -> None:
        super().begin(model, loss)
        self.initial = flat_weights(model)
        self.epoch_start = self.initial
        self.layers = layer_slices(model)
        self.is_weight = torch.cat([torch.full((p.numel(),), p.ndim > 1, device=p.device) for p in model.parameters()])

    def end_epoch(self, epoch: int, steps: int) -> dict[str, Any]:
        now = flat_weights(self.model)
        moved = now - self.initial
        out = {"distance": float(moved.norm()), "distance.weights": float(moved[self.is_weight].norm()),
               "distance.biases": float(moved[~self.is_weight].norm()),
               "epoch_distance": float((now - self.epoch_start).norm())}
        if self.per_layer:
            for name, (slices, kind) in self.layers.items():
                part = torch.cat([moved[s] for s in slices])
                out[f"distance[{name or kind}]"] = float(part.norm())
        self.epoch_start = now
        return out


@probes.register("distance")
def distance(*, per_layer: bool = True) -> Probe:
    """Distance from the initial weights (total, per layer, weights/biases) and per-epoch distance."""
    return Distance(per_layer)
