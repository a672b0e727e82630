"""Linear interpolation between two minimizers (Goodfellow et al.; Keskar et al.; Chang & Pathak 2020, Fig. 18).

θ(α) = α·θ_b + (1 − α)·θ_a for α from −1 to 2: α = 0 is minimizer a, α = 1 is b, and the ends
look past each. A flat minimizer keeps its loss low over a wider range of α than a sharp one.

Batch-norm running statistics are weights too: by default they are interpolated like the others
(variances clipped at zero where extrapolation would make them negative); with
``batch_norm = "recompute"`` they are measured afresh at every α on the training data, as the
population statistics of the interpolated network.
"""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np
import torch
from torch import nn

from batchlab.data import Split
from batchlab.losses import Loss

BatchNormMode = Literal["interpolate", "recompute"]


def blend(a: nn.Module, b: nn.Module, alpha: float, into: nn.Module) -> None:
    """Write α·b + (1 − α)·a into ``into`` (floating tensors; integer counters are taken from a)."""
    sa, sb, target = a.state_dict(), b.state_dict(), into.state_dict()
    with torch.no_grad():
        for name, t in target.items():
            if t.is_floating_point():
                t.copy_(sa[name] + alpha * (sb[name] - sa[name]))
                if name.endswith("running_var"):
                    t.clamp_(min=0.0)
            else:
                t.copy_(sa[name])


@torch.no_grad()
def recompute_batch_norm(model: nn.Module, train: Split, chunk: int = 500) -> None:
    """Replace running statistics by their average over ``train`` in chunks, weighted by chunk size.

    Each chunk passes in train mode (each norm layer normalizes with the chunk's own statistics, as
    in training); the momentum n_k / (n_1 + … + n_k) makes the running value the size-weighted mean
    of the chunks' statistics, so the first layer's running mean is exactly the data mean.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
    model.train()
    seen = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for start in range(0, len(train), chunk):
            xb = train.x[start : start + chunk]
            seen += len(xb)
            for m in norms:
                m.momentum = len(xb) / seen
            model(xb)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()


def interpolate(a: nn.Module, b: nn.Module, loss: Loss, splits: dict[str, Split], alphas: np.ndarray,
                batch_norm: BatchNormMode = "interpolate") -> dict[str, list[float]]:
    """Loss and accuracy on every split at every α: {"alpha": [...], "train_loss": [...], ...}."""
    from batchlab.training.loop import evaluate

    model = copy.deepcopy(a)
    curves: dict[str, list[float]] = {"alpha": [float(x) for x in alphas]}
    for alpha in alphas:
        blend(a, b, float(alpha), model)
        if batch_norm == "recompute":
            recompute_batch_norm(model, splits["train"])
        for name, split in splits.items():
            value, acc = evaluate(model, split, loss, 250)
            curves.setdefault(f"{name}_loss", []).append(value)
            curves.setdefault(f"{name}_acc", []).append(acc)
    return curves
