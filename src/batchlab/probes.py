"""Probes: what training does to the weights, measured while it runs (``train.probes`` in a spec).

A probe sees the model before training (``begin``), optionally after every update (``after_step``),
and at the end of every epoch (``end_epoch``), where it returns metrics that join the epoch's
record in the results store. Per-step values (``series``) are stored whole when asked for.

Probes never change the run: they read the weights, and anything that needs a forward pass
saves and restores the random state and leaves batch-norm statistics alone. Their time is kept
apart from the training time (``probe_seconds``), and a run without probes does no probe work.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import PositiveInt
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

    def begin(self, model: nn.Module, loss: Loss) -> None:
        self.model, self.loss = model, loss

    def after_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        pass

    def end_epoch(self, epoch: int, steps: int) -> dict[str, Any]:
        return {}


class Distance(Probe):
    """Euclidean distance of the weights from their initial values (total, per layer, weights and
    biases apart) and the distance covered within each epoch (seed 002 Figs. 10-12, 27)."""

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


class UpdateNorms(Probe):
    """The norm ‖Δθ‖ of every update, summarized per epoch (seed 002 Fig. 13); ``record`` keeps them all."""

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


class GradientNoise(Probe):
    """The simple noise scale B_simple = tr(Σ)/‖G‖² (McCandlish et al. 2018) tracked during training.

    Every ``every`` steps, the step's batch is split in halves; the gradients of the halves (B/2) and
    of the whole (B) give the unbiased estimates of ‖G‖² and tr(Σ) (``noise.two_batch_estimates``).
    Both are averaged over the epoch separately, then divided, as the paper advises. Costs one extra
    forward and backward pass per probed step.
    """

    per_step = True

    def __init__(self, every: int) -> None:
        self.every = every

    def begin(self, model: nn.Module, loss: Loss) -> None:
        super().begin(model, loss)
        self.count, self.g2, self.trace = 0, [], []

    def after_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        from batchlab.noise import half_batch_estimates

        self.count += 1
        if self.count % self.every or len(y) < 2:
            return
        g2, trace = half_batch_estimates(self.model, self.loss, x, y)
        self.g2.append(g2)
        self.trace.append(trace)

    def end_epoch(self, epoch: int, steps: int) -> dict[str, Any]:
        if not self.g2:
            return {}
        g2, trace = sum(self.g2) / len(self.g2), sum(self.trace) / len(self.trace)
        self.g2, self.trace = [], []
        return {"noise.grad_sq": g2, "noise.trace": trace,
                "noise.b_simple": trace / g2 if g2 > 0 else math.inf}


@probes.register("distance")
def distance(*, per_layer: bool = True) -> Probe:
    """Distance from the initial weights (total, per layer, weights/biases) and per-epoch distance."""
    return Distance(per_layer)


@probes.register("update-norms")
def update_norms(*, record: bool = False) -> Probe:
    """Norm of every parameter update, summarized per epoch; ``record = true`` stores every value."""
    return UpdateNorms(record)


@probes.register("noise-scale")
def noise_scale(*, every: PositiveInt = 10) -> Probe:
    """Gradient noise scale B_simple during training, from half-batch gradients every `every` steps."""
    return GradientNoise(every)


DEFAULT_PROBES = ["distance", "update-norms"]
