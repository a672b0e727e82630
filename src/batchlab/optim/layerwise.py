"""Layer-wise adaptive optimizers for large batches: LARS and LAMB (You et al. 2017, 2019).

Both give every layer its own step size from the ratio of its weight norm to its update norm (the
"trust ratio"), so no layer moves by more than a set fraction of its size however large the global
rate. Biases and normalization parameters (the one-dimensional tensors) are excluded from the
adaptation and from weight decay by default, as in both papers; ``adapt_all=True`` includes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def parameter_groups(params: Iterable[torch.nn.Parameter], weight_decay: float, adapt_all: bool
                     ) -> list[dict[str, Any]]:
    """Matrices and kernels adapt and decay; vectors (biases, norm scales) do neither unless ``adapt_all``."""
    params = [p for p in params if p.requires_grad]
    layers = [p for p in params if p.ndim > 1 or adapt_all]
    vectors = [p for p in params if p.ndim <= 1 and not adapt_all]
    groups = [{"params": layers, "adapt": True, "weight_decay": weight_decay}]
    if vectors:
        groups.append({"params": vectors, "adapt": False, "weight_decay": 0.0})
    return groups


def trust_ratio(weight_norm: torch.Tensor, update_norm: torch.Tensor, coefficient: float) -> torch.Tensor:
    """coefficient·‖w‖/‖u‖, or 1 where either norm is zero (a fresh zero layer, or no gradient)."""
    ratio = coefficient * weight_norm / update_norm
    return torch.where((weight_norm > 0) & (update_norm > 0), ratio, torch.ones_like(ratio))


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose step for each layer is scaled by η·‖w‖ / (‖g‖ + λ‖w‖).

    v ← μ·v + lr·trust·(g + λw);  w ← w − v.
    """

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                  "trust_coefficient": trust_coefficient, "adapt": True})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = torch.enable_grad()(closure)() if closure is not None else None
        for group in self.param_groups:
            wd = group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad.add(p, alpha=wd) if wd else p.grad.clone()
                if group["adapt"]:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(p.grad)
                    update.mul_(trust_ratio(w_norm, g_norm + wd * w_norm, group["trust_coefficient"]))
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"].mul_(group["momentum"]).add_(update, alpha=group["lr"])
                p.sub_(buf)
        return loss


class LAMB(torch.optim.Optimizer):
    """Adam's direction r = m̂/(√v̂ + ε) + λw, with each layer's step scaled by c·‖w‖/‖r‖."""

    def __init__(self, params: Iterable[Any], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0, trust_coefficient: float = 1.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "trust_coefficient": trust_coefficient, "adapt": True})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = torch.enable_grad()(closure)() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["step"] += 1
                m = state["m"].mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v = state["v"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                m_hat, v_hat = m / (1 - beta1 ** state["step"]), v / (1 - beta2 ** state["step"])
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                if group["adapt"]:
                    update.mul_(trust_ratio(torch.linalg.vector_norm(p), torch.linalg.vector_norm(update),
                                            group["trust_coefficient"]))
                p.sub_(update, alpha=group["lr"])
        return loss
