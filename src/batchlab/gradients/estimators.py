"""The mathematics every gradient statistic shares: batch and per-example gradients, random
batches, and the two-batch estimates of ‖G‖² and tr(Σ).

G is the full-data gradient and Σ the per-example gradient covariance. With the
squared norms of batch gradients at two sizes b < B (E‖G_b‖² = ‖G‖² + tr(Σ)/b), the unbiased
estimates are

    ‖G‖² ≈ (B·‖G_B‖² − b·‖G_b‖²) / (B − b),      tr(Σ) ≈ (‖G_b‖² − ‖G_B‖²) / (1/b − 1/B).

Batches drawn without replacement from N examples have E‖G_b‖² = ‖G‖² + tr(Σ)·(N − b)/(b(N − 1)),
so with a finite training set 1/b is replaced by that factor (it matters when B is a sizeable
share of N; for N → ∞ the two agree).

Every gradient here is taken with batch-norm running statistics frozen and the random state
restored, so measuring never changes the training it measures.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from batchlab.losses import Loss
from batchlab.models import frozen_bn_stats


@contextmanager
def side_effect_free(model: nn.Module) -> Iterator[None]:
    """Train-mode forward passes that leave BN statistics and the random state (of the CPU and of the
    model's GPU, which dropout draws from there) as they were."""
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), frozen_bn_stats(model):
        yield


def batch_gradient(model: nn.Module, loss: Loss, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The gradient of the mean loss over (x, y), flattened; ``.grad`` is not touched."""
    params = [p for p in model.parameters() if p.requires_grad]
    with side_effect_free(model):
        grads = torch.autograd.grad(loss(model(x), y), params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params, strict=True)])


def per_example_gradients(model: nn.Module, loss: Loss, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One flattened gradient per example (rows), with torch.func; the model runs in eval mode,
    since batch norm has no per-example meaning in training mode."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def example_loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return loss(functional_call(model, (p, buffers), (xi.unsqueeze(0),)), yi.unsqueeze(0))

    was_training = model.training
    model.eval()
    try:
        grads = vmap(grad(example_loss), in_dims=(None, 0, 0))(params, x, y)
    finally:
        model.train(was_training)
    return torch.cat([g.reshape(len(y), -1) for g in grads.values()], dim=1)


def two_batch_estimates(small_sq: float, big_sq: float, b_small: float, b_big: float,
                        population: int | None = None) -> tuple[float, float]:
    """Unbiased (‖G‖², tr Σ) from mean squared gradient norms at batch sizes b_small < b_big,
    drawn from an infinite population or, given ``population``, without replacement from it."""

    def share(b: float) -> float:  # the factor on tr(Σ) in E‖G_b‖²
        return 1 / b if population is None else (population - b) / (b * (population - 1))

    trace = (small_sq - big_sq) / (share(b_small) - share(b_big))
    return big_sq - trace * share(b_big), trace


def half_batch_estimates(model: nn.Module, loss: Loss, x: torch.Tensor, y: torch.Tensor,
                         population: int | None = None) -> tuple[float, float]:
    """(‖G‖², tr Σ) from one batch: its two halves are the small batches, their mean the big one.

    ``population``: the number of examples the batch was drawn from without replacement (the
    training set); then a batch of the whole set gives ‖G‖² exactly.
    """
    half = len(y) // 2
    g1 = batch_gradient(model, loss, x[:half], y[:half])
    g2 = batch_gradient(model, loss, x[half : 2 * half], y[half : 2 * half])
    small_sq = float((g1.square().sum() + g2.square().sum()) / 2)
    big_sq = float(((g1 + g2) / 2).square().sum())
    return two_batch_estimates(small_sq, big_sq, half, 2 * half, population)


def random_batches(n: int, size: int, count: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """``count`` random batches of ``size`` distinct examples each."""
    for _ in range(count):
        yield torch.randperm(n, generator=generator)[:size]
