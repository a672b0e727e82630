"""Optimizers by name. Defaults reproduce seed 000 (SGD with momentum 0.9)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from batchlab.registry import Registry

optimizers = Registry("optimizer")
Params = Iterable[torch.nn.Parameter]


@optimizers.register("sgd")
def sgd(params: Params, lr: float, *, momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0,
        dampening: float = 0.0) -> torch.optim.Optimizer:
    """Stochastic gradient descent with (heavy-ball or Nesterov) momentum."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                           dampening=dampening, foreach=True)


@optimizers.register("adam")
def adam(params: Params, lr: float, *, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
         weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (L2 penalty added to the gradient when weight_decay > 0)."""
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=True)


@optimizers.register("adamw")
def adamw(params: Params, lr: float, *, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
          weight_decay: float = 0.01) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay."""
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=True)
