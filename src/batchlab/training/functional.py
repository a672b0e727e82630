"""Optimizer updates over stacked parameters, each run with its own rate and hyperparameters.

Stacked training (stacked.py) holds R runs' parameters as tensors [R, ...]. Runs that differ only in
their rate, momentum, weight decay or schedule can share such a stack, but not a torch optimizer:
its hyperparameters are one number per parameter group, and a group cannot be a slice of a tensor.
So the update is written out here as tensor arithmetic, with every hyperparameter a tensor [R]
viewed as [R, 1, ...] against each parameter. The rules are PyTorch's own (torch.optim.SGD, Adam,
AdamW, as their documentation states them), so a run's slice receives the update it would receive
alone, to float rounding: the rate multiplies as a float32 tensor here where PyTorch's fused kernels
take it as a double scalar, which changes the last bits (stacked runs are equal to one-by-one runs to
float tolerance, tested at rel 1e-5).

Every quantity lives on the parameters' device and the step does not synchronise with the host (the
rates are written into a device tensor, Adam's step count is a device tensor), so the whole update
can be recorded in a CUDA graph with the forward and backward (graphs.py, ``WholeStepGraph``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

FUNCTIONAL = {"sgd", "adam", "adamw"}  # the optimizers with a stacked update here (all elementwise)


class StackedUpdate:
    """``optimizer``-like (``zero_grad``, ``step``) update of stacked parameters, one set of
    hyperparameters per run; ``set_rates`` writes every run's rate for the next step."""

    def __init__(self, params: list[torch.Tensor], specs: list[dict[str, Any]]) -> None:
        names = {spec["name"] for spec in specs}
        if len(names) != 1 or not names <= FUNCTIONAL:
            raise ValueError(f"a stacked update needs one optimizer of {sorted(FUNCTIONAL)}, got {sorted(names)}")
        self.kind = names.pop()
        self.params = params
        self.size = len(specs)
        device = params[0].device

        def per_run(values: Sequence[float]) -> torch.Tensor:
            return torch.tensor([float(v) for v in values], dtype=torch.float32, device=device)

        self.lr = per_run([0.0] * self.size)
        self.weight_decay = per_run([spec.get("weight_decay", 0.0) for spec in specs])
        self._rates: list[float] | None = None
        if self.kind == "sgd":
            self.momentum = per_run([spec.get("momentum", 0.0) for spec in specs])
            # dampening applies to the momentum buffer only: without momentum PyTorch ignores it
            self.dampening = per_run([spec.get("dampening", 0.0) if spec.get("momentum", 0.0) else 0.0
                                      for spec in specs])
            self.nesterov = torch.tensor([bool(spec.get("nesterov", False)) for spec in specs], device=device)
            self.buffers: list[torch.Tensor] | None = None
        else:
            self.beta1 = per_run([spec.get("betas", (0.9, 0.999))[0] for spec in specs])
            self.beta2 = per_run([spec.get("betas", (0.9, 0.999))[1] for spec in specs])
            self.eps = per_run([spec.get("eps", 1e-8) for spec in specs])
            self.steps = torch.zeros((), dtype=torch.float32, device=device)
            self.exp_avg = [torch.zeros_like(p) for p in params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    def set_rates(self, rates: Sequence[float]) -> None:
        """Every run's rate for the next step (written to the device only when one changes)."""
        rates = list(rates)
        if rates != self._rates:
            self.lr.copy_(torch.tensor(rates, dtype=torch.float32), non_blocking=True)
            self._rates = rates

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor] | None = None) -> None:
        """One update of every run from ``grads`` (default: the parameters' ``.grad``)."""
        grads = grads if grads is not None else [p.grad for p in self.params]
        if self.kind == "sgd":
            self._sgd(grads)
        else:
            self._adam(grads)

    def _view(self, v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return v.view(self.size, *([1] * (p.dim() - 1)))

    def _sgd(self, grads: list[torch.Tensor]) -> None:
        """PyTorch's SGD: d = g + λw; b = d on the first step, then μb + (1 − τ)d; d = d + μb (Nesterov)
        or b; w −= η d. (The first step, which makes the buffers, is never inside a CUDA graph: a
        graph is recorded after eager warm-up steps, graphs.py.)"""
        first = self.buffers is None
        if first:
            self.buffers = [torch.empty_like(p) for p in self.params]
        for p, g, buf in zip(self.params, grads, self.buffers, strict=True):
            lr, wd, mom = self._view(self.lr, p), self._view(self.weight_decay, p), self._view(self.momentum, p)
            d = g + wd * p
            if first:
                buf.copy_(d)
            else:
                buf.mul_(mom).add_((1 - self._view(self.dampening, p)) * d)
            d = torch.where(self._view(self.nesterov, p), d + mom * buf, buf)
            p.sub_(lr * d)

    def _adam(self, grads: list[torch.Tensor]) -> None:
        """PyTorch's Adam/AdamW: m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², w −= η/(1 − β₁ᵗ) · m /
        (√v/√(1 − β₂ᵗ) + ε); the decay λ is added to g (Adam) or taken off w as w(1 − ηλ) (AdamW)."""
        self.steps.add_(1)
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
            lr, wd = self._view(self.lr, p), self._view(self.weight_decay, p)
            b1, b2, eps = self._view(self.beta1, p), self._view(self.beta2, p), self._view(self.eps, p)
            if self.kind == "adamw":
                p.mul_(1 - lr * wd)
            else:
                g = g + wd * p
            m.lerp_(g, 1 - b1)
            v.mul_(b2).add_((1 - b2) * g * g)
            step_size = lr / (1 - b1**self.steps)
            denom = v.sqrt() / (1 - b2**self.steps).sqrt() + eps
            p.sub_(step_size * m / denom)
