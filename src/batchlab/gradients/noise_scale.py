"""The gradient noise scale B_simple = tr(Σ)/‖G‖² (McCandlish et al. 2018, "An empirical model of
large-batch training"): the estimator, the probe that tracks it during training, and the measurement.

G is the full-data gradient and Σ the per-example gradient covariance; B_simple predicts the
critical batch size beyond which larger batches stop buying fewer steps. The estimates come from
squared batch-gradient norms at two sizes (``estimators.two_batch_estimates``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
from pydantic import Field, NonNegativeInt, PositiveInt
from torch import nn

from batchlab.data import load_data
from batchlab.gradients.estimators import half_batch_estimates, two_batch_estimates
from batchlab.gradients.grad_stats import gradient_norms
from batchlab.gradients.measurement import Rows, measurements, model_at, steps
from batchlab.gradients.probe import Probe, probes
from batchlab.losses import Loss


def noise_scale(model: nn.Module, loss: Loss, x: torch.Tensor, y: torch.Tensor, b_small: int, b_big: int,
                batches: int, seed: int = 0) -> dict[str, float]:
    """B_simple from the mean squared gradient norms at two batch sizes over ``batches`` batches each."""
    if not 1 <= b_small < b_big <= len(y):
        raise ValueError(f"noise scale needs 1 <= small batch < big batch <= {len(y)} examples, "
                         f"got {b_small} and {b_big}")
    small = gradient_norms(model, loss, x, y, b_small, batches, seed)
    big = gradient_norms(model, loss, x, y, b_big, batches, seed + 1)
    g2, trace = two_batch_estimates(small["grad_sq_mean"], big["grad_sq_mean"], b_small, b_big, len(y))
    return {"b_small": b_small, "b_big": b_big, "batches": batches, "grad_sq": g2, "trace": trace,
            "b_simple": trace / g2 if g2 > 0 else float("inf")}


class GradientNoise(Probe):
    """The simple noise scale B_simple = tr(Σ)/‖G‖² (McCandlish et al. 2018) tracked during training.

    Every ``every`` steps, the step's batch is split in halves *before the update it drives*; the
    gradients of the halves (B/2) and of the whole (B) give the unbiased estimates of ‖G‖² and tr(Σ)
    (``estimators.half_batch_estimates``). Two things keep them unbiased:

    - the batch is measured at the weights its gradient is taken at (``before_step``): after the
      update the batch has just been descended on, and its gradient is smaller than a fresh one's;
    - the batches are drawn without replacement from the N training examples (each epoch is a
      permutation), so the estimator takes N (``set_train_size``); without it, ‖G‖² would average
      ‖G‖² − tr(Σ)/(N − 1), and at batch N it would not be the exact full gradient.

    Both are averaged over the epoch separately, then divided, as the paper advises. Costs one extra
    forward and backward pass per probed step.
    """

    per_step = True

    def __init__(self, every: int) -> None:
        self.every = every

    def begin(self, model: nn.Module, loss: Loss) -> None:
        super().begin(model, loss)
        self.count, self.g2, self.trace = 0, [], []

    def before_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.count += 1
        if self.count % self.every or len(y) < 2:
            return
        g2, trace = half_batch_estimates(self.model, self.loss, x, y, population=self.train_size)
        self.g2.append(g2)
        self.trace.append(trace)

    def end_epoch(self, epoch: int, steps: int) -> dict[str, Any]:
        if not self.g2:
            return {}
        g2, trace = sum(self.g2) / len(self.g2), sum(self.trace) / len(self.trace)
        self.g2, self.trace = [], []
        return {"noise.grad_sq": g2, "noise.trace": trace,
                "noise.b_simple": trace / g2 if g2 > 0 else math.inf}


@probes.register("noise-scale")
def noise_scale_probe(*, every: PositiveInt = 10) -> Probe:
    """Gradient noise scale B_simple during training, from half-batch gradients every `every` steps."""
    return GradientNoise(every)



def noise_scale_at(config: dict[str, Any], after_epochs: int, b_small: int, b_big: int | None, batches: int
                   ) -> dict[str, Any]:
    """The simple noise scale (McCandlish et al.) at one point; B_crit ≈ B_simple."""
    from batchlab.errors import SpecError

    n = len(load_data(config["data"]).train.y)
    big = min(b_big or n // 2, n)
    if not 1 <= b_small < big:
        raise SpecError(f"noise-scale needs 1 <= --small < --big <= {n} (the training set), got {b_small} and {big}")
    model, loss, data = model_at(config, after_epochs)
    model.train()
    x, y = data.train.x, data.train.y
    result = noise_scale(model, loss, x, y, b_small, big, batches, seed=config["seed"])
    return {"after_epochs": after_epochs, **result, "critical_batch": result["b_simple"]}



@measurements.register("noise-scale")
def noise_scale_rows(config: dict[str, Any], *, after_epochs: list[NonNegativeInt] = [0, 1],  # noqa: B006
                     small: PositiveInt = 16, big: PositiveInt | None = None,
                     batches: Annotated[int, Field(ge=2)] = 200) -> Rows:
    """Gradient noise scale and predicted critical batch size (McCandlish et al.)."""
    done, rows = steps(len(after_epochs)), []
    for n in after_epochs:
        rows.append((f"after {n} epochs", noise_scale_at(config, n, small, big, batches)))
        done(rows[-1][0])
    return rows
