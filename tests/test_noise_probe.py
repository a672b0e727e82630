"""The noise-scale training probe against exact values: a linear regression whose per-example gradients
are known in closed form, so the full gradient's squared norm ‖G‖² at any weights is exact.

The probe must (1) measure each batch at the weights its gradient is taken at, before the update, and
(2) correct for batches drawn without replacement from the N training examples. Without (2) its ‖G‖²
averages ‖G‖² − tr(Σ)/(N − 1) (0.08077 against the exact 0.08367 in the issue that found it).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from batchlab.data import load_data
from batchlab.gradients.estimators import per_example_gradients
from batchlab.gradients.noise_scale import GradientNoise
from batchlab.spec import plan_study
from batchlab.training.loop import build, train_run


def half_squared_error(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((out.squeeze(-1) - target) ** 2).mean() / 2


def regression(n: int, d: int = 6, sigma: float = 1.0, offset: float = 0.05, seed: int = 0):
    """y = x·w* + ε and a linear model at w* + offset: per-example gradient g_i = x_i (x_i·w − y_i)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    w_star = torch.randn(d, generator=gen, dtype=torch.float64)
    y = x @ w_star + sigma * torch.randn(n, generator=gen, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w_star + offset)
    return model, x, y


def exact(model: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """‖G‖² and tr Σ (population covariance, 1/N) from the closed-form per-example gradients."""
    with torch.no_grad():
        per_example = x * (x @ model.weight[0] - y)[:, None]
    g = per_example.mean(0)
    return float(g @ g), float((per_example - g).square().sum(1).mean())


def probe_epochs(model, x, y, batch: int, epochs: int, lr: float, train_size: int | None) -> list[dict]:
    """Drive the probe the way the training loop does: a permutation per epoch, contiguous batches,
    ``before_step`` then the SGD update then ``after_step``; returns each epoch's record and the
    exact ‖G‖² at the weights each batch met."""
    probe = GradientNoise(every=1)
    probe.begin(model, half_squared_error)
    if train_size is not None:
        probe.set_train_size(train_size)
    order = torch.Generator().manual_seed(1)
    records, n = [], len(y)
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=order)
        met = []
        for start in range(0, n, batch):
            xb, yb = x[perm[start : start + batch]], y[perm[start : start + batch]]
            met.append(exact(model, x, y)[0])
            probe.before_step(xb, yb)
            loss = half_squared_error(model(xb), yb)
            (grad,) = torch.autograd.grad(loss, [model.weight])
            with torch.no_grad():
                model.weight -= lr * grad
            probe.after_step(xb, yb)
        records.append({**probe.end_epoch(epoch, 0), "exact_grad_sq": sum(met) / len(met)})
    return records


def test_at_full_batch_the_probe_gives_the_exact_gradient_before_the_update():
    model, x, y = regression(n=300, offset=0.3)
    records = probe_epochs(model, x, y, batch=300, epochs=3, lr=0.2, train_size=300)
    for r in records:  # one step per epoch: the estimate is the full gradient itself, no noise at all
        assert r["noise.grad_sq"] == pytest.approx(r["exact_grad_sq"], rel=1e-10)
    assert records[0]["exact_grad_sq"] > 1.5 * records[1]["exact_grad_sq"]  # the weights did move:
    # measured after the update, epoch 1 would have reported epoch 2's gradient


def test_at_batch_20_the_probe_is_unbiased_within_its_standard_error():
    n, steps = 100, 4000
    model, x, y = regression(n=n, offset=0.05)
    g2, trace = exact(model, x, y)
    records = probe_epochs(model, x, y, batch=20, epochs=steps // 5, lr=0.0, train_size=n)
    estimates = torch.tensor([r["noise.grad_sq"] for r in records])  # each the mean of an epoch's 5 steps
    mean, se = float(estimates.mean()), float(estimates.std() / math.sqrt(len(estimates)))
    assert abs(mean - g2) < 4 * se
    bias = trace / (n - 1)  # what the estimator without the population correction is off by
    assert bias > 10 * se  # so this test would have caught it
    assert float(torch.tensor([r["noise.trace"] for r in records]).mean()) == pytest.approx(trace, rel=0.05)


def test_without_the_training_set_size_the_full_batch_estimate_is_biased_low():
    model, x, y = regression(n=300, offset=0.3)
    g2, trace = exact(model, x, y)
    record = probe_epochs(model, x, y, batch=300, epochs=1, lr=0.0, train_size=None)[0]
    # one batch of all N, split in halves of N/2, read as if from an infinite population
    assert record["noise.grad_sq"] == pytest.approx(g2 - trace / (300 - 1), rel=0.15)
    assert record["noise.grad_sq"] < g2


def test_the_training_loop_feeds_the_probe_before_each_update_and_the_training_set_size():
    """Through ``train_run``: one full batch per epoch, so the probe's ‖G‖² must be the exact squared
    norm of the full training gradient at the weights the epoch started from."""
    doc = {"data": {"name": "blobs", "n_samples": 250, "centers": 3, "cluster_std": 3.0},
           "model": {"name": "mlp", "hidden": [8]},
           "train": {"epochs": 2, "batch_size": 10_000, "lr": 0.5, "optimizer": {"name": "sgd", "momentum": 0}},
           "probes": {"noise-scale": {"every": 1}}}
    cfg = plan_study(doc).runs[0].config
    data = load_data(cfg["data"])
    model, loss = build(cfg, data)
    model.train()
    expected = float(per_example_gradients(model, loss, data.train.x, data.train.y).mean(0).square().sum())
    history: list[dict] = []
    train_run(cfg, lambda epoch, metrics: history.append(metrics), data)
    assert history[1]["noise.grad_sq"] == pytest.approx(expected, rel=1e-4)
    assert history[2]["noise.grad_sq"] != pytest.approx(expected, rel=1e-2)  # the weights moved in between
