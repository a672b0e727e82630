"""Optimizers by name. Defaults reproduce Chaffard's set-up (SGD with momentum 0.9).

SGD, Adam and AdamW use PyTorch's fused kernels (``fused=True``): one pass over each tensor for the
whole update instead of one kernel per arithmetic operation. The same update rule to float
rounding; on one CPU core the pair CNN's SGD step takes 97 µs instead of 267 µs (foreach),
about a tenth of a batch-20 training step.

SAM and ASAM are not here: they change how the gradient is formed, not the update, so they wrap
any of these (``[train.sam]``, see ``updates.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat

from batchlab.optim.layerwise import LAMB, LARS, parameter_groups
from batchlab.registry import Registry

optimizers = Registry("optimizer")
Params = Iterable[torch.nn.Parameter]
# Ranges outside which an update rule is not the rule it names (momentum 1 never forgets; a
# negative one oscillates), checked when the spec is read rather than found out by a failed run.
Momentum = Annotated[float, Field(ge=0, lt=1)]
Beta = Annotated[float, Field(ge=0, lt=1)]
Dampening = Annotated[float, Field(ge=0, le=1)]


@optimizers.register("sgd")
def sgd(params: Params, lr: float, *, momentum: Momentum = 0.9, nesterov: bool = False,
        weight_decay: NonNegativeFloat = 0.0, dampening: Dampening = 0.0) -> torch.optim.Optimizer:
    """Stochastic gradient descent with (heavy-ball or Nesterov) momentum."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                           dampening=dampening, fused=True)


@optimizers.register("adam")
def adam(params: Params, lr: float, *, betas: tuple[Beta, Beta] = (0.9, 0.999), eps: PositiveFloat = 1e-8,
         weight_decay: NonNegativeFloat = 0.0) -> torch.optim.Optimizer:
    """Adam (L2 penalty added to the gradient when weight_decay > 0)."""
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=True)


@optimizers.register("adamw")
def adamw(params: Params, lr: float, *, betas: tuple[Beta, Beta] = (0.9, 0.999), eps: PositiveFloat = 1e-8,
          weight_decay: NonNegativeFloat = 0.01) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay."""
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=True)


@optimizers.register("lars")
def lars(params: Params, lr: float, *, momentum: Momentum = 0.9, weight_decay: NonNegativeFloat = 0.0,
         trust_coefficient: PositiveFloat = 0.001, adapt_all: bool = False) -> torch.optim.Optimizer:
    """LARS (You et al. 2017): momentum SGD with a layer-wise trust ratio η·‖w‖/(‖g‖ + λ‖w‖)."""
    return LARS(parameter_groups(params, weight_decay, adapt_all), lr=lr, momentum=momentum,
                trust_coefficient=trust_coefficient)


@optimizers.register("lamb")
def lamb(params: Params, lr: float, *, betas: tuple[Beta, Beta] = (0.9, 0.999), eps: NonNegativeFloat = 1e-6,
         weight_decay: NonNegativeFloat = 0.0, trust_coefficient: PositiveFloat = 1.0, adapt_all: bool = False
         ) -> torch.optim.Optimizer:
    """LAMB (You et al. 2019): Adam's direction with a layer-wise trust ratio c·‖w‖/‖r‖."""
    return LAMB(parameter_groups(params, weight_decay, adapt_all), lr=lr, betas=betas, eps=eps,
                trust_coefficient=trust_coefficient)
