"""The norm of the batch gradient against batch size, and gradient diversity (Yin et al. 2018).

A larger batch averages more per-example gradients, so its gradient's norm falls towards the
full-data gradient's as the noise averages out; gradient diversity measures how different the
per-example gradients are, which bounds the batch size beyond which SGD stops speeding up.

Two ratios over a batch's per-example gradients g_i, each under its own name:

- ``diversity_yin``: Yin et al.'s gradient diversity Σ‖g_i‖² / ‖Σ g_i‖², 1/B for B identical
  gradients, 1 for orthogonal ones of equal length; B·diversity_yin bounds the useful batch size;
- ``norm_ratio``: Σ‖g_i‖ / ‖Σ g_i‖, how much of the gradients' total length the sum keeps
  (1 for identical gradients, √B for orthogonal ones; Chang & Pathak's "competition" argument).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field, NonNegativeInt, PositiveInt
from torch import nn

from batchlab.gradients.estimators import batch_gradient, per_example_gradients, random_batches
from batchlab.gradients.measurement import Rows, measurements, model_at, steps
from batchlab.losses import Loss


def gradient_norms(model: nn.Module, loss: Loss, x: torch.Tensor, y: torch.Tensor, batch_size: int, batches: int,
                   seed: int = 0, diversity_batches: int = 0) -> dict[str, Any]:
    """Norm of the batch gradient over ``batches`` random batches (mean, std), and over
    ``diversity_batches`` more (per-example gradients) Yin et al.'s gradient diversity
    Σ‖g_i‖²/‖Σ g_i‖² (``diversity_yin_*``) and the norm ratio Σ‖g_i‖/‖Σ g_i‖ (``norm_ratio_*``)."""
    generator = torch.Generator().manual_seed(seed)
    norms = np.array([float(batch_gradient(model, loss, x[idx], y[idx]).norm())
                      for idx in random_batches(len(y), batch_size, batches, generator)])
    out: dict[str, Any] = {"batch_size": batch_size, "batches": batches, "grad_norm_mean": float(norms.mean()),
                           "grad_norm_std": float(norms.std(ddof=1)) if batches > 1 else None,
                           "grad_sq_mean": float((norms**2).mean()),
                           # Shen's (2018) number: the norm of the *summed* gradient, B times the mean's
                           "sum_norm_mean": float(batch_size * norms.mean())}
    if diversity_batches:
        yin, ratio = [], []
        for idx in random_batches(len(y), batch_size, diversity_batches, generator):
            per_example = per_example_gradients(model, loss, x[idx], y[idx])
            total = per_example.sum(0)
            yin.append(float(per_example.square().sum() / total.square().sum()))
            ratio.append(float(per_example.norm(dim=1).sum() / total.norm()))
        for name, values in (("diversity_yin", yin), ("norm_ratio", ratio)):
            out[f"{name}_mean"] = float(np.mean(values))
            out[f"{name}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return out



def grad_stats_at(config: dict[str, Any], after_epochs: int, batch_sizes: list[int], batches: int,
                  diversity_batches: int, done: Callable[[str], None] = lambda what: None) -> list[dict[str, Any]]:
    """Norm of the batch gradient (mean and std over random batches) and gradient diversity, by batch size."""
    model, loss, data = model_at(config, after_epochs)
    model.train()
    x, y = data.train.x, data.train.y
    rows = []
    for size in batch_sizes:
        if not 1 <= size <= len(y):
            from batchlab.errors import SpecError

            raise SpecError(f"--batch-sizes: {size} is not between 1 and the {len(y)} training examples")
        rows.append({"after_epochs": after_epochs, **gradient_norms(
            model, loss, x, y, size, batches, seed=config["seed"] + size, diversity_batches=diversity_batches)})
        done(f"batch {size} after {after_epochs} epochs")
    return rows



@measurements.register("grad-stats")
def grad_stats_rows(config: dict[str, Any], *, batch_sizes: list[PositiveInt] = [1, 10, 100, 1000],  # noqa: B006
                    batches: Annotated[int, Field(ge=2)] = 1000, diversity_batches: NonNegativeInt = 20,
                    after_epochs: list[NonNegativeInt] = [0]) -> Rows:  # noqa: B006
    """Norm of the batch gradient vs batch size over random batches, and gradient diversity (Shen 2018)."""
    done = steps(len(after_epochs) * len(batch_sizes))
    return [(f"batch {row['batch_size']} after {row['after_epochs']} epochs", row)
            for n in after_epochs for row in grad_stats_at(config, n, batch_sizes, batches, diversity_batches, done)]
